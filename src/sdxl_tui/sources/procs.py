"""Trainer discovery and the trainer's process tree (the psutil boundary).

Why this exists: the PID a user echoes after ``nohup conda run … &`` is ``conda run``'s, not
the trainer's, and a PID written down yesterday can belong to another program today. So the
trainer is found by what it *is*: a process whose command line runs an sd-scripts network
trainer (``sdxl_train_network.py``, ``train_network.py``, any ``*train*network*.py``, or our
simulator ``sdxl_tui simulate``) with an ``--output_dir`` (also ``--output_dir=X``, an
argparse prefix such as ``--output_d``, or ``output_dir`` inside its ``--config_file``
TOML) that resolves, against the process's own working directory, to the run directory.

Launchers repeat the trainer's arguments on their own command line (``accelerate launch …
sdxl_train_network.py``, ``conda run … python train_network.py``) and DataLoader workers are forks
with the very same command line (``torch.utils.data.DataLoader`` forks them), so the trainer is the
candidate that (a) runs the script directly under an interpreter and (b) whose parent is not itself
such a trainer. Above it, the launcher chain is every parent that exists only to run it
(``sources/lineage.py``: wrapper shells such as ``bash train.sh`` or a retry loop, ``conda run``,
``accelerate launch``, ``torchrun``, our supervisor, with that role); the walk stops at anything
else (an interactive shell, tmux, sshd, init). Below it, every descendant. The ranks of a
multi-process launch (torchrun, ``accelerate launch --multi_gpu``) are one tree with rank 0 as
its trainer (``sources/ranks.py``: ``RANK``/``LOCAL_RANK`` from ``/proc/PID/environ``). The
process table itself is read by ``sources/proctable.py``.

The process sdxl-tui itself started is found through the run record
``OUTPUT_DIR/.sdxl-tui/run.json`` and trusted only when its (pid, create_time) and command
line still match: a reused PID is reported, never adopted.

Nothing here signals anything or writes anything; ``control/kill.py`` does that.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from sdxl_tui.formats.cmdline import (
    cmdline_matches,
    is_direct,
    option_value,
    script_span,
    trainer_output_dir,
)
from sdxl_tui.formats.statedir import RunRecord, read_run_record
from sdxl_tui.model import ProcessTree, ProcInfo
from sdxl_tui.sources.lineage import ancestor_role
from sdxl_tui.sources.proctable import Row, psutil_or_lazy, scan
from sdxl_tui.sources.ranks import merge_ranks, rank_fields, role_label

_CREATE_TIME_TOLERANCE = 0.05


# --------------------------------------------------------------------------- run record


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How the last run sdxl-tui started ended, as its supervisor saw it."""

    pid: int | None
    exit_code: int | None  # None when killed by a signal or unknown
    signal: int | None = None
    ended_at: float | None = None
    of: str = "launch"  # "trainer" when the supervised process was the trainer itself
    error: str | None = None  # e.g. the program could not be started

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return _signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def description(self) -> str:
        if self.error:
            return f"could not start: {self.error}"
        if self.signal is not None:
            verb = "killed" if self.signal == _signal.SIGKILL else "stopped"
            text = f"{verb} by {self.signal_name}"
            if self.signal == _signal.SIGKILL:
                text += " (host out of memory? check `dmesg` / `journalctl -k`)"
            return text
        if self.exit_code is None:
            return "ended (status unknown)"
        if self.exit_code == 0:
            return "exited normally (status 0)"
        return f"exited with status {self.exit_code}"


def exit_info_from_record(record: RunRecord | None) -> ExitInfo | None:
    if record is None or record.ended_at is None:
        return None
    return ExitInfo(
        pid=record.pid,
        exit_code=record.exit_code,
        signal=record.signal,
        ended_at=record.ended_at,
        of="trainer" if record.trainer_pid == record.pid else "launch",
        error=record.error,
    )


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class Discovery:
    """Everything one scan found for a run directory (plain data for status, kill, start)."""

    run_dir: str
    trees: tuple[ProcessTree, ...] = ()
    record: RunRecord | None = None
    record_state: str = "none"  # "none" | "alive" | "ended" | "gone" | "mismatch"
    notes: tuple[str, ...] = ()
    other_trainers: tuple[tuple[int, str], ...] = ()  # (pid, output_dir) of other runs
    scanned: int = 0
    scan_ms: float = 0.0
    exit: ExitInfo | None = None

    @property
    def tree(self) -> ProcessTree | None:
        return self.trees[0] if self.trees else None


def _short(cmdline: Sequence[str], limit: int = 120) -> str:
    text = " ".join(cmdline)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def same_time(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) < _CREATE_TIME_TOLERANCE


def _info(row: Row, role: str) -> ProcInfo:
    return ProcInfo(
        pid=row.pid,
        create_time=row.create_time or 0.0,
        cmdline=row.cmdline,
        role=role,
        ppid=row.ppid,
    )


