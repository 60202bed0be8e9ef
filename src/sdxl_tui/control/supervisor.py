"""The small detached process that runs one training launch and records how it ended.

Why: ``nohup cmd &`` loses the exit status, and the shell's ``$!`` is the launcher's PID.
``sdxl-tui start`` runs ``python -m sdxl_tui.control.supervisor --record R --launch-id ID
--cwd DIR -- ARGV…`` in a new session (stdin /dev/null, stdout and stderr already appended
to training.log). It forks once so it is re-parented away from the dashboard (no zombie,
survives the dashboard being SIGKILLed and the SSH session hanging up), ignores SIGHUP
(inherited by the trainer, like nohup), starts ARGV, writes the run record
(pid + create_time of ARGV's process, the trainer's pid once it appears, argv, cwd, start
time, log), waits, and writes ``exit_code`` / ``signal`` / ``ended_at``. It never restarts
anything. It ignores SIGINT so ``kill -INT -PGID`` still leaves it to record the end; a
SIGTERM or SIGKILL ends it like any launcher.

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
        child = subprocess.Popen(command, cwd=args.cwd, env=env, stdin=subprocess.DEVNULL)
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

    deadline = time.monotonic() + 600.0  # look for the trainer below a launcher for 10 min
    gpu = GpuRecorder(args.output_dir) if args.output_dir else None
    while True:
        if gpu is not None:
            gpu.tick([pid for pid in (child.pid, record["trainer_pid"]) if pid])
        try:
            child.wait(timeout=0.5 if record["trainer_pid"] is None else 5.0)
            break
        except subprocess.TimeoutExpired:
            pass
        if record["trainer_pid"] is None and time.monotonic() < deadline:
            found = _find_trainer(child.pid, args.output_dir)
            if found is not None:
                record["trainer_pid"], record["trainer_create_time"] = found
                write_json_atomic(args.record, record)
    rc = child.returncode
    record["ended_at"] = time.time()
    record["exit_code"] = rc if rc >= 0 else None
    record["signal"] = -rc if rc < 0 else None
    write_json_atomic(args.record, record)
    if gpu is not None:
        gpu.close()
    report_on_end(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
