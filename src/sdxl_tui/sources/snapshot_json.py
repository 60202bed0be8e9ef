"""``RunSnapshot`` -> plain JSON-ready dict (the ``sdxl-tui status --json`` schema, version 1).

Why a separate pure module: the schema is a public contract for scripts (documented in the
README); keeping it apart from the reader means a field can only change here, on purpose.
NaN and infinities (a NaN loss is a real state: sd-scripts never checks it) become ``null`` so the output is
strict JSON that any parser accepts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sdxl_tui.formats.queue import entry_json
from sdxl_tui.model import (
    Checkpoint,
    Evaluation,
    GpuSample,
    Launch,
    ProcessTree,
    ProcInfo,
    RunSnapshot,
    Sample,
    SchedulerStatus,
    Series,
    StateDir,
)
from sdxl_tui.sources.ranks import vram_by_owner, vram_owners

SCHEMA_VERSION = 1


def _f(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def checkpoint_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "name": c.name,
        "path": c.path,
        "kind": c.kind.value,
        "epoch": c.epoch,
        "step": c.step,
        "size": c.size,
        "mtime": c.mtime,
        "status": c.status.value,
        "complete": c.complete,
        "loss_at_save": _f(c.loss_at_save),
        "loss_step": c.loss_step,
        "launch": c.launch,
        "trainer_step": c.trainer_step,
        "state_dir": c.state_dir,
        "evaluation": c.evaluation,
        "problem": c.problem,
        "metadata": dict(c.metadata),
    }


def launch_json(la: Launch) -> dict[str, Any]:
    """One launch of a resumed run, with its description (``sources/launches.py``)."""
    from sdxl_tui.sources.launches import describe_launch

    return {
        "index": la.index, "started_at": _iso(la.started_at), "resumed_from": la.resumed_from,
        "resume_step": la.resume_step, "resume_epoch": la.resume_epoch, "offset": la.offset,
        "own_counts": la.own_counts, "first_step": la.first_step, "last_step": la.last_step,
        "discarded_after": la.discarded_after, "chained_from": la.chained_from,
        "source": la.source or None, "description": describe_launch(la),
    }


def series_json(series: Mapping[str, Series]) -> dict[str, Any]:
    """The ``loss``, ``lr`` and ``series`` entries: last values and per-tag counts."""
    loss_source = next((series[t].source for t in ("loss/current", "loss/average") if t in series), None)
    return {
        "loss": {
            "current": _last(series, "loss/current"),
            "average": _last(series, "loss/average"),
            "epoch_average": _last(series, "loss/epoch_average"),
            "source": loss_source,
        },
        "lr": {tag: _last(series, tag) for tag in sorted(series) if tag.startswith("lr/")},
        "series": {
            tag: {
                "count": s.count,
                "last_step": None if s.last is None else s.last.step,
                "last": _f(s.last_value),
                "source": s.source,
            }
            for tag, s in sorted(series.items())
        },
    }


def discarded_json(discarded: Mapping[str, Series]) -> dict[str, Any]:
    """A resumed run's discarded branch per tag: how many points, from which step to which."""
    return {
        tag: {"count": s.count, "first_step": s.points[0].step if s.points else None,
              "last_step": None if s.last is None else s.last.step}
        for tag, s in sorted(discarded.items())
    }


def _proc(p: ProcInfo) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "create_time": p.create_time,
        "role": p.role,
        "alive": p.alive,
        "status": p.status,
        "username": p.username,
        "cmdline": list(p.cmdline),
        "cpu_percent": _f(p.cpu_percent),
        "rss": p.rss,
        "exit_code": p.exit_code,
        "ppid": p.ppid,
        "rank": p.rank,
        "local_rank": p.local_rank,
        "world_size": p.world_size,
    }


def process_json(tree: ProcessTree | None) -> dict[str, Any] | None:
    if tree is None:
        return None
    out = _proc(tree.trainer)
    out["recorded"] = tree.recorded
    out["launchers"] = [_proc(p) for p in tree.launchers]
    out["children"] = [_proc(p) for p in tree.children]
    out["ranks"] = [_proc(p) for p in tree.ranks]  # the other ranks of a multi-process launch
    return out


