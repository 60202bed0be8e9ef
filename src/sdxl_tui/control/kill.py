"""Stop a training run, all of it: one implementation behind keys ``k``/``x`` and ``sdxl-tui kill``.

Why: sd-scripts saves nothing when signalled (``train_network.py`` installs no signal handler),
killing ``accelerate launch`` or ``conda run`` alone orphans the trainer (accelerate's
``commands/launch.py:simple_launcher``), a wrapper script's retry loop starts a signalled
trainer again (over the checkpoint the user meant to keep), and a PID noted yesterday may be
another program today. So a kill is two steps, with plain data in between for the confirmation:

* :func:`plan_kill` finds the trainer tree(s) for the run directory (``sources/procs.py``:
  the recorded process verified by create time and command line, or discovery by
  ``--output_dir``), the run's ancestry above (``sources/lineage.py``: wrappers, launchers, the
  supervisor), every descendant, and the wrappers' other children (``sleep``, ``tee``), each
  with pid, user, command and role, plus the refusals: reused PIDs, other users' processes,
  trainers of other output directories.
* :func:`execute_kill` (``control/signalling.py`` does the identity-checked signalling):

  1. freeze the wrappers (SIGSTOP), so no retry loop can start the trainer again;
  2. SIGINT the trainer(s), wait; SIGTERM the trainers, their children and the launchers, wait;
     SIGKILL. Launchers such as ``accelerate launch`` are not frozen: accelerate >= 1.x pipes
     the trainer's stderr through itself (``_run_subprocess``), and a frozen reader would block
     the trainer's last writes. On its child's exit accelerate's simple launcher raises
     ``CalledProcessError`` and exits 1 (its own KeyboardInterrupt: 130, SIGTERM: 143); so
     a stop behind accelerate reads "exit 1" like a crash, and only the stop record tells;
     the ranks of a multi-process run are all trainers, and the launcher that started them
     (torchrun's elastic agent, also inside ``accelerate launch --multi_gpu``) gets the SIGINT
     first: with ``--max_restarts`` it would otherwise start the ranks again;
  3. end the frozen wrappers (SIGTERM + SIGCONT, wait, SIGKILL) and the wrappers' other children;
  4. let sdxl-tui's supervisor record the exit (it never restarts anything), SIGTERM it if not;
  5. check that nothing of the run lives and watch for a respawn (a new trainer for the same
     output directory, e.g. a systemd unit with ``Restart=``) for a short while: reported, loudly;
  6. write the stop record (``formats/statedir.StopRecord`` in ``last-kill.json``: who, signal,
     time, step), which the state machine reads to say "stopped by you", not "failed".

Stop-after-checkpoint lives in ``control/stop_after.py`` and ends in the same kill.

Nothing here prints.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from sdxl_tui.control.signalling import (
    Target,
    freeze,
    gone,
    ignores,
    load_psutil,
    owner,
    release,
    send,
    wait_for,
)
from sdxl_tui.control.stop_after import (
    CheckpointWaiter,
    WatchResult,
    cancel_stop_after_checkpoint,
    complete_checkpoints,
    list_checkpoints,
    run_saves_state,
    start_stop_after_checkpoint,
    watch_path,
    watcher_status,
)
from sdxl_tui.formats.statedir import StopRecord, write_stop_record
from sdxl_tui.model import ProcessTree, ProcInfo
from sdxl_tui.sources.procs import discover, same_time
from sdxl_tui.sources.ranks import role_label

__all__ = [  # the stop-after-checkpoint names are kept here for the callers of ``kill``
    "STEPS",
    "CheckpointWaiter",
    "KillPlan",
    "KillResult",
    "Outcome",
    "Refusal",
    "WatchResult",
    "cancel_stop_after_checkpoint",
    "complete_checkpoints",
    "execute_kill",
    "list_checkpoints",
    "plan_kill",
    "run_saves_state",
    "start_stop_after_checkpoint",
    "watch_path",
    "watcher_status",
]

#: Signal steps in order; ``--signal`` picks where to start.
STEPS = ("INT", "TERM", "KILL")
#: Roles above the trainer (``sources/lineage.py``) and the wrappers' other children.
_ABOVE = ("supervisor", "wrapper", "launcher")


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
        return [(role_label(p), str(p.pid), p.username or "?", _short(p.cmdline, 400)) for p in self.targets]

    def describe(self) -> list[str]:
        lines = [f"{r:<8} {pid:>7}  {user:<10} {cmd}" for r, pid, user, cmd in self.rows()]
        lines += [f"refused  {r.pid:>7}  {r.username or '?':<10} {r.reason}" for r in self.refusals]
        return lines


@dataclass(frozen=True)
class Outcome:
    """What happened to one process of the plan."""

    pid: int
    role: str  # as shown: a rank of a multi-process launch is "rank N" (sources/ranks.role_label)
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
    #: Trainers for the same output directory that appeared after the kill (a respawn).
    respawned: tuple[ProcInfo, ...] = ()

    @property
    def survivors(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "survived")

    @property
    def skipped(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "skipped")

    @property
    def ok(self) -> bool:
        return not self.survivors and not self.respawned

    def describe(self) -> list[str]:
        lines = [o.describe() for o in self.outcomes]
        lines += [f"RESPAWNED {p.pid:>7}  a new trainer started for this run: {_short(p.cmdline, 200)}"
                  for p in self.respawned]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "ok": self.ok,
            "respawned": [{"pid": p.pid, "create_time": p.create_time, "cmdline": list(p.cmdline)}
                          for p in self.respawned],
            "outcomes": [
                {"pid": o.pid, "role": o.role, "cmdline": list(o.cmdline), "result": o.result,
                 "after": o.after, "signals": list(o.signals), "detail": o.detail}
                for o in self.outcomes
            ],
        }


# --------------------------------------------------------------------------- planning


def _stamp(ps: Any, info: ProcInfo, me: int) -> tuple[ProcInfo | None, Refusal | None]:
    """The process re-checked now: (stamped info, None), (None, refusal) or (None, None) if gone."""
    try:
        proc = ps.Process(info.pid)
        ctime = proc.create_time()
    except ps.NoSuchProcess:
        return None, None  # exited since the scan: nothing to do
    except (ps.Error, OSError) as exc:
        return None, Refusal(info.pid, f"cannot inspect: {exc}", info.cmdline)
    if not same_time(ctime, info.create_time):
        return None, Refusal(info.pid, "pid was reused since the scan", info.cmdline)
    puid, user = owner(ps, proc)
    if puid is None or puid != me:
        return None, Refusal(info.pid, f"owned by another user ({user or '?'}): not signalled", info.cmdline, user)
    return ProcInfo(pid=info.pid, create_time=info.create_time, cmdline=info.cmdline, username=user,
                    role=info.role, ppid=info.ppid, rank=info.rank, local_rank=info.local_rank,
                    world_size=info.world_size), None


def _descendants(ps: Any, info: ProcInfo, role: str, known: set[int]) -> list[ProcInfo]:
    """The descendants of ``info`` (if it is still that process) not in ``known``, as ``role``."""
    try:
        proc = ps.Process(info.pid)
        if not same_time(proc.create_time(), info.create_time):
            return []
        kids = proc.children(recursive=True)
    except (ps.Error, OSError):
        return []
    out = []
    for kid in kids:
        if kid.pid in known:
            continue
        try:
            out.append(ProcInfo(pid=kid.pid, create_time=kid.create_time(), cmdline=tuple(kid.cmdline()),
                                username=owner(ps, kid)[1], role=role, ppid=kid.ppid()))
        except (ps.Error, OSError):
            continue
    return out


def _helpers(ps: Any, chain: Sequence[ProcInfo], known: set[int], me: int) -> list[ProcInfo]:
    """The wrappers' other descendants (``sleep`` of a retry loop, ``tee``): part of the run."""
    out: list[ProcInfo] = []
    for info in chain:
        if info.role != "wrapper":
            continue
        for row in _descendants(ps, info, "helper", known):
            stamped, _ = _stamp(ps, row, me)
            if stamped is not None:
                known.add(row.pid)
                out.append(stamped)
    return out


