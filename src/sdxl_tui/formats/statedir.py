"""The ``OUTPUT_DIR/.sdxl-tui/`` layout: what sdxl-tui keeps beside a run, and how it writes it.

Why one home: the launcher, the supervisor, the kill path, the evaluation queue and the
readers all find each other's files here; a name spelt in two places is a file one of them
never finds. Everything sdxl-tui writes into a run directory lives under this folder (the
trainer's own files are never touched), and every JSON file is replaced atomically, so a
reader sees the old or the new content, never half of it.

Layout::

    .sdxl-tui/run.json                    RunRecord of the run sdxl-tui started (supervisor, or
                                          the Slurm submission: backend, job id, cluster)
    .sdxl-tui/slurm-batch.sh              the batch script of a Slurm run (formats/slurm.py)
    .sdxl-tui/slurm-end.json              how the trainer ended, written by that script on the node
    .sdxl-tui/lock                        flock held while starting a run
    .sdxl-tui/last-kill.json              the last stop asked for (StopRecord) and what the kill did
    .sdxl-tui/stop-after-checkpoint.json  the stop-after-checkpoint watcher's state
    .sdxl-tui/watcher.log                 the watcher's stderr
    .sdxl-tui/evals/<checkpoint stem>.json  one evaluation's status (control/evaluate/store.py)
    .sdxl-tui/evals/runner.{lock,info,log}  the evaluation queue runner
    .sdxl-tui/compare/                    comparison grids

Outside the run directory (reading a run never writes into it), the user's cache folder
``$XDG_CACHE_HOME/sdxl-tui`` (default ``~/.cache/sdxl-tui``) keeps what the readers decoded,
one file per run's event roots, ``runs/<sha256 of the roots>.events``
(``sources/eventstate.py`` is its format), and one per run directory for its checkpoint
headers, ``runs/<sha256 of the directory>.headers`` (JSON); ``sources/cache.py`` keeps the
folder under its size bound.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "COMPARE_DIR",
    "EVALS_DIR",
    "LAST_KILL_NAME",
    "LOCK_NAME",
    "RECORD_NAME",
    "SLURM_END_NAME",
    "SLURM_SCRIPT_NAME",
    "STATE_DIR",
    "WATCHER_LOG_NAME",
    "WATCH_NAME",
    "RunRecord",
    "StopRecord",
    "eval_status_path",
    "evals_dir",
    "events_cache_path",
    "headers_cache_path",
    "read_json",
    "read_run_record",
    "read_stop_record",
    "record_path",
    "run_cache_path",
    "state_dir",
    "user_cache_dir",
    "write_json_atomic",
    "write_stop_record",
]

STATE_DIR = ".sdxl-tui"
RECORD_NAME = "run.json"
LOCK_NAME = "lock"
LAST_KILL_NAME = "last-kill.json"
WATCH_NAME = "stop-after-checkpoint.json"
WATCHER_LOG_NAME = "watcher.log"
SLURM_SCRIPT_NAME = "slurm-batch.sh"
SLURM_END_NAME = "slurm-end.json"
EVALS_DIR = "evals"
COMPARE_DIR = "compare"


def user_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/sdxl-tui``, else ``~/.cache/sdxl-tui``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sdxl-tui"


def run_cache_path(kind: str, key: Sequence[str], base: Path | None = None) -> Path:
    """``<user cache>/runs/<sha256 of key>.<kind>``: one cached summary of one run's files."""
    import hashlib

    name = hashlib.sha256("\0".join(key).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return (base or user_cache_dir()) / "runs" / f"{name}.{kind}"


def events_cache_path(roots: Sequence[str], max_points: int, base: Path | None = None) -> Path:
    """The cache file of an event reader over ``roots`` at ``max_points``."""
    return run_cache_path("events", [str(max_points), *(os.path.realpath(r) for r in roots)], base)


def headers_cache_path(run_dir: str, base: Path | None = None) -> Path:
    """The cache file of the checkpoint headers (verdict, metadata) of ``run_dir``."""
    return run_cache_path("headers", [os.path.realpath(run_dir)], base)


def log_cache_path(log: str, tail_bytes: int, head_bytes: int, base: Path | None = None) -> Path:
    """The cache file of a console log's reading state (where the tail stopped, the parser's
    facts) for a reader that starts with ``tail_bytes``/``head_bytes`` windows."""
    return run_cache_path("log", [os.path.realpath(log), str(tail_bytes), str(head_bytes)], base)


def state_dir(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/.sdxl-tui``."""
    return Path(run_dir) / STATE_DIR


def record_path(run_dir: str | os.PathLike[str]) -> Path:
    return state_dir(run_dir) / RECORD_NAME


def evals_dir(run_dir: str | os.PathLike[str]) -> Path:
    return state_dir(run_dir) / EVALS_DIR


def eval_status_path(run_dir: str | os.PathLike[str], stem: str) -> Path:
    """The status file of the evaluation of checkpoint ``stem`` (file name without suffix)."""
    return evals_dir(run_dir) / f"{stem}.json"


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` via a temp file, fsync and rename: readers never see half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(dict(data), fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RunRecord:
    """``.sdxl-tui/run.json``: the run sdxl-tui started, as its supervisor saw it.

    Written by ``control/supervisor.py`` when the program starts (``pid``, ``create_time``),
    again when the trainer below a launcher is found (``trainer_pid``), and at the end
    (``ended_at`` with ``exit_code`` or ``signal``, or ``error`` when it could not start).
    (pid, create_time) together name a process: a PID alone may be reused.

    A run submitted to Slurm (``control/slurm.py``) has ``backend = "slurm"``, no pid, and
    the job instead: ``job_id``, ``cluster``, ``submitted_at`` (``started_at`` is the same
    moment), ``partition``, ``user`` and the batch ``script``.
    """

    launch_id: str | None = None
    pid: int | None = None
    create_time: float | None = None
    argv: tuple[str, ...] = ()
    cwd: str | None = None
    output_dir: str | None = None
    log: str | None = None
    started_at: float | None = None
    supervisor_pid: int | None = None
    supervisor_create_time: float | None = None
    extra_env: Mapping[str, str] = field(default_factory=_empty)
    trainer_pid: int | None = None
    trainer_create_time: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    backend: str = "local"
    job_id: str | None = None
    cluster: str | None = None
    submitted_at: float | None = None
    partition: str | None = None
    user: str | None = None
    script: str | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record from its JSON object; a field of the wrong type reads as unknown."""
        argv = data.get("argv")
        env = data.get("extra_env")
        return cls(
            launch_id=_str(data.get("launch_id")),
            pid=_int(data.get("pid")),
            create_time=_float(data.get("create_time")),
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            cwd=_str(data.get("cwd")),
            output_dir=_str(data.get("output_dir")),
            log=_str(data.get("log")),
            started_at=_float(data.get("started_at")),
            supervisor_pid=_int(data.get("supervisor_pid")),
            supervisor_create_time=_float(data.get("supervisor_create_time")),
            extra_env=MappingProxyType({str(k): str(v) for k, v in env.items()})
            if isinstance(env, dict) else _empty(),
            trainer_pid=_int(data.get("trainer_pid")),
            trainer_create_time=_float(data.get("trainer_create_time")),
            ended_at=_float(data.get("ended_at")),
            exit_code=_int(data.get("exit_code")),
            signal=_int(data.get("signal")),
            error=_str(data.get("error")),
            backend=_str(data.get("backend")) or "local",
            job_id=_str(data.get("job_id")),
            cluster=_str(data.get("cluster")),
            submitted_at=_float(data.get("submitted_at")),
            partition=_str(data.get("partition")),
            user=_str(data.get("user")),
            script=_str(data.get("script")),
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["argv"] = list(self.argv)
        out["extra_env"] = dict(self.extra_env)
        return out


def read_run_record(run_dir: str | os.PathLike[str]) -> RunRecord | None:
    """The run record, or None when missing or unreadable (half-written by another tool)."""
    data = read_json(record_path(run_dir))
    return RunRecord.from_json(data) if data is not None else None


@dataclass(frozen=True, slots=True)
class StopRecord:
    """The ``"stop"`` entry of ``.sdxl-tui/last-kill.json``: a stop the user asked for.

    Written *before* the first signal (so a trainer that exits at once is already attributed),
    then updated with the outcome. The state machine reads it to call the end of a run
    "stopped by you" rather than a failure: sd-scripts answers SIGINT with a
    ``KeyboardInterrupt`` and exit status 1 (``train_network.py:NetworkTrainer.train`` has no
    handler), a wrapper script with its own status.
    """

    by: str  # "sdxl-tui kill", "dashboard key k", "sdxl-tui kill --after-checkpoint"
    requested_at: float
    signal: str | None = None  # the first signal sent: "SIGINT", "SIGTERM", "SIGKILL"
    signals: tuple[str, ...] = ()  # every signal (or scancel) sent, in order
    how: str = "kill"  # "kill" or "stop-after-checkpoint"
    checkpoint: str | None = None  # for a stop after a checkpoint: the one it waited for
    step: int | None = None  # the trainer's step when the stop was asked for, if known
    trainer_pid: int | None = None
    trainer_create_time: float | None = None
    result: str = "stopping"  # "stopping", "stopped", "incomplete"
    ended_at: float | None = None
    backend: str = "local"
    job_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StopRecord | None:
        by, at = _str(data.get("by")), _float(data.get("requested_at"))
        if by is None or at is None:
            return None
        return cls(
            by=by, requested_at=at, signal=_str(data.get("signal")), how=_str(data.get("how")) or "kill",
            signals=tuple(s for s in data.get("signals") or () if isinstance(s, str)),
            checkpoint=_str(data.get("checkpoint")), step=_int(data.get("step")),
            trainer_pid=_int(data.get("trainer_pid")), trainer_create_time=_float(data.get("trainer_create_time")),
            result=_str(data.get("result")) or "stopping", ended_at=_float(data.get("ended_at")),
            backend=_str(data.get("backend")) or "local", job_id=_str(data.get("job_id")),
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["signals"] = list(self.signals)
        return out


def read_stop_record(run_dir: str | os.PathLike[str]) -> StopRecord | None:
    """The last stop asked for in this run directory, or None."""
    data = read_json(state_dir(run_dir) / LAST_KILL_NAME)
    stop = data.get("stop") if data is not None else None
    return StopRecord.from_json(stop) if isinstance(stop, dict) else None


def write_stop_record(run_dir: str | os.PathLike[str], stop: StopRecord,
                      extra: Mapping[str, Any] | None = None) -> None:
    """Replace ``last-kill.json`` with this stop (and ``extra`` keys: a local kill's outcomes).
    A run directory we cannot write to keeps no record; the kill itself goes on."""
    try:
        write_json_atomic(state_dir(run_dir) / LAST_KILL_NAME, {"stop": stop.to_json(), **(extra or {})})
    except OSError:
        pass