def gpu_json(g: GpuSample, owners: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """One GPU; ``run_memory``: this run's VRAM on it per owner (``trainer``, ``rank N``)."""
    return {
        "index": g.index,
        "name": g.name,
        "uuid": g.uuid,
        "memory_used": g.memory_used,
        "memory_total": g.memory_total,
        "utilization": g.utilization,
        "memory_utilization": g.memory_utilization,
        "temperature": g.temperature,
        "temperature_slowdown": g.temperature_slowdown,
        "power_draw": _f(g.power_draw),
        "power_limit": _f(g.power_limit),
        "throttle_reasons": list(g.throttle_reasons),
        "process_memory": {str(k): v for k, v in g.process_memory.items()},
        "run_memory": [{"owner": owner, "memory_used": used}
                       for owner, used in vram_by_owner(g.process_memory, owners)],
    }


def scheduler_json(s: SchedulerStatus | None) -> dict[str, Any] | None:
    """The batch job of a Slurm run (times in seconds; null for local runs)."""
    if s is None:
        return None
    return {
        "kind": s.kind, "job_id": s.job_id, "state": s.state, "reason": s.reason, "node": s.node,
        "time_limit": s.time_limit, "elapsed": s.elapsed, "queue_position": s.queue_position,
        "submitted_at": s.submitted_at, "started_at": s.started_at, "ended_at": s.ended_at,
        "exit_code": s.exit_code, "exit_signal": s.exit_signal, "cluster": s.cluster, "user": s.user,
        "partition": s.partition, "source": s.source, "problem": s.problem,
    }


def _sample(s: Sample) -> dict[str, Any]:
    return {"name": s.name, "path": s.path, "epoch": s.epoch, "step": s.step,
            "prompt_index": s.prompt_index, "mtime": s.mtime}


def _evaluation(e: Evaluation) -> dict[str, Any]:
    return {"name": e.name, "path": e.path, "checkpoint": e.checkpoint, "epoch": e.epoch,
            "status": e.status, "images": list(e.images)}


def _state(s: StateDir) -> dict[str, Any]:
    return {"name": s.name, "path": s.path, "epoch": s.epoch, "step": s.step, "complete": s.complete}


def _last(series: Mapping[str, Any], tag: str) -> float | None:
    s = series.get(tag)
    return None if s is None else _f(s.last_value)


def snapshot_to_json(snap: RunSnapshot) -> dict[str, Any]:
    """The documented ``status --json`` object (see README "status --json schema")."""
    p = snap.progress
    config = {k: (_f(v) if isinstance(v, float) else v) for k, v in asdict(snap.config).items()}
    config["steps_per_epoch"] = snap.config.steps_per_epoch
    return {
        "schema": SCHEMA_VERSION,
        "run_dir": snap.run_dir,
        "taken_at": snap.taken_at,
        "state": snap.state.value,
        "state_reason": snap.state_reason,
        "epoch": p.epoch,
        "epochs": p.epochs,
        "step": p.step,
        "total_steps": p.total_steps,
        "fraction": _f(p.fraction),
        "seconds_per_step": _f(p.seconds_per_step),
        "elapsed_seconds": _f(p.elapsed_seconds),
        "eta_seconds": _f(p.eta_seconds),
        "eta_at": _f(p.eta_at),
        "eta_at_iso": _iso(p.eta_at),
        "started_at": _f(p.started_at),
        "next_checkpoint": None if p.next_checkpoint is None else {
            "name": p.next_checkpoint,
            "eta_seconds": _f(p.next_checkpoint_eta_seconds),
        },
        **series_json(snap.series),
        "config": config,
        "checkpoints": [checkpoint_json(c) for c in snap.checkpoints],
        "states": [_state(s) for s in snap.states],
        "samples": [_sample(s) for s in snap.samples],
        "evaluations": [_evaluation(e) for e in snap.evaluations],
        "process": process_json(snap.process),
        "scheduler": scheduler_json(snap.scheduler),
        "queue": [entry_json(e) for e in snap.queue],
        "gpus": [gpu_json(g, vram_owners(snap.process)) for g in snap.gpu.gpus],
        "gpu_status": {
            "available": snap.gpu.available,
            "reason": snap.gpu.reason,
            "driver_version": snap.gpu.driver_version,
        },
        "alerts": [a.to_json() for a in snap.alerts],
        "log_path": snap.log_path,
        "event_files": list(snap.event_files),
        "resume_steps": list(snap.resume_steps),
        "launches": [launch_json(la) for la in snap.launches],
        "discarded": discarded_json(snap.discarded),
        "problems": list(snap.problems),
    }
