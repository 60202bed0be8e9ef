"""Process helpers for tests that start real trainers, launcher trees and decoys.

Every process a test starts is ended by PID in the fixture's teardown, including the
detached ones (the supervisor and the stop-after-checkpoint watcher are not our children):
they are found through the run directories the test registered and killed only after
their (pid, create_time) is checked. Nothing is ever killed by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

HELPERS = Path(__file__).resolve().parent
PY = sys.executable
FAKE_TRAINER = str(HELPERS / "fake_train_network.py")
FAKE_CONDA = str(HELPERS / "fake_conda.py")
FAKE_ACCELERATE = str(HELPERS / "fake_accelerate.py")


def _keep_running(_signum: int, _frame: Any) -> None:
    """A handler that does nothing: the suite survives a hangup like under nohup."""


def reset_inherited_signals() -> list[str]:
    """Undo what ``nohup … &`` (or a job runner) did to the test process's signals, so every
    process a test starts gets default dispositions (issue: under ``nohup pytest &`` a child
    inherited SIGINT ignored, and ``kill``'s SIGINT did nothing).

    A signal that is *ignored* stays ignored across ``exec``; one with a Python handler is
    reset to the default. So SIGINT gets Python's KeyboardInterrupt handler back and SIGHUP
    and SIGQUIT a handler that does nothing (the suite itself still survives a hangup); the
    signal mask is emptied (it is inherited across ``exec`` too). Returns the names changed.
    """
    changed = []
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGHUP: _keep_running,
              signal.SIGQUIT: _keep_running}
    for sig, handler in wanted.items():
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, handler)
            changed.append(sig.name)
    if signal.pthread_sigmask(signal.SIG_SETMASK, []):
        changed.append("mask")
    return changed


def trainer_argv(out: str | os.PathLike[str], *extra: str) -> list[str]:
    return [PY, FAKE_TRAINER, *extra, "--output_dir", str(out)]


def conda_argv(out: str | os.PathLike[str], *extra: str) -> list[str]:
    return [PY, FAKE_CONDA, "run", "--no-capture-output", "-n", "kohya_ss", PY, FAKE_TRAINER, *extra,
            "--output_dir", str(out)]


def accelerate_argv(out: str | os.PathLike[str], *extra: str) -> list[str]:
    return [PY, FAKE_ACCELERATE, "launch", "--num_cpu_threads_per_process", "1", FAKE_TRAINER, *extra,
            "--output_dir", str(out)]


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def alive(pid: int, create_time: float | None = None) -> bool:
    """True while ``pid`` runs (zombies count as gone), and is the same process if a
    create time is given."""
    try:
        p = psutil.Process(pid)
        if create_time is not None and abs(p.create_time() - create_time) > 0.05:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Procs:
    """Start processes for a test and end all of them, by PID, afterwards."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.run_dirs: list[Path] = []
        self.tracked: dict[int, float] = {}

    def spawn(self, argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
              new_session: bool = True, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(list(argv), cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=new_session, **kw)
        self.popens.append(p)
        self.track(p.pid)
        return p

    def track(self, pid: int) -> None:
        try:
            self.tracked[pid] = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            pass

    def watch_dir(self, run_dir: str | os.PathLike[str]) -> Path:
        self.run_dirs.append(Path(run_dir))
        return Path(run_dir)

    def tree_pids(self) -> dict[int, float]:
        """Every process a test started or that belongs to a registered run dir."""
        ids = dict(self.tracked)
        for pid in list(ids):
            try:
                for c in psutil.Process(pid).children(recursive=True):
                    ids[c.pid] = c.create_time()
            except psutil.NoSuchProcess:
                pass
        from sdxl_tui.sources.procs import discover

        for d in self.run_dirs:
            for tree in discover(d).trees:
                for p in tree.all():
                    ids[p.pid] = p.create_time
            for name in ("run.json", "stop-after-checkpoint.json"):
                try:
                    rec = json.loads((d / ".sdxl-tui" / name).read_text())
                except (OSError, ValueError):
                    continue
                for pk, tk in (("supervisor_pid", "supervisor_create_time"), ("pid", "create_time"),
                               ("trainer_pid", "trainer_create_time")):
                    if isinstance(rec.get(pk), int) and rec.get(tk):
                        ids[rec[pk]] = rec[tk]
        return ids

    def cleanup(self) -> None:
        for pid, ctime in self.tree_pids().items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - ctime) < 0.05:
                    p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        for p in self.popens:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def managed_procs() -> Iterator[Procs]:
    """Body of each test module's ``procs`` fixture: ``yield from managed_procs()``."""
    p = Procs()
    try:
        yield p
    finally:
        p.cleanup()


def checkpoint_written(run_dir: Path, n: int = 1) -> Callable[[], bool]:
    from sdxl_tui.control.kill import complete_checkpoints

    return lambda: len(complete_checkpoints(run_dir)) >= n


def end_recorded_evaluations(run_dir: Path) -> None:
    """End the evaluations and the queue runner that ``run_dir`` recorded under
    ``.sdxl-tui/evals`` (identity-checked by create time, never by name)."""
    from sdxl_tui.control.evaluate import RUNNER_INFO

    folder = run_dir / ".sdxl-tui" / "evals"
    for f in [*folder.glob("*.json"), folder / RUNNER_INFO]:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        pid, ctime = data.get("pid"), data.get("create_time")
        if not isinstance(pid, int) or not ctime:
            continue
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - ctime) < 0.05:
                proc.kill()
        except psutil.Error:
            pass
