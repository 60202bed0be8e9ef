"""The small detached process that runs one training launch and records how it ended.

Why: ``nohup cmd &`` loses the exit status, and the shell's ``$!`` is the launcher's PID.
``sdxl-tui start`` runs ``python -m sdxl_tui.control.supervisor --record R --launch-id ID
--cwd DIR -- ARGV…`` in a new session (stdin /dev/null, stdout and stderr already appended
to training.log). It forks once so it is re-parented away from the dashboard (no zombie,
survives the dashboard being SIGKILLed and the SSH session hanging up), ignores SIGHUP, makes
itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``: a trainer orphaned by a wrapper
that died is re-parented to it, not to init, so it stays inside the run and is reaped), starts
ARGV with *default* signal dispositions and an empty signal mask (``nohup sdxl-tui start … &``
and some job runners start us with SIGINT/SIGHUP ignored; inherited, a trainer would shrug
off ``sdxl-tui kill``'s SIGINT, and Python installs no KeyboardInterrupt handler for a SIGINT
that is ignored at startup), writes the run record
(pid + create_time of ARGV's process, the trainer's pid once it appears, argv, cwd, start
time, log), waits, and writes ``exit_code`` / ``signal`` / ``ended_at``. It never restarts
anything. It ignores SIGINT so ``kill -INT -PGID`` still leaves it to record the end; a
SIGTERM or SIGKILL ends it like any launcher. When ARGV has ended, what is left of the run
below it (DataLoader workers of a SIGKILLed trainer, a wrapper's ``sleep``) gets a few
seconds, then SIGTERM and SIGKILL, and is reaped.

While it waits it appends a GPU sample every 30 s to ``gpu.jsonl`` beside the run record, and
after the end it writes the morning report when ``report.on_end`` is set (``control/run_end.py``).

Its command line carries the trainer's, so process discovery counts it in the launcher
chain, and ``sdxl-tui kill`` stops it with the rest of the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from sdxl_tui.control.run_end import GpuRecorder, report_on_end
from sdxl_tui.formats.statedir import write_json_atomic


def _create_time(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - a vanished process has no create time
        return None


_PR_SET_CHILD_SUBREAPER = 36
#: Signals whose disposition the trainer gets back to the default.
_RESET_SIGNALS = ("SIGINT", "SIGHUP", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGPIPE", "SIGXFSZ")


def become_subreaper() -> bool:
    """``prctl(PR_SET_CHILD_SUBREAPER, 1)`` (Linux); False where not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def default_signals() -> None:
    """Run in the child between fork and exec: default dispositions, nothing blocked."""
    for name in _RESET_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _end_leftovers(grace: float = 5.0) -> int:
    """End and reap what is left below us once ARGV has ended (we are its subreaper).
    Returns how many processes were left."""
    import psutil

    try:
        left = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    if not left:
        return 0
    _gone, alive = psutil.wait_procs(left, timeout=grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in alive:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        _gone, alive = psutil.wait_procs(alive, timeout=grace)
        if not alive:
            break
    return len(left)


def _find_trainer(root_pid: int, output_dir: str | None) -> tuple[int, float] | None:
    """The trainer among ``root_pid`` and its descendants (topmost direct trainer)."""
    import psutil

    from sdxl_tui.formats.cmdline import is_direct, script_span

    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    for proc in procs:  # children() lists parents before their children
        try:
            cmd = proc.cmdline()
            span = script_span(cmd)
            if span is not None and is_direct(cmd, span[0]):
                return proc.pid, float(proc.create_time())
        except psutil.Error:
            continue
    return None


def _run_pids(root_pid: int) -> list[int]:
    """The launch and everything below it: the trainer, or every rank of a multi-process
    launch (``accelerate launch --multi_gpu``, ``torchrun``), with their children; the GPU
    history counts their VRAM as the run's."""
    import psutil

    try:
        return [root_pid, *(p.pid for p in psutil.Process(root_pid).children(recursive=True))]
    except psutil.Error:
        return [root_pid]


def _supervise(child: subprocess.Popen[bytes], record: dict[str, Any], record_path: str, output_dir: str | None,
               gpu: GpuRecorder | None) -> None:
    """Wait for ``child``; meanwhile record the trainer below it and sample the GPU."""
    deadline = time.monotonic() + 600.0  # look for the trainer below a launcher for 10 min
    while True:
        if gpu is not None:
            gpu.tick(_run_pids(child.pid))
        try:
            child.wait(timeout=0.5 if record["trainer_pid"] is None else 5.0)
            return
        except subprocess.TimeoutExpired:
            pass
        if record["trainer_pid"] is None and time.monotonic() < deadline:
            found = _find_trainer(child.pid, output_dir)
            if found is not None:
                record["trainer_pid"], record["trainer_create_time"] = found
                write_json_atomic(record_path, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxl_tui.control.supervisor")
    parser.add_argument("--record", required=True)
    parser.add_argument("--launch-id", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--output-dir")
    parser.add_argument("--log")
    parser.add_argument("--no-fork", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command")

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not args.no_fork and os.fork() != 0:
        os._exit(0)  # the starter reaps this one at once; the grandchild lives on

    base: dict[str, Any] = {
        "launch_id": args.launch_id,
        "argv": command,
        "cwd": args.cwd,
        "output_dir": args.output_dir,
        "log": args.log,
        "started_at": time.time(),
        "supervisor_pid": os.getpid(),
        "supervisor_create_time": _create_time(os.getpid()),
        "extra_env": json.loads(os.environ.get("SDXL_TUI_LAUNCH_ENV", "{}") or "{}"),
    }
    env = dict(os.environ)
    env.pop("SDXL_TUI_LAUNCH_ENV", None)
    try:
        become_subreaper()
        child = subprocess.Popen(command, cwd=args.cwd, env=env, stdin=subprocess.DEVNULL,
                                 preexec_fn=default_signals)  # no threads yet: preexec_fn is safe
    except OSError as exc:
        msg = f"{exc.strerror or exc}: {command[0]}"
        print(f"sdxl-tui: cannot start the trainer: {msg}", file=sys.stderr, flush=True)
        write_json_atomic(args.record, {**base, "pid": None, "create_time": None, "error": msg,
                                        "exit_code": 127, "signal": None, "ended_at": time.time()})
        return 127
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    record = {**base, "pid": child.pid, "create_time": _create_time(child.pid),
              "trainer_pid": None, "trainer_create_time": None, "ended_at": None}
    write_json_atomic(args.record, record)

    gpu = GpuRecorder(args.output_dir) if args.output_dir else None
    _supervise(child, record, args.record, args.output_dir, gpu)
    rc = child.returncode
    record["ended_at"] = time.time()
    record["exit_code"] = rc if rc >= 0 else None
    record["signal"] = -rc if rc < 0 else None
    write_json_atomic(args.record, record)
    left = _end_leftovers()
    if left:
        record["leftovers"] = left
        write_json_atomic(args.record, record)
    if gpu is not None:
        gpu.close()
    report_on_end(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