def _build_tree(ps: Any, rows: Mapping[int, Row], children: Mapping[int, list[int]], trainer: Row,
                recorded: bool) -> ProcessTree:
    launchers: list[ProcInfo] = []
    cur = trainer
    seen = {trainer.pid}
    while cur.ppid and cur.ppid > 1 and cur.ppid in rows and cur.ppid not in seen:
        parent = rows[cur.ppid]
        role = ancestor_role(parent.cmdline)  # sources/lineage.py: wrappers, launchers, our supervisor
        if role is None:
            break  # the user's shell, tmux, sshd, a test runner: not the run's
        launchers.append(_info(parent, role))
        seen.add(parent.pid)
        cur = parent
    launchers.reverse()
    kids: list[ProcInfo] = []
    stack = list(children.get(trainer.pid, ()))
    while stack:
        pid = stack.pop(0)
        if pid in seen or pid not in rows:
            continue
        seen.add(pid)
        row = rows[pid]
        kids.append(_info(row, "worker" if row.cmdline == trainer.cmdline else "child"))
        stack.extend(children.get(pid, ()))
    return ProcessTree(trainer=rank_fields(_info(trainer, "trainer"), trainer.rank_env(ps)), launchers=tuple(launchers),
                       children=tuple(kids), recorded=recorded)


def discover(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None,
             rows: Mapping[int, Row] | None = None) -> Discovery:
    """Scan the process table once and find the trainer tree(s) writing to ``run_dir``.

    Never raises for processes that vanish or deny access mid-scan: those are skipped.
    """
    ps = psutil_or_lazy(psutil_module)
    t0 = time.perf_counter()
    target = os.path.realpath(os.fspath(run_dir))
    if rows is None:
        rows = scan(ps)
    children: dict[int, list[int]] = {}
    for row in rows.values():
        if row.ppid is not None:
            children.setdefault(row.ppid, []).append(row.pid)

    notes: list[str] = []
    candidates: dict[int, Row] = {}
    others: list[tuple[int, str]] = []
    for row in rows.values():
        span = script_span(row.cmdline)
        if span is None or not is_direct(row.cmdline, span[0]):
            continue
        cwd = row.cwd(ps) if _needs_cwd(row.cmdline, span) else None
        out = trainer_output_dir(row.cmdline, cwd)
        if out == target:
            candidates[row.pid] = row
        elif out is not None:
            others.append((row.pid, out))
    # DataLoader workers and other forks share the trainer's command line: keep the topmost.
    trainers = {pid: r for pid, r in candidates.items() if r.ppid not in candidates}
    others = [(pid, out) for pid, out in others if rows[pid].ppid not in {p for p, _ in others}]

    record = read_run_record(target)
    record_state = "none"
    recorded_trainer: Row | None = None
    if record is not None:
        record_state, recorded_trainer, note = _check_record(record, rows, children, candidates, target)
        if note:
            notes.append(note)
    exit_info = exit_info_from_record(record) if record_state in ("ended", "gone") else None

    trees: list[ProcessTree] = []
    covered: set[int] = set()
    if recorded_trainer is not None:
        tree = _build_tree(ps, rows, children, recorded_trainer, recorded=True)
        trees.append(tree)
        covered.update(p.pid for p in tree.all())
    for row in sorted(trainers.values(), key=lambda r: (r.create_time or 0.0, r.pid)):
        if row.pid in covered:
            continue
        tree = _build_tree(ps, rows, children, row, recorded=False)
        trees.append(tree)
        covered.update(p.pid for p in tree.all())
    trees, rank_notes = merge_ranks(trees)  # sources/ranks.py: one tree per multi-process launch
    notes += rank_notes
    return Discovery(
        run_dir=target,
        trees=tuple(trees),
        record=record,
        record_state=record_state,
        notes=tuple(notes),
        other_trainers=tuple(others),
        scanned=len(rows),
        scan_ms=(time.perf_counter() - t0) * 1000.0,
        exit=exit_info,
    )


def _needs_cwd(cmdline: Sequence[str], span: tuple[int, int]) -> bool:
    args = cmdline[span[1]:]
    out = option_value(args, "--output_dir")
    if out is not None:
        return not os.path.isabs(os.path.expanduser(out))
    cfg = option_value(args, "--config_file")
    return cfg is not None


