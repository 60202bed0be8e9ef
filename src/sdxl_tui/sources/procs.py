"""Trainer discovery and the trainer's process tree (the psutil boundary).

Why this exists: the PID a user echoes after ``nohup conda run … &`` is ``conda run``'s, not
the trainer's, and a PID written down yesterday can belong to another program today. So the
trainer is found by what it *is*: a process whose command line runs an sd-scripts network
trainer (``sdxl_train_network.py``, ``train_network.py``, any ``*train*network*.py``, or our
simulator ``sdxl_tui simulate``) with an ``--output_dir`` (also ``--output_dir=X``, an
argparse prefix such as ``--output_d``, or ``output_dir`` inside its ``--config_file``
TOML) that resolves, against the process's own working directory, to the run directory.

Launchers repeat the trainer's arguments on their own command line (``accelerate launch …
sdxl_train_network.py``, ``conda run … python train_network.py``) and DataLoader workers
are forks with the very same command line (REF §8.3), so the trainer is the candidate that
(a) runs the script directly under an interpreter and (b) whose parent is not itself such a
trainer. Above it, the launcher chain is every parent that mentions a trainer script (or is
the shell ``conda run`` writes, or our supervisor); the walk stops at anything else (an
interactive shell, tmux, sshd, init). Below it, every descendant.

The process sdxl-tui itself started is found through the run record
``OUTPUT_DIR/.sdxl-tui/run.json`` and trusted only when its (pid, create_time) and command
line still match: a reused PID is reported, never adopted.

Nothing here signals anything or writes anything; ``control/kill.py`` does that.
"""

from __future__ import annotations

import json
import os
import re
import signal as _signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from sdxl_tui.model import ProcessTree, ProcInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

#: Folder under the output directory where sdxl-tui keeps its own files.
STATE_DIR = ".sdxl-tui"
#: The run record written when sdxl-tui starts a run.
RECORD_NAME = "run.json"
#: Module name of the supervisor that sdxl-tui starts the trainer under.
SUPERVISOR_MODULE = "sdxl_tui.control.supervisor"

_TRAINER_SCRIPT = re.compile(r"(?:^|[/\\])[\w.\-]*train[\w.\-]*network[\w.\-]*\.py$")
_INTERPRETER = re.compile(r"(?:python|pypy)[\d.]*[a-z]?(?:\.exe)?$")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
#: Interpreter options that take a separate value (``python -X dev script.py``).
_OPTS_WITH_VALUE = frozenset({"-X", "-W", "-Q"})
_CREATE_TIME_TOLERANCE = 0.05


class _LazyPsutil:
    """``psutil``, imported on first attribute access.

    Why: on Linux a scan reads /proc itself (``_scan_proc``) and needs psutil only for a
    trainer it found (``Process`` for CPU/RSS/user) or an unusual error, so a status of a
    run with no live trainer never pays for importing psutil (tens of milliseconds).
    """

    __name__ = "psutil"

    def __getattr__(self, name: str) -> Any:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        return getattr(psutil, name)


_LAZY_PSUTIL = _LazyPsutil()


def _psutil(module: ModuleType | None) -> Any:
    if module is not None:
        return module
    return _LAZY_PSUTIL


