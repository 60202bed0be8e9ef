"""Stop a training run safely: one implementation behind keys ``k``/``x`` and ``sdxl-tui kill``.

Why: sd-scripts saves nothing when signalled (``train_network.py`` installs no signal handler),
killing ``accelerate launch`` or ``conda run`` alone orphans the trainer (accelerate's
``commands/launch.py:simple_launcher``), and a PID noted yesterday may be another program today. So
a kill is two steps, with plain data in between for the confirmation box:

* :func:`plan_kill` finds the trainer tree(s) for the run directory (``sources/procs.py``:
  the recorded process verified by create time and command line, or discovery by
  ``--output_dir``), the launcher chain above and every descendant, each with pid, user,
  command and role, plus the refusals: reused PIDs, other users' processes, trainers of
  other output directories.
* :func:`execute_kill` re-snapshots the children, then SIGINT to the trainer, waits,
  SIGTERM to everything left, waits, SIGKILL; before *every* signal it re-checks
  (pid, create_time) and the owner, and it reports what exited after which signal and what
  survived.

Stop-after-checkpoint (:func:`start_stop_after_checkpoint`) starts a small detached watcher
(``python -m sdxl_tui.control.watcher``) that waits for the next checkpoint file (and its
``-state`` directory when the run saves state) to be completely written, then runs the same
kill. :func:`cancel_stop_after_checkpoint` ends it (identity-checked).

Nothing here prints.
"""

from __future__ import annotations

import json
import os
import signal as _signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from sdxl_tui.formats.cmdline import options_from_argv, script_span
from sdxl_tui.formats.names import WEIGHT_SUFFIXES
from sdxl_tui.formats.safetensors import is_complete
from sdxl_tui.formats.statedir import (
    STATE_DIR,
    WATCH_NAME,
    WATCHER_LOG_NAME,
    StopRecord,
    read_json,
    write_stop_record,
)
from sdxl_tui.model import ProcessTree, ProcInfo
from sdxl_tui.sources.procs import discover, same_time

#: Signal steps in order; ``--signal`` picks where to start.
STEPS = ("INT", "TERM", "KILL")
WATCHER_MODULE = "sdxl_tui.control.watcher"


def _psutil(module: ModuleType | None) -> Any:
    if module is not None:
        return module
    import psutil

    return psutil


def _short(cmdline: Sequence[str], limit: int = 160) -> str:
    text = " ".join(cmdline)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Refusal:
    """A process that will not be signalled, and why."""

    pid: int
    reason: str
    cmdline: tuple[str, ...] = ()
    username: str | None = None