def plan_kill(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None,
              uid: int | None = None) -> KillPlan:
    """Find what ``kill DIR`` would signal. Never signals anything.

    Args:
        run_dir: the run (output) directory.
        psutil_module: a psutil-like module (tests inject fakes for AccessDenied and other users).
        uid: whose processes may be signalled (default: our effective uid).
    """
    ps = load_psutil(psutil_module)
    me = os.geteuid() if uid is None else uid
    found = discover(run_dir, psutil_module=ps)
    above: list[ProcInfo] = []
    below: list[ProcInfo] = []
    refusals: list[Refusal] = []
    notes = list(found.notes)
    if found.record_state == "mismatch" and found.record:
        refusals.append(Refusal(found.record.pid or 0, "recorded pid now belongs to another process "
                                "(create time or command line differ): left alone"))
    trees: list[ProcessTree] = []
    seen: set[int] = set()
    for tree in found.trees:  # several trees share launchers under torchrun (one per rank)
        kept: list[ProcInfo] = []
        tree_ok = True
        for info in tree.all():
            if info.pid in seen:
                continue
            seen.add(info.pid)
            stamped, refusal = _stamp(ps, info, me)
            if refusal is not None:
                refusals.append(refusal)
                tree_ok = tree_ok and info.role != "trainer"
            if stamped is not None:
                kept.append(stamped)
        if not tree_ok:
            notes.append(f"trainer pid {tree.trainer.pid} cannot be signalled by this user; nothing of its tree is")
            continue
        above += [p for p in kept if p.role in _ABOVE]
        below += [p for p in kept if p.role not in _ABOVE]
        trees.append(tree)
    helpers = _helpers(ps, above, {p.pid for p in above + below}, me)
    if not found.trees:
        notes.append(f"no live trainer writes to {found.run_dir}")
        if found.exit is not None:
            notes.append(f"the last run sdxl-tui started {found.exit.description}")
    for pid, out in found.other_trainers:
        notes.append(f"pid {pid} trains into another output directory ({out}): left alone")
    return KillPlan(run_dir=found.run_dir, targets=(*above, *below, *helpers), trees=tuple(trees),
                    refusals=tuple(refusals), notes=tuple(notes))