def _check_record(record: RunRecord, rows: Mapping[int, Row], children: Mapping[int, list[int]],
                  candidates: Mapping[int, Row], target: str) -> tuple[str, Row | None, str | None]:
    """Is the recorded process still ours? Returns (state, trainer row or None, note)."""
    pid = record.pid
    argv = record.argv
    if pid is None:
        return "none", None, None
    row = rows.get(pid)
    if row is None:
        return ("ended" if record.ended else "gone"), None, None
    if not same_time(row.create_time, record.create_time) or not (
        row.cmdline and cmdline_matches(row.cmdline, argv)
    ):
        state = "ended" if record.ended else "mismatch"
        return state, None, (
            f"recorded pid {pid} now belongs to another process ({_short(row.cmdline) or '?'}); "
            "it is not the run sdxl-tui started and is left alone"
        )
    # The recorded process is ours: the trainer is it, or the trainer below it.
    if row.pid in candidates:
        return "alive", row, None
    stack = list(children.get(row.pid, ()))
    while stack:
        child = stack.pop(0)
        if child in candidates:
            return "alive", candidates[child], None
        stack.extend(children.get(child, ()))
    return "alive", row, None  # still starting (e.g. conda resolving the env)


def find_trainers(
    run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None
) -> tuple[ProcessTree, ...]:
    """All trainer trees writing to ``run_dir`` (the recorded one first)."""
    return discover(run_dir, psutil_module=psutil_module).trees


def find_trainer(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None) -> ProcessTree | None:
    """The trainer tree writing to ``run_dir``, or None when no trainer is alive."""
    trees = find_trainers(run_dir, psutil_module=psutil_module)
    return trees[0] if trees else None


def trainer_output_dirs(*, psutil_module: ModuleType | None = None) -> frozenset[str]:
    """The resolved ``--output_dir`` of every trainer alive now: one scan for a folder of runs."""
    ps, found = psutil_or_lazy(psutil_module), set[str | None]()
    for row in scan(ps).values():
        span = script_span(row.cmdline)
        if span is not None and is_direct(row.cmdline, span[0]):
            found.add(trainer_output_dir(row.cmdline, row.cwd(ps) if _needs_cwd(row.cmdline, span) else None))
    return frozenset(d for d in found if d is not None)


# --------------------------------------------------------------------------- live sampling


class ProcessWatcher:
    """Samples the trainer tree of one run directory, cheaply, every few seconds.

    psutil ``Process`` objects are kept across samples (keyed by pid and create time), so
    ``cpu_percent`` is the CPU used since the previous sample, not a blocking measurement.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None) -> None:
        self.run_dir = os.fspath(run_dir)
        self._ps = psutil_or_lazy(psutil_module)
        self._procs: dict[tuple[int, float], Any] = {}
        self._last_tree: ProcessTree | None = None
        self.last_exit: ExitInfo | None = None
        """How the run ended, once no trainer is alive (from the run record when known)."""
        self.last_discovery: Discovery | None = None
        self.notes: tuple[str, ...] = ()

    def sample(self) -> ProcessTree | None:
        """The live trainer tree with CPU, RSS and status filled in, or None."""
        ps = self._ps
        found = discover(self.run_dir, psutil_module=ps)
        self.last_discovery = found
        self.notes = found.notes
        tree = found.tree
        if tree is None:
            if found.exit is not None:
                self.last_exit = found.exit
            elif self._last_tree is not None:
                gone = self._last_tree.trainer
                self.last_exit = ExitInfo(pid=gone.pid, exit_code=None, ended_at=time.time(), of="trainer")
            self._last_tree = None
            self._procs.clear()
            return None
        self.last_exit = None
        keep: dict[tuple[int, float], Any] = {}

        def fill(info: ProcInfo) -> ProcInfo:
            key = (info.pid, round(info.create_time, 2))
            proc = self._procs.get(key)
            first = proc is None
            if proc is None:
                try:
                    proc = ps.Process(info.pid)
                except (ps.Error, OSError):
                    return replace(info, alive=False)
            keep[key] = proc
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)
                    rss = proc.memory_info().rss
                    status = proc.status()
                    try:
                        user = proc.username()
                    except (ps.AccessDenied, KeyError):
                        user = None
            except ps.NoSuchProcess:
                return replace(info, alive=False)
            except (ps.Error, OSError):
                return info
            return replace(info, cpu_percent=None if first else cpu, rss=rss, status=status,
                           username=user, alive=status != "zombie")

        tree = ProcessTree(
            trainer=fill(tree.trainer),
            launchers=tuple(fill(p) for p in tree.launchers),
            children=tuple(fill(p) for p in tree.children),
            ranks=tuple(fill(p) for p in tree.ranks),
            recorded=tree.recorded,
        )
        self._procs = keep
        self._last_tree = tree
        return tree


def describe_tree(tree: ProcessTree) -> list[str]:
    """Lines ``role pid user command`` for a tree, outermost launcher first (ranks named)."""
    return [f"{role_label(p):<8} {p.pid:>7} {p.username or '?':<10} {_short(p.cmdline, 200)}" for p in tree.all()]


__all__ = [
    "Discovery",
    "ExitInfo",
    "ProcessWatcher",
    "describe_tree",
    "discover",
    "exit_info_from_record",
    "find_trainer",
    "find_trainers",
    "same_time",
]