def _boot_time(ps: Any) -> float:
    """psutil's boot time (the ``btime`` line of /proc/stat), read without importing it."""
    if ps is _LAZY_PSUTIL:
        try:
            with open("/proc/stat", "rb") as fh:
                for line in fh:
                    if line.startswith(b"btime"):
                        return float(line.strip().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return float(ps.boot_time())


# --------------------------------------------------------------------------- command lines


def script_span(cmdline: Sequence[str]) -> tuple[int, int] | None:
    """Where the trainer program sits in ``cmdline``: (first token of the program, first
    argument after it), or None when the command line runs no known trainer.

    The program is a ``*train*network*.py`` path, ``-m sdxl_tui simulate`` or the
    ``sdxl-tui simulate`` console script.
    """
    n = len(cmdline)
    for i, tok in enumerate(cmdline):
        if _TRAINER_SCRIPT.search(tok):
            return i, i + 1
        if tok == "-m" and i + 2 < n and cmdline[i + 1] == "sdxl_tui" and cmdline[i + 2] == "simulate":
            return i, i + 3
        if i + 1 < n and cmdline[i + 1] == "simulate" and os.path.basename(tok) in ("sdxl-tui", "sdxl_tui"):
            return i, i + 2
    return None


_MENTION = re.compile(r"[\w.\-]*train[\w.\-]*network[\w.\-]*\.py\b|sdxl[_-]tui simulate")


def mentions_trainer(cmdline: Sequence[str]) -> bool:
    """True when a command line runs a trainer or carries one inside a string
    (``sh -c "conda run … train_network.py …"``): the launcher chain test."""
    return script_span(cmdline) is not None or any(_MENTION.search(tok) for tok in cmdline)


def is_direct(cmdline: Sequence[str], start: int) -> bool:
    """True when the tokens before the trainer program are only an interpreter and its
    options, i.e. this process *is* the trainer, not a launcher that mentions it."""
    if start == 0:
        return True
    if not _INTERPRETER.search(os.path.basename(cmdline[0])):
        return False
    i = 1
    while i < start:
        tok = cmdline[i]
        if tok in _OPTS_WITH_VALUE:
            i += 2
            continue
        if not tok.startswith("-") or tok in ("-m", "-c", "-"):
            return False
        i += 1
    return i == start


def option_value(args: Sequence[str], option: str, min_len: int) -> str | None:
    """The last value of ``--option`` in ``args`` the way argparse reads it: ``--opt V``,
    ``--opt=V`` or an unambiguous prefix at least ``min_len`` characters long."""
    found: str | None = None
    for i, tok in enumerate(args):
        if tok == "--":
            break
        if not tok.startswith("--"):
            continue
        key, eq, val = tok.partition("=")
        if len(key) >= min_len and option.startswith(key):
            if eq:
                found = val
            elif i + 1 < len(args):
                found = args[i + 1]
    return found


_config_cache: dict[str, tuple[tuple[int, int], str | None]] = {}


def _output_dir_from_config(path: str) -> str | None:
    """``output_dir`` from an sd-scripts ``--config_file`` TOML (any table; sd-scripts flattens
    them), cached by mtime and size. sd-scripts appends ``.toml`` when it is missing."""
    if not path.endswith(".toml"):
        path += ".toml"
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _config_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    value: str | None = None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        data = {}

    def walk(table: Mapping[str, Any]) -> None:
        nonlocal value
        for k, v in table.items():
            if isinstance(v, Mapping):
                walk(v)
            elif k == "output_dir" and isinstance(v, str):
                value = v

    walk(data)
    if len(_config_cache) > 64:
        _config_cache.clear()
    _config_cache[path] = (key, value)
    return value


def trainer_output_dir(cmdline: Sequence[str], cwd: str | None) -> str | None:
    """The absolute, resolved ``--output_dir`` a trainer command line writes to, or None.

    Relative paths are taken against ``cwd`` (the process's working directory); without a
    cwd a relative path cannot be resolved and None is returned.
    """
    span = script_span(cmdline)
    if span is None:
        return None
    args = cmdline[span[1]:]
    out = option_value(args, "--output_dir", len("--output_d"))
    if out is None:
        cfg = option_value(args, "--config_file", len("--config"))
        if cfg is not None:
            if not os.path.isabs(cfg):
                if cwd is None:
                    return None
                cfg = os.path.join(cwd, cfg)
            out = _output_dir_from_config(cfg)
    if out is None:
        return None
    out = os.path.expanduser(out)
    if not os.path.isabs(out):
        if cwd is None:
            return None
        out = os.path.join(cwd, out)
    return os.path.realpath(out)


def cmdline_matches(cmdline: Sequence[str], argv: Sequence[str]) -> bool:
    """True when a live command line is what running ``argv`` produces.

    The kernel shows ``conda run …`` as ``/opt/conda/bin/python /opt/conda/bin/conda run …``
    (shebang), so the rule is: ``argv[1:]`` is the tail of ``cmdline`` and the program name
    ``argv[0]`` is the token just before that tail.
    """
    if not argv or len(cmdline) < len(argv):
        return False
    tail = len(argv) - 1
    if tail and list(cmdline[-tail:]) != list(argv[1:]):
        return False
    prog = cmdline[len(cmdline) - len(argv)]
    want = os.path.basename(argv[0])
    got = os.path.basename(prog)
    return got == want or got.startswith(want) or want.startswith(got)


def _is_shell(cmdline: Sequence[str]) -> bool:
    return bool(cmdline) and os.path.basename(cmdline[0]).lstrip("-") in _SHELLS


def _is_script_shell(cmdline: Sequence[str]) -> bool:
    """A shell running ``-c CMD`` or a script file, not an interactive shell."""
    return _is_shell(cmdline) and len(cmdline) > 1 and (
        "-c" in cmdline[1:] or any(not t.startswith("-") for t in cmdline[1:])
    )


def is_supervisor(cmdline: Sequence[str]) -> bool:
    return SUPERVISOR_MODULE in cmdline


# --------------------------------------------------------------------------- run record


def record_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / STATE_DIR / RECORD_NAME


def read_run_record(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run record as a dict, or None when missing or unreadable (half-written)."""
    try:
        data = json.loads(record_path(run_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


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


def exit_info_from_record(record: Mapping[str, Any] | None) -> ExitInfo | None:
    if not record or record.get("ended_at") is None:
        return None
    sig = record.get("signal")
    code = record.get("exit_code")
    return ExitInfo(
        pid=record.get("pid"),
        exit_code=code if isinstance(code, int) else None,
        signal=sig if isinstance(sig, int) else None,
        ended_at=record.get("ended_at"),
        of="trainer" if record.get("trainer_pid") == record.get("pid") else "launch",
        error=record.get("error"),
    )


# --------------------------------------------------------------------------- scanning


@dataclass
class _Row:
    pid: int
    ppid: int | None
    create_time: float | None
    cmdline: tuple[str, ...]
    proc: Any
    _cwd: str | None = None
    _cwd_done: bool = False

    def cwd(self, ps: Any) -> str | None:
        if not self._cwd_done:
            self._cwd_done = True
            try:
                if self.proc is None:
                    self._cwd = os.readlink(f"/proc/{self.pid}/cwd")
                else:
                    self._cwd = self.proc.cwd()
            except (ps.Error, OSError):
                self._cwd = None
        return self._cwd


@dataclass(frozen=True)
class Discovery:
    """Everything one scan found for a run directory (plain data for status, kill, start)."""

    run_dir: str
    trees: tuple[ProcessTree, ...] = ()
    record: Mapping[str, Any] | None = None
    record_state: str = "none"  # "none" | "alive" | "ended" | "gone" | "mismatch"
    notes: tuple[str, ...] = ()
    other_trainers: tuple[tuple[int, str], ...] = ()  # (pid, output_dir) of other runs
    scanned: int = 0
    scan_ms: float = 0.0
    exit: ExitInfo | None = None

    @property
    def tree(self) -> ProcessTree | None:
        return self.trees[0] if self.trees else None


_CLOCK_TICKS: int | None = None


def _scan_proc(ps: Any) -> dict[int, _Row] | None:
    """Read /proc directly (Linux): about 4x cheaper than ``psutil.process_iter`` on a busy
    box, which matters at one scan every 2 s. Create times are computed the way psutil does
    (boot time + start ticks / CLK_TCK), so they compare equal to ``Process.create_time()``.
    Returns None where /proc is not available."""
    global _CLOCK_TICKS
    try:
        names = os.listdir("/proc")
        boot = _boot_time(ps)
        if _CLOCK_TICKS is None:
            _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    ticks = float(_CLOCK_TICKS)
    rows: dict[int, _Row] = {}
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # gone mid-scan, or not readable
        try:
            fields = stat[stat.rindex(b")") + 2:].split()
            ppid = int(fields[1])
            create = boot + int(fields[19]) / ticks
        except (ValueError, IndexError):
            continue
        text = raw.decode("utf-8", "surrogateescape")
        if text.endswith("\0"):
            cmd = tuple(text[:-1].split("\0"))
        elif "\0" in text:
            cmd = tuple(text.split("\0"))
        else:
            cmd = tuple(text.split())  # a process that rewrote its title with spaces
        rows[pid] = _Row(pid, ppid, create, cmd, None)
    return rows


def _scan(ps: Any) -> dict[int, _Row]:
    if getattr(ps, "__name__", None) == "psutil" and sys.platform.startswith("linux"):
        fast = _scan_proc(ps)
        if fast is not None:
            return fast
    rows: dict[int, _Row] = {}
    for proc in ps.process_iter(["pid", "ppid", "cmdline", "create_time"], ad_value=None):
        info = proc.info
        pid = info.get("pid")
        if pid is None:
            continue
        rows[pid] = _Row(pid, info.get("ppid"), info.get("create_time"), tuple(info.get("cmdline") or ()), proc)
    return rows


def _short(cmdline: Sequence[str], limit: int = 120) -> str:
    text = " ".join(cmdline)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def same_time(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) < _CREATE_TIME_TOLERANCE


def _info(row: _Row, role: str) -> ProcInfo:
    return ProcInfo(
        pid=row.pid,
        create_time=row.create_time or 0.0,
        cmdline=row.cmdline,
        role=role,
        ppid=row.ppid,
    )


def _build_tree(rows: Mapping[int, _Row], children: Mapping[int, list[int]], trainer: _Row,
                recorded: bool) -> ProcessTree:
    launchers: list[ProcInfo] = []
    cur = trainer
    seen = {trainer.pid}
    while cur.ppid and cur.ppid > 1 and cur.ppid in rows and cur.ppid not in seen:
        parent = rows[cur.ppid]
        grand = rows.get(parent.ppid) if parent.ppid else None
        if mentions_trainer(parent.cmdline) or is_supervisor(parent.cmdline):
            pass
        elif _is_script_shell(parent.cmdline) and grand is not None and mentions_trainer(grand.cmdline):
            pass  # the temporary script `conda run` writes and runs with bash
        else:
            break
        launchers.append(_info(parent, "launcher"))
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
    return ProcessTree(trainer=_info(trainer, "trainer"), launchers=tuple(launchers),
                       children=tuple(kids), recorded=recorded)


def discover(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None,
             rows: Mapping[int, _Row] | None = None) -> Discovery:
    """Scan the process table once and find the trainer tree(s) writing to ``run_dir``.

    Never raises for processes that vanish or deny access mid-scan: those are skipped.
    """
    ps = _psutil(psutil_module)
    t0 = time.perf_counter()
    target = os.path.realpath(os.fspath(run_dir))
    if rows is None:
        rows = _scan(ps)
    children: dict[int, list[int]] = {}
    for row in rows.values():
        if row.ppid is not None:
            children.setdefault(row.ppid, []).append(row.pid)

    notes: list[str] = []
    candidates: dict[int, _Row] = {}
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
    recorded_trainer: _Row | None = None
    if record is not None:
        record_state, recorded_trainer, note = _check_record(record, rows, children, candidates, target)
        if note:
            notes.append(note)
    exit_info = exit_info_from_record(record) if record_state in ("ended", "gone") else None

    trees: list[ProcessTree] = []
    covered: set[int] = set()
    if recorded_trainer is not None:
        tree = _build_tree(rows, children, recorded_trainer, recorded=True)
        trees.append(tree)
        covered.update(p.pid for p in tree.all())
    for row in sorted(trainers.values(), key=lambda r: (r.create_time or 0.0, r.pid)):
        if row.pid in covered:
            continue
        tree = _build_tree(rows, children, row, recorded=False)
        trees.append(tree)
        covered.update(p.pid for p in tree.all())
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
    out = option_value(args, "--output_dir", len("--output_d"))
    if out is not None:
        return not os.path.isabs(os.path.expanduser(out))
    cfg = option_value(args, "--config_file", len("--config"))
    return cfg is not None


def _check_record(record: Mapping[str, Any], rows: Mapping[int, _Row], children: Mapping[int, list[int]],
                  candidates: Mapping[int, _Row], target: str) -> tuple[str, _Row | None, str | None]:
    """Is the recorded process still ours? Returns (state, trainer row or None, note)."""
    pid = record.get("pid")
    argv = record.get("argv") or []
    if not isinstance(pid, int):
        return "none", None, None
    row = rows.get(pid)
    if row is None:
        return ("ended" if record.get("ended_at") is not None else "gone"), None, None
    if not same_time(row.create_time, record.get("create_time")) or not (
        row.cmdline and cmdline_matches(row.cmdline, argv)
    ):
        if record.get("ended_at") is not None:
            state = "ended"
        else:
            state = "mismatch"
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


def find_trainers(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None) -> tuple[ProcessTree, ...]:
    """All trainer trees writing to ``run_dir`` (the recorded one first)."""
    return discover(run_dir, psutil_module=psutil_module).trees


def find_trainer(run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None) -> ProcessTree | None:
    """The trainer tree writing to ``run_dir``, or None when no trainer is alive."""
    trees = find_trainers(run_dir, psutil_module=psutil_module)
    return trees[0] if trees else None


# --------------------------------------------------------------------------- live sampling


class ProcessWatcher:
    """Samples the trainer tree of one run directory, cheaply, every few seconds.

    psutil ``Process`` objects are kept across samples (keyed by pid and create time), so
    ``cpu_percent`` is the CPU used since the previous sample, not a blocking measurement.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, psutil_module: ModuleType | None = None) -> None:
        self.run_dir = os.fspath(run_dir)
        self._ps = _psutil(psutil_module)
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
            recorded=tree.recorded,
        )
        self._procs = keep
        self._last_tree = tree
        return tree


def describe_tree(tree: ProcessTree) -> list[str]:
    """Lines ``role pid user command`` for a tree, outermost launcher first."""
    return [f"{p.role:<8} {p.pid:>7} {p.username or '?':<10} {_short(p.cmdline, 200)}" for p in tree.all()]


def iter_ids(trees: Iterable[ProcessTree]) -> set[tuple[int, float]]:
    return {(p.pid, p.create_time) for t in trees for p in t.all()}


__all__ = [
    "Discovery",
    "ExitInfo",
    "ProcessWatcher",
    "cmdline_matches",
    "describe_tree",
    "discover",
    "exit_info_from_record",
    "find_trainer",
    "find_trainers",
    "is_direct",
    "mentions_trainer",
    "option_value",
    "read_run_record",
    "record_path",
    "same_time",
    "script_span",
    "trainer_output_dir",
]
