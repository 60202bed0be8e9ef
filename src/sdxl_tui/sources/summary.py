"""``RunSummary``: one row of the runs view, and the one function that reads it.

Why a summary: a folder of runs is watched as a table (name, kind, state, progress, ETA,
last and best loss, checkpoints, process, last alert, age); keeping every run's full
snapshot (curves, log lines) alive for 50 runs would cost memory and time for nothing.
:func:`read_summary` is the one entry point: today it reads the run once with the same
``RunReader`` as the dashboard (so both agree on the state), with a small log tail and no
GPU; a cached summary (the perf work) can replace its body without touching any caller.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sdxl_tui.config import Settings
from sdxl_tui.model import GpuStatus, RunSnapshot, Series
from sdxl_tui.sources.optimisation import Optimisation

__all__ = ["RunSummary", "base_kind", "gpu_text", "read_summary", "summarize", "summarize_trials"]

_LOSS_TAGS = ("loss/average", "loss/current", "loss/epoch_average")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One row: a run (``kind`` SDXL / SD1.5 / ?) or an optimisation folder (``trials``)."""

    run_dir: str
    name: str
    kind: str
    state: str
    reason: str = ""
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    eta_seconds: float | None = None
    eta_at: float | None = None
    loss: float | None = None
    best_loss: float | None = None
    loss_tag: str | None = None
    checkpoints: int = 0
    last_checkpoint: str | None = None
    pid: int | None = None
    gpu: str | None = None  # a live trainer's GPUs: "GPU0 97% 17.0 GiB" (one NVML sample per refresh)
    last_alert: str | None = None
    updated_at: float | None = None  # newest file time (the age column)
    live: bool = False

    @property
    def fraction(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    def to_json(self) -> dict[str, object]:
        return {
            "run_dir": self.run_dir, "name": self.name, "kind": self.kind, "state": self.state,
            "reason": self.reason, "epoch": self.epoch, "epochs": self.epochs, "step": self.step,
            "total_steps": self.total_steps, "eta_seconds": self.eta_seconds, "eta_at": self.eta_at,
            "loss": self.loss, "best_loss": self.best_loss, "loss_tag": self.loss_tag,
            "checkpoints": self.checkpoints, "last_checkpoint": self.last_checkpoint, "pid": self.pid, "gpu": self.gpu,
            "last_alert": self.last_alert, "updated_at": self.updated_at, "live": self.live,
        }


def base_kind(base_model_version: str | None, resolution: str | None = None) -> str:
    """``SDXL`` / ``SD1.5`` / ``SD2`` from ``ss_base_model_version`` (else the resolution)."""
    v = (base_model_version or "").lower()
    if "sdxl" in v:
        return "SDXL"
    if v.startswith("sd_v1") or v in ("v1", "sd1", "sd15"):
        return "SD1.5"
    if v.startswith("sd_v2"):
        return "SD2"
    if resolution:
        try:
            side = max(int(x) for x in resolution.replace("x", ",").split(",") if x.strip())
        except ValueError:
            return "?"
        return "SDXL" if side >= 1024 else "SD1.5" if side <= 640 else "?"
    return "?"


def gpu_text(status: GpuStatus, pid: int) -> str | None:
    """``GPU0 97% 17.0 GiB`` for each GPU where ``pid`` holds memory (None: none)."""
    parts = []
    for g in status.gpus:
        used = g.process_memory.get(pid)
        if used is None:
            continue
        util = f" {g.utilization}%" if g.utilization is not None else ""
        parts.append(f"GPU{g.index}{util} {used / 2**30:.1f} GiB")
    return ", ".join(parts) or None


def _loss(series: Series | None) -> tuple[float | None, float | None]:
    if series is None or series.last is None:
        return None, None
    values = [p.value for p in series.points if p.value == p.value]  # NaN never "best"
    return series.last.value, (min(values) if values else None)


def summarize(snap: RunSnapshot, *, updated_at: float | None = None) -> RunSummary:
    """The row of one snapshot (pure)."""
    p, c = snap.progress, snap.config
    tag = next((t for t in _LOSS_TAGS if t in snap.series and snap.series[t].last is not None), None)
    last, best = _loss(snap.series.get(tag) if tag else None)
    ck = snap.checkpoints[-1].name if snap.checkpoints else None
    alert = snap.alerts[-1] if snap.alerts else None
    pid = snap.process.trainer.pid if snap.process is not None and snap.process.trainer.alive else None
    return RunSummary(
        run_dir=snap.run_dir, name=os.path.basename(snap.run_dir.rstrip(os.sep)),
        kind=base_kind(c.base_model_version, c.resolution), state=snap.state.value, reason=snap.state_reason,
        epoch=p.epoch, epochs=p.epochs, step=p.step, total_steps=p.total_steps, eta_seconds=p.eta_seconds,
        eta_at=p.eta_at, loss=last, best_loss=best, loss_tag=tag, checkpoints=len(snap.checkpoints),
        last_checkpoint=ck, pid=pid, last_alert=f"{alert.severity.value}: {alert.message}" if alert else None,
        updated_at=updated_at, live=snap.state.is_live and pid is not None,
    )


def summarize_trials(opt: Optimisation) -> RunSummary:
    """The row of an optimisation folder: trials done, the best score, the convergence verdict."""
    best = opt.best
    done = sum(1 for t in opt.trials if t.state == "complete")
    reason = opt.problem or (f"best {best.name} ({opt.score_field} = {opt.score(best):g}, from "
                             f"{opt.score_source})" if best is not None and opt.score(best) is not None
                             else "no trial records a score yet")
    return RunSummary(
        run_dir=opt.path, name=opt.name, kind="trials", state=opt.state, reason=reason, step=done,
        total_steps=len(opt.trials) or None, loss=opt.score(best) if best is not None else None,
        best_loss=opt.score(best) if best is not None else None, loss_tag=opt.score_field,
        checkpoints=sum(1 for t in opt.trials if t.checkpoint), last_checkpoint=best.checkpoint if best else None,
        last_alert=f"convergence: {opt.convergence_alert}" if opt.convergence_alert else None,
        updated_at=opt.newest, live=opt.state == "searching",
    )


def read_summary(
    run_dir: str,
    *,
    live: bool,
    updated_at: float | None = None,
    clock: Callable[[], float] = time.time,
    settings: Settings | None = None,
) -> RunSummary:
    """Read one run's row (the single seam for a cached summary).

    ``live``: a trainer process writes to this run (the watcher's one process scan said so):
    only then is the run's own process tree sampled; an idle run's liveness comes from its
    files. With ``settings`` whose ``cache.enabled`` is on, the event files and checkpoint
    headers start from the user's cache (``sources/cache.py``, shared with ``status``).
    """
    from sdxl_tui.sources.rundir import RunReader

    cache = settings.cache.enabled if settings is not None else True  # event state and headers: only new bytes
    reader = RunReader(run_dir, gpu=None, procs=None if live else False, clock=clock, log_tail_bytes=128 << 10,
                       log_head_bytes=64 << 10, settings=settings, cache=cache)
    try:
        row = summarize(reader.refresh(), updated_at=updated_at)
    finally:
        reader.close()
    if not live:  # the watcher's one process scan found no trainer: say that, not "--no-procs"
        row = replace(row, reason=row.reason.replace("no process info (--no-procs)", "trainer process not found"))
    return row