# --------------------------------------------------------------------------- executing


def _snapshot_children(ps: Any, targets: list[Target]) -> None:
    """Mark what is already gone, and add the trainers' descendants as they are now (workers
    may have been recreated since the plan), so none is orphaned and missed by the later steps."""
    for t in targets:
        if gone(ps, t):
            t.result = "gone"
    known = {t.info.pid for t in targets}
    for t in list(targets):
        if t.info.role != "trainer" or t.result:
            continue
        for info in _descendants(ps, t.info, "child", known):
            known.add(info.pid)
            targets.append(Target(info))


@dataclass
class _Steps:
    """The escalation's knobs (``execute_kill``'s arguments)."""

    ps: Any
    me: int
    say: Callable[[str], None]
    int_t: float
    term_t: float
    kill_wait: float
    grace: float


def _elastic_agents(targets: Sequence[Target]) -> list[Target]:
    """The launchers that started the ranks of a multi-process run: torchrun's elastic agent
    (also inside ``accelerate launch --multi_gpu``). With ``--max_restarts N`` it starts the
    workers again when one fails, a rank that dies of our SIGINT included, over the checkpoints;
    a signal to the agent itself makes it stop its workers with that signal and exit
    (``torch/distributed/elastic/agent/server/api.py``: ``SignalException``, no restart)."""
    parents = {t.info.ppid for t in targets if t.info.role == "trainer" and (t.info.world_size or 0) > 1}
    return [t for t in targets if t.info.role == "launcher" and t.info.pid in parents]