@dataclass(frozen=True)
class KillPlan:
    """Exactly what a kill would signal (and what it refuses to)."""

    run_dir: str
    targets: tuple[ProcInfo, ...] = ()  # launchers (outermost first), trainer(s), children
    trees: tuple[ProcessTree, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.targets

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(role, pid, user, command) rows for the confirmation table."""
        return [(p.role, str(p.pid), p.username or "?", _short(p.cmdline, 400)) for p in self.targets]

    def describe(self) -> list[str]:
        lines = [f"{r:<8} {pid:>7}  {user:<10} {cmd}" for r, pid, user, cmd in self.rows()]
        lines += [f"refused  {r.pid:>7}  {r.username or '?':<10} {r.reason}" for r in self.refusals]
        return lines


@dataclass(frozen=True)
class Outcome:
    """What happened to one process of the plan."""

    pid: int
    role: str
    cmdline: tuple[str, ...]
    result: str  # "exited" | "survived" | "skipped" | "gone"
    after: str | None = None  # step during which it exited: "SIGINT" | "SIGTERM" | "SIGKILL"
    signals: tuple[str, ...] = ()  # signals sent to it
    detail: str = ""

    def describe(self) -> str:
        if self.result == "exited":
            how = f"after {self.after}" if self.after else "exited"
            if self.after and self.after not in self.signals:
                how += " (not signalled itself)"
            text = f"exited {how}"
        elif self.result == "gone":
            text = "already gone"
        elif self.result == "skipped":
            text = f"NOT signalled: {self.detail}"
        else:
            text = f"SURVIVED ({', '.join(self.signals) or 'no signal'})"
        return f"{self.role:<8} {self.pid:>7}  {text}"


@dataclass(frozen=True)
class KillResult:
    run_dir: str
    outcomes: tuple[Outcome, ...] = ()
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def survivors(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "survived")

    @property
    def skipped(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "skipped")

    @property
    def ok(self) -> bool:
        return not self.survivors

    def describe(self) -> list[str]:
        return [o.describe() for o in self.outcomes]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "ok": self.ok,
            "outcomes": [
                {"pid": o.pid, "role": o.role, "cmdline": list(o.cmdline), "result": o.result,
                 "after": o.after, "signals": list(o.signals), "detail": o.detail}
                for o in self.outcomes
            ],
        }


# --------------------------------------------------------------------------- planning


def _owner(ps: Any, proc: Any) -> tuple[int | None, str | None]:
    try:
        uid = proc.uids().real
    except (ps.Error, OSError, AttributeError):
        uid = None
    try:
        name = proc.username()
    except (ps.Error, OSError, KeyError):
        name = str(uid) if uid is not None else None
    return uid, name


def plan_kill(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None,
              uid: int | None = None) -> KillPlan:
    """Find what ``kill DIR`` would signal. Never signals anything.

    Args:
        run_dir: the run (output) directory.
        psutil_module: a psutil-like module (tests inject fakes for AccessDenied and other users).
        uid: whose processes may be signalled (default: our effective uid).
    """
    ps = _psutil(psutil_module)
    me = os.geteuid() if uid is None else uid
    found = discover(run_dir, psutil_module=ps)
    targets: list[ProcInfo] = []
    refusals: list[Refusal] = []
    notes = list(found.notes)
    if found.record_state == "mismatch" and found.record:
        rec = found.record
        refusals.append(Refusal(rec.pid or 0, "recorded pid now belongs to another process "
                                "(create time or command line differ): left alone"))
    trees: list[ProcessTree] = []
    seen: set[int] = set()
    for tree in found.trees:  # several trees share launchers under torchrun (one per rank)
        kept_launchers: list[ProcInfo] = []
        rest: list[ProcInfo] = []
        tree_ok = True
        for info in tree.all():
            if info.pid in seen:
                continue
            seen.add(info.pid)
            try:
                proc = ps.Process(info.pid)
                ctime = proc.create_time()
            except ps.NoSuchProcess:
                continue  # exited since the scan: nothing to do
            except (ps.Error, OSError) as exc:
                refusals.append(Refusal(info.pid, f"cannot inspect: {exc}", info.cmdline))
                if info.role == "trainer":
                    tree_ok = False
                continue
            if not same_time(ctime, info.create_time):
                refusals.append(Refusal(info.pid, "pid was reused since the scan", info.cmdline))
                continue
            puid, user = _owner(ps, proc)
            stamped = ProcInfo(pid=info.pid, create_time=info.create_time, cmdline=info.cmdline,
                               username=user, role=info.role, ppid=info.ppid)
            if puid is None or puid != me:
                refusals.append(Refusal(info.pid, f"owned by another user ({user or '?'}): not signalled",
                                        info.cmdline, user))
                if info.role == "trainer":
                    tree_ok = False
                continue
            (kept_launchers if info.role == "launcher" else rest).append(stamped)
        if not tree_ok:
            notes.append(f"trainer pid {tree.trainer.pid} cannot be signalled by this user; nothing of its tree is")
            continue
        targets += kept_launchers + rest
        trees.append(tree)
    if not found.trees:
        notes.append(f"no live trainer writes to {found.run_dir}")
        if found.exit is not None:
            notes.append(f"the last run sdxl-tui started {found.exit.description}")
    for pid, out in found.other_trainers:
        notes.append(f"pid {pid} trains into another output directory ({out}): left alone")
    return KillPlan(run_dir=found.run_dir, targets=tuple(targets), trees=tuple(trees),
                    refusals=tuple(refusals), notes=tuple(notes))


# --------------------------------------------------------------------------- executing


class _Target:
    def __init__(self, info: ProcInfo, proc: Any) -> None:
        self.info = info
        self.proc = proc
        self.signals: list[str] = []
        self.result: str | None = None
        self.after: str | None = None
        self.detail = ""


def _gone(ps: Any, t: _Target) -> bool:
    """True once the process has exited (a zombie counts: it runs nothing any more)."""
    try:
        proc = ps.Process(t.info.pid)
        if not same_time(proc.create_time(), t.info.create_time):
            return True
        return bool(proc.status() == ps.STATUS_ZOMBIE)
    except ps.NoSuchProcess:
        return True
    except (ps.Error, OSError):
        return False


def _reap(targets: Sequence[_Target]) -> None:
    for t in targets:  # our own children (tests) must be reaped or they stay zombies
        try:
            os.waitpid(t.info.pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def _send(ps: Any, t: _Target, sig: _signal.Signals, me: int) -> None:
    """Signal one process after re-checking its identity and owner right before."""
    try:
        proc = ps.Process(t.info.pid)
        if not same_time(proc.create_time(), t.info.create_time):
            t.result, t.detail = "skipped", "pid now belongs to another process"
            return
        uid, _ = _owner(ps, proc)
        if uid != me:
            t.result, t.detail = "skipped", "owned by another user"
            return
        if proc.status() == ps.STATUS_ZOMBIE:
            return
        proc.send_signal(sig)
        t.signals.append(sig.name)
    except ps.NoSuchProcess:
        return
    except ps.AccessDenied:
        t.result, t.detail = "skipped", "access denied"


def execute_kill(
    plan: KillPlan,
    *,
    start: str = "INT",
    timeouts: tuple[float, float] = (10.0, 10.0),
    kill_wait: float = 5.0,
    launcher_grace: float = 2.0,
    psutil_module: ModuleType | None = None,
    progress: Callable[[str], None] | None = None,
    uid: int | None = None,
    write_record: bool = True,
    by: str = "sdxl-tui kill",
    how: str = "kill",
    checkpoint: str | None = None,
) -> KillResult:
    """Signal the plan's processes: SIGINT the trainer, wait, SIGTERM all, wait, SIGKILL.

    Args:
        plan: from :func:`plan_kill`; only its processes are ever signalled.
        start: first step, ``INT``, ``TERM`` or ``KILL`` (``--signal``).
        timeouts: seconds to wait after SIGINT and after SIGTERM.
        kill_wait: seconds to wait after SIGKILL before calling a process a survivor.
        launcher_grace: once the trainers are gone, how long launchers get to exit by themselves.
        progress: called with a short line at each step (for a UI status line).
        write_record: keep the stop record (``.sdxl-tui/last-kill.json``): written before the
            first signal, so the run's end reads "stopped by you", then with the outcomes.
        by, how, checkpoint: who asked (``sdxl-tui kill``, ``dashboard key k``, ``sdxl-tui kill
            --after-checkpoint``), ``kill`` or ``stop-after-checkpoint``, and the checkpoint waited for.
    """
    ps = _psutil(psutil_module)
    me = os.geteuid() if uid is None else uid
    say = progress or (lambda _msg: None)
    began = time.time()
    start = start.upper().removeprefix("SIG")
    if start not in STEPS:
        raise ValueError(f"unknown signal step {start!r}; use one of {', '.join(STEPS)}")

    trainer = next((i for i in plan.targets if i.role == "trainer"), None)
    stop = StopRecord(by=by, requested_at=began, signal=f"SIG{start}", how=how, checkpoint=checkpoint,
                      trainer_pid=trainer.pid if trainer else None,
                      trainer_create_time=trainer.create_time if trainer else None)
    if write_record and plan.targets:
        write_stop_record(plan.run_dir, stop)
    targets: list[_Target] = []
    known: set[int] = set()
    for info in plan.targets:
        t = _Target(info, None)
        known.add(info.pid)
        if _gone(ps, t):
            t.result = "gone"
        targets.append(t)
    # Children first: snapshot descendants of the trainers now (workers may have been
    # recreated since the plan), so none is orphaned and missed by the later steps.
    for t in list(targets):
        if t.info.role != "trainer" or t.result:
            continue
        try:
            proc = ps.Process(t.info.pid)
            if not same_time(proc.create_time(), t.info.create_time):
                continue
            kids = proc.children(recursive=True)
        except (ps.Error, OSError):
            continue
        for kid in kids:
            if kid.pid in known:
                continue
            try:
                info = ProcInfo(pid=kid.pid, create_time=kid.create_time(), cmdline=tuple(kid.cmdline()),
                                username=_owner(ps, kid)[1], role="child", ppid=t.info.pid)
            except (ps.Error, OSError):
                continue
            known.add(kid.pid)
            targets.append(_Target(info, None))

    def live() -> list[_Target]:
        return [t for t in targets if t.result is None]

    def wait_for(group: Sequence[_Target], seconds: float, step: str) -> None:
        deadline = time.monotonic() + seconds
        while True:
            _reap(group)
            for t in group:
                if t.result is None and _gone(ps, t):
                    t.result, t.after = "exited", step
            if all(t.result is not None for t in group) or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    steps = STEPS[STEPS.index(start):]
    int_t, term_t = timeouts
    for step in steps:
        alive = live()
        if not alive:
            break
        sig = getattr(_signal, "SIG" + step)
        if step == "INT":
            trainers = [t for t in alive if t.info.role == "trainer"] or alive
            say(f"SIGINT to trainer {', '.join(str(t.info.pid) for t in trainers)}; waiting up to {int_t:g} s")
            for t in trainers:
                _send(ps, t, sig, me)
            wait_for(trainers, int_t, "SIGINT")
            if all(t.result is not None for t in trainers):
                wait_for(live(), launcher_grace, "SIGINT")
            continue
        # SIGTERM / SIGKILL: trainers and their children first, then launchers innermost first.
        order = [t for t in alive if t.info.role != "launcher"] + list(
            reversed([t for t in alive if t.info.role == "launcher"]))
        wait = term_t if step == "TERM" else kill_wait
        say(f"{sig.name} to {len(order)} process(es); waiting up to {wait:g} s")
        for t in order:
            _send(ps, t, sig, me)
        wait_for(live(), wait, sig.name)
    for t in targets:
        if t.result is None:
            t.result = "survived"
    outcomes = tuple(
        Outcome(pid=t.info.pid, role=t.info.role, cmdline=t.info.cmdline, result=t.result or "survived",
                after=t.after, signals=tuple(t.signals), detail=t.detail)
        for t in targets
    )
    result = KillResult(run_dir=plan.run_dir, outcomes=outcomes, started_at=began, ended_at=time.time())
    if write_record and plan.targets:
        sent = tuple(dict.fromkeys(s for o in outcomes for s in o.signals))
        done = replace(stop, result="stopped" if result.ok else "incomplete", ended_at=result.ended_at, signals=sent)
        write_stop_record(plan.run_dir, done, result.to_json())
    return result


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

