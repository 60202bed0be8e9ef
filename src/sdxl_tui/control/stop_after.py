"""Stop-after-checkpoint: wait for the next complete checkpoint, then stop the run.

``sdxl-tui kill DIR --after-checkpoint`` (and the dashboard's ``x``) starts a small detached
watcher (``python -m sdxl_tui.control.watcher``) that waits for the next checkpoint file (and
its ``-state`` directory when the run saves state) to be completely written, then runs the
same kill as ``sdxl-tui kill`` (``control/kill.py``: wrappers frozen first, the trainer
interrupted, everything of the run verified gone). :func:`cancel_stop_after_checkpoint` ends
the watcher (identity-checked).

"Completely written" is the one definition of ``formats/safetensors.py``
(:func:`~sdxl_tui.formats.safetensors.is_complete`), the same one the checkpoint table, the
CLI status and the evaluation queue use. Nothing here prints.
"""

from __future__ import annotations

import json
import os
import signal as _signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sdxl_tui.control.signalling import load_psutil as _psutil
from sdxl_tui.formats.cmdline import options_from_argv, script_span
from sdxl_tui.formats.names import WEIGHT_SUFFIXES
from sdxl_tui.formats.safetensors import is_complete
from sdxl_tui.formats.statedir import STATE_DIR, WATCH_NAME, WATCHER_LOG_NAME, read_json
from sdxl_tui.model import ProcessTree
from sdxl_tui.sources.procs import discover, same_time

WATCHER_MODULE = "sdxl_tui.control.watcher"

__all__ = [
    "CheckpointWaiter",
    "WatchResult",
    "cancel_stop_after_checkpoint",
    "complete_checkpoints",
    "list_checkpoints",
    "run_saves_state",
    "start_stop_after_checkpoint",
    "watch_path",
    "watcher_status",
]


# --------------------------------------------------------------------------- checkpoints