def _trainer_steps(k: _Steps, start: str, targets: Sequence[Target]) -> None:
    """SIGINT the trainers, wait; SIGTERM the trainers, their children and the launchers, wait;
    SIGKILL. Frozen wrappers and the supervisor are left to the later steps."""
    movable = [t for t in targets if t.info.role not in ("wrapper", "supervisor", "helper")]
    for step in STEPS[STEPS.index(start):]:
        alive = [t for t in movable if t.result is None]
        if not alive:
            return
        sig = _signal.Signals(getattr(_signal, "SIG" + step))
        if step == "INT":
            trainers = [t for t in alive if t.info.role == "trainer"] or alive
            deaf = [t for t in trainers if ignores(t.info.pid, sig)]
            wait = 0.0 if len(deaf) == len(trainers) else k.int_t
            k.say(f"SIGINT to trainer {', '.join(str(t.info.pid) for t in trainers)}; waiting up to {wait:g} s")
            if deaf:
                k.say(f"pid {', '.join(str(t.info.pid) for t in deaf)} ignores SIGINT (inherited from "
                      "`nohup … &` or a job runner): SIGTERM follows at once")
            agents = _elastic_agents(alive)
            if agents:
                k.say(f"SIGINT first to launcher {', '.join(str(t.info.pid) for t in agents)} that started the "
                      "ranks (torchrun's agent: a signal makes it stop its workers, never restart them)")
            for t in (*agents, *trainers):
                send(k.ps, t, sig, k.me)
            if wait_for(k.ps, trainers, wait, "SIGINT"):
                wait_for(k.ps, [t for t in movable if t.result is None], k.grace, "SIGINT")
            continue
        # trainers and their children first, then launchers innermost first
        order = [t for t in alive if t.info.role != "launcher"] + list(
            reversed([t for t in alive if t.info.role == "launcher"]))
        wait = k.term_t if step == "TERM" else k.kill_wait
        k.say(f"{sig.name} to {len(order)} process(es); waiting up to {wait:g} s")
        for t in order:
            send(k.ps, t, sig, k.me)
        wait_for(k.ps, [t for t in movable if t.result is None], wait, sig.name)


def _end_the_rest(k: _Steps, targets: Sequence[Target]) -> None:
    """After the trainers: the frozen wrappers, their other children, then the supervisor
    (which only needs to record the exit: it gets ``grace`` to do so before SIGTERM)."""
    wrappers = [t for t in targets if t.info.role == "wrapper" and t.result is None]
    if wrappers:
        k.say(f"ending {len(wrappers)} wrapper(s) (SIGTERM + SIGCONT)")
        release(k.ps, wrappers, k.me, wait=k.term_t, kill_wait=k.kill_wait)
    helpers = [t for t in targets if t.info.role == "helper" and t.result is None]
    release(k.ps, helpers, k.me, wait=k.grace, kill_wait=k.kill_wait)
    supervisors = [t for t in targets if t.info.role == "supervisor" and t.result is None]
    if supervisors and not wait_for(k.ps, supervisors, k.grace, "exit"):
        release(k.ps, supervisors, k.me, wait=k.term_t, kill_wait=k.kill_wait)


def _watch_respawn(run_dir: str, targets: Sequence[Target], seconds: float, ps: Any) -> tuple[ProcInfo, ...]:
    """Trainers for the same output directory that were not part of the kill, seen within
    ``seconds`` after it (a restart by something outside the run's ancestry)."""
    ours = {(t.info.pid, round(t.info.create_time, 1)) for t in targets}
    deadline = time.monotonic() + seconds
    while True:
        found = discover(run_dir, psutil_module=ps)
        new = tuple(tree.trainer for tree in found.trees
                    if (tree.trainer.pid, round(tree.trainer.create_time, 1)) not in ours)
        if new or time.monotonic() >= deadline:
            return new
        time.sleep(0.2)


def _outcomes(targets: Sequence[Target]) -> tuple[Outcome, ...]:
    """What happened to each target; one still undecided survived."""
    return tuple(
        Outcome(pid=t.info.pid, role=role_label(t.info), cmdline=t.info.cmdline, result=t.result or "survived",
                after=t.after, signals=tuple(t.signals), detail=t.detail)
        for t in targets
    )


def execute_kill(
    plan: KillPlan,
    *,
    start: str = "INT",
    timeouts: tuple[float, float] = (10.0, 10.0),
    kill_wait: float = 5.0,
    launcher_grace: float = 2.0,
    respawn_watch: float = 3.0,
    psutil_module: ModuleType | None = None,
    progress: Callable[[str], None] | None = None,
    uid: int | None = None,
    write_record: bool = True,
    by: str = "sdxl-tui kill",
    how: str = "kill",
    step: int | None = None,
    checkpoint: str | None = None,
) -> KillResult:
    """Stop the plan's processes (the steps are in the module docstring).

    Args:
        plan: from :func:`plan_kill`; only its processes (and the trainers' children as they
            are now) are ever signalled.
        start: first step, ``INT``, ``TERM`` or ``KILL`` (``--signal``).
        timeouts: seconds to wait after SIGINT and after SIGTERM.
        kill_wait: seconds to wait after SIGKILL before calling a process a survivor.
        launcher_grace: once the trainers are gone, how long launchers and the supervisor get
            to exit by themselves.
        respawn_watch: seconds to watch for a new trainer of the same run after the kill.
        progress: called with a short line at each step (for a UI status line).
        by, how, step, checkpoint: who asked (``sdxl-tui kill``, ``dashboard key k``, ``sdxl-tui
            kill --after-checkpoint``), ``kill`` or ``stop-after-checkpoint``, the step the run
            was at, the checkpoint waited for: the stop record, written before the first signal
            (so a trainer that exits at once is already attributed) and again with the outcomes.
    """
    ps = load_psutil(psutil_module)
    me = os.geteuid() if uid is None else uid
    say = progress or (lambda _msg: None)
    began = time.time()
    start = start.upper().removeprefix("SIG")
    if start not in STEPS:
        raise ValueError(f"unknown signal step {start!r}; use one of {', '.join(STEPS)}")
    targets = [Target(info) for info in plan.targets]
    _snapshot_children(ps, targets)
    trainer = next((t.info for t in targets if t.info.role == "trainer"), None)
    stop = StopRecord(by=by, requested_at=began, signal=f"SIG{start}", how=how, checkpoint=checkpoint, step=step,
                      trainer_pid=trainer.pid if trainer else None,
                      trainer_create_time=trainer.create_time if trainer else None)
    if write_record and plan.targets:  # before any signal: the trainer's exit may be read at once
        write_stop_record(plan.run_dir, stop)
    k = _Steps(ps, me, say, timeouts[0], timeouts[1], kill_wait, launcher_grace)
    frozen = freeze(ps, [t for t in targets if t.info.role == "wrapper"], me)
    if frozen:
        say(f"froze {len(frozen)} wrapper(s) so nothing can restart the trainer")
    _trainer_steps(k, start, targets)
    _end_the_rest(k, targets)
    respawned = _watch_respawn(plan.run_dir, targets, respawn_watch, ps) if plan.targets else ()
    result = KillResult(run_dir=plan.run_dir, outcomes=_outcomes(targets), started_at=began, ended_at=time.time(),
                        respawned=respawned)
    if write_record and plan.targets:
        sent = tuple(dict.fromkeys(s for o in result.outcomes for s in o.signals))
        done = replace(stop, result="stopped" if result.ok else "incomplete", ended_at=result.ended_at, signals=sent)
        write_stop_record(plan.run_dir, done, result.to_json())
    return result