def list_checkpoints(run_dir: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """Weights files directly in the run directory: name -> (size, mtime_ns)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return out
    for entry in entries:
        if entry.name.endswith(WEIGHT_SUFFIXES) and not entry.name.startswith("."):
            try:
                st = entry.stat()
            except OSError:
                continue
            if entry.is_file():
                out[entry.name] = (st.st_size, st.st_mtime_ns)
    return out


def complete_checkpoints(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the weights files that are completely written now (a file being written
    right now is not among them, so it counts as "the next checkpoint")."""
    names = []
    for name in sorted(list_checkpoints(run_dir)):
        if name.endswith(".safetensors") and is_complete(Path(run_dir) / name) is not True:
            continue
        names.append(name)
    return names


def _state_signature(state_dir: Path) -> tuple[Any, ...] | None:
    """A stable fingerprint of a ``-state`` folder when it looks complete, else None."""
    try:
        json.loads((state_dir / "train_state.json").read_text(encoding="utf-8"))
        entries = sorted(os.scandir(state_dir), key=lambda e: e.name)
        sig = []
        for e in entries:
            st = e.stat()
            if e.name.endswith(".safetensors") and is_complete(e.path) is not True:
                return None
            sig.append((e.name, st.st_size, st.st_mtime_ns))
        return tuple(sig)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def run_saves_state(run_dir: str | os.PathLike[str], trees: Sequence[ProcessTree] = ()) -> bool:
    """Does this run write ``-state`` folders at each save? (``--save_state`` on the
    trainer's command line or in its ``--config_file``, or such a folder already exists.)"""
    for tree in trees:
        cmd = tree.trainer.cmdline
        span = script_span(cmd)
        if span is None:
            continue
        if options_from_argv(cmd).get("save_state") is True:
            return True
    try:
        return any(e.is_dir() and e.name.endswith("-state") for e in os.scandir(run_dir))
    except OSError:
        return False


class CheckpointWaiter:
    """Decides when the *next* checkpoint after the baseline is completely on disk.

    A new weights file counts when its safetensors header promises exactly its size (other
    formats: when its size and mtime stayed unchanged for ``settle`` seconds);
    when the run saves state, its ``<stem>-state`` folder must also hold a parseable
    ``train_state.json``, complete safetensors files and be unchanged for ``settle`` seconds.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, baseline: Sequence[str] | None = None,
                 saves_state: bool = False, settle: float = 0.6,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = Path(run_dir)
        self.baseline = set(complete_checkpoints(run_dir) if baseline is None else baseline)
        self.saves_state = saves_state
        self.settle = settle
        self._clock = clock
        self._seen: dict[str, tuple[Any, float]] = {}

    def _stable(self, key: str, sig: Any) -> bool:
        now = self._clock()
        prev = self._seen.get(key)
        if prev is None or prev[0] != sig:
            self._seen[key] = (sig, now)
            return False
        return now - prev[1] >= self.settle

    def poll(self) -> str | None:
        """The name of the first new, complete checkpoint, or None yet.

        Every new file (and its state folder) is checked on every poll, so the file and the
        state folder settle in parallel and the stop follows the save by about
        ``settle + poll`` seconds.
        """
        files = list_checkpoints(self.run_dir)
        ready: list[str] = []
        for name in sorted(n for n in files if n not in self.baseline):
            path = self.run_dir / name
            if name.endswith(".safetensors"):
                # exact: the header promises the size, and safetensors writes in place
                ok = is_complete(path) is True
            else:
                ok = self._stable(name, files[name])
            if self.saves_state:
                stem = name.rsplit(".", 1)[0]
                sig = _state_signature(self.run_dir / f"{stem}-state")
                state_ok = sig is not None and self._stable(stem + "-state", sig)
                ok = ok and state_ok
            if ok:
                ready.append(name)
        return ready[0] if ready else None

    def new_checkpoints(self) -> list[str]:
        """Every weights file that is not in the baseline (complete or not)."""
        return sorted(n for n in list_checkpoints(self.run_dir) if n not in self.baseline)


# --------------------------------------------------------------------------- watcher control


def watch_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / STATE_DIR / WATCH_NAME


def watcher_status(
    run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None
) -> dict[str, Any] | None:
    """The stop-after-checkpoint record plus ``alive`` (its watcher process verified by pid,
    create time and command line), or None when there has never been one."""
    ps = _psutil(psutil_module)
    data = read_json(watch_path(run_dir))
    if data is None:
        return None
    data["alive"] = _watcher_alive(ps, data, run_dir)
    return data


def _watcher_alive(ps: Any, data: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> bool:
    pid = data.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        proc = ps.Process(pid)
        if not same_time(proc.create_time(), data.get("create_time")):
            return False
        cmd = proc.cmdline()
        if proc.status() == ps.STATUS_ZOMBIE:
            return False
    except (ps.Error, OSError):
        return False
    return WATCHER_MODULE in cmd and os.path.realpath(os.fspath(run_dir)) in cmd


@dataclass(frozen=True)
class WatchResult:
    ok: bool
    message: str
    pid: int | None = None
    record: Mapping[str, Any] | None = field(default=None, compare=False)


def start_stop_after_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    start: str = "INT",
    timeouts: tuple[float, float] = (10.0, 10.0),
    poll: float = 0.5,
    settle: float = 0.6,
    python: str | None = None,
    psutil_module: ModuleType | None = None,
    wait_seconds: float = 10.0,
) -> WatchResult:
    """Start the detached watcher that stops the run after its next complete checkpoint."""
    ps = _psutil(psutil_module)
    target = os.path.realpath(os.fspath(run_dir))
    current = watcher_status(target, psutil_module=ps)
    if current and current.get("alive"):
        return WatchResult(False, f"a stop-after-checkpoint watcher is already waiting (pid {current['pid']}); "
                           "cancel it with `sdxl-tui kill DIR --cancel`", current.get("pid"), current)
    found = discover(target, psutil_module=ps)
    if not found.trees:
        return WatchResult(False, f"no live trainer writes to {target}: nothing to stop")
    (Path(target) / STATE_DIR).mkdir(parents=True, exist_ok=True)
    token = f"{time.time():.6f}-{os.getpid()}"
    baseline = complete_checkpoints(target)  # what the user sees when asking: "the next" is after these
    cmd = [python or sys.executable, "-m", WATCHER_MODULE, "--run-dir", target, "--token", token,
           "--baseline", json.dumps(baseline),
           "--signal", start, "--timeout-int", str(timeouts[0]), "--timeout-term", str(timeouts[1]),
           "--poll", str(poll), "--settle", str(settle)]
    log = Path(target) / STATE_DIR / WATCHER_LOG_NAME
    with open(log, "ab") as err:
        starter = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                   start_new_session=True, close_fds=True, cwd=target)
    try:
        starter.wait(timeout=wait_seconds)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        data = read_json(watch_path(target))
        if data and data.get("token") == token:
            if data.get("state") == "failed":
                return WatchResult(False, f"the watcher failed: {data.get('message')}", data.get("pid"), data)
            return WatchResult(True, f"watcher pid {data.get('pid')} will stop the run after the next complete "
                               f"checkpoint (now {len(data.get('baseline', []))} on disk)", data.get("pid"), data)
        time.sleep(0.05)
    return WatchResult(False, f"the watcher did not report within {wait_seconds:.0f} s; see {log}")


def cancel_stop_after_checkpoint(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None,
                                 wait_seconds: float = 5.0) -> WatchResult:
    """Stop the watcher (after checking it is ours: pid, create time, command line)."""
    ps = _psutil(psutil_module)
    target = os.path.realpath(os.fspath(run_dir))
    data = read_json(watch_path(target))
    if data is None:
        return WatchResult(False, "no stop-after-checkpoint watcher was started for this directory")
    if not _watcher_alive(ps, data, target):
        return WatchResult(False, f"the watcher (pid {data.get('pid')}) is not running any more "
                           f"(state: {data.get('state')}); nothing to cancel", data.get("pid"), data)
    pid = int(data["pid"])
    try:
        proc = ps.Process(pid)
        proc.send_signal(_signal.SIGTERM)
    except (ps.Error, OSError) as exc:
        return WatchResult(False, f"cannot signal watcher pid {pid}: {exc}", pid, data)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
        if not _watcher_alive(ps, data, target):
            return WatchResult(True, f"cancelled: watcher pid {pid} stopped; the run continues", pid,
                               read_json(watch_path(target)))
        time.sleep(0.05)
    return WatchResult(False, f"watcher pid {pid} did not stop within {wait_seconds:.0f} s", pid, data)

