"""The GPUs over the night: peak VRAM, mean utilisation, temperature, power and throttling.

Why from a recorded history: NVML answers only "now", and the morning after, "now" is an idle
card. The supervisor of a run started with ``sdxl-tui start`` records a sample every 30 s
(``formats/gpulog.py``); this module summarises the samples that fall inside the run's span,
so a history shared by several runs in one output directory is not mixed up. Without a
history the summary says so and keeps the one sample taken now.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sdxl_tui.formats.gpulog import GpuHistory, GpuPoint
from sdxl_tui.model import GpuStatus

__all__ = ["NOT_THROTTLING", "GpuDeviceSummary", "GpuSummary", "summarize_gpu"]

#: Clock event reasons that do not slow a training run down (set by the user or the display).
NOT_THROTTLING = frozenset({"applications_clocks_setting", "sync_boost", "display_clock_setting"})
#: The margin around the run's span within which samples still count (one interval and more).
WINDOW_MARGIN = 90.0


@dataclass(frozen=True, slots=True)
class GpuDeviceSummary:
    """One GPU over the samples of the run."""

    index: int
    name: str
    samples: int
    peak_memory: int | None = None  # bytes used on the device, highest sample
    memory_total: int | None = None
    peak_process_memory: int | None = None  # the trainer's own VRAM, highest sample
    mean_utilization: float | None = None
    mean_temperature: float | None = None
    max_temperature: int | None = None
    mean_power: float | None = None
    power_limit: float | None = None
    throttled_fraction: float | None = None  # share of samples with a slowing reason
    throttle_reasons: tuple[tuple[str, int], ...] = ()  # reason, samples; most frequent first


@dataclass(frozen=True, slots=True)
class GpuSummary:
    """The devices, whether a history was recorded, and a sentence saying where it came from."""

    devices: tuple[GpuDeviceSummary, ...] = ()
    recorded: bool = False
    note: str = ""
    interval: float | None = None  # median seconds between samples
    current: GpuStatus | None = None  # the one read taken with the report


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _device(points: Sequence[GpuPoint]) -> GpuDeviceSummary:
    def known(values: Sequence[int | float | None]) -> list[float]:
        return [float(v) for v in values if v is not None]

    mem = [p.memory_used for p in points if p.memory_used is not None]
    proc = [p.process_memory for p in points if p.process_memory is not None]
    temps = [p.temperature for p in points if p.temperature is not None]
    totals = [p.memory_total for p in points if p.memory_total is not None]
    limits = known([p.power_limit for p in points])
    counts: dict[str, int] = {}
    throttled = 0
    for p in points:
        slowing = [r for r in p.throttle_reasons if r not in NOT_THROTTLING]
        throttled += bool(slowing)
        for r in slowing:
            counts[r] = counts.get(r, 0) + 1
    return GpuDeviceSummary(
        index=points[0].index, name=points[-1].name, samples=len(points),
        peak_memory=max(mem) if mem else None, memory_total=max(totals) if totals else None,
        peak_process_memory=max(proc) if proc else None,
        mean_utilization=_mean(known([p.utilization for p in points])),
        mean_temperature=_mean([float(t) for t in temps]), max_temperature=max(temps) if temps else None,
        mean_power=_mean(known([p.power_draw for p in points])), power_limit=max(limits) if limits else None,
        throttled_fraction=throttled / len(points),
        throttle_reasons=tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _interval(points: Sequence[GpuPoint]) -> float | None:
    times = sorted({p.at for p in points})
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if gaps else None


def summarize_gpu(history: GpuHistory, start: float | None, end: float | None,
                  current: GpuStatus | None = None) -> GpuSummary:
    """Summarise the samples within ``[start, end]`` (with a margin), per GPU."""
    lo = (start if start is not None else float("-inf")) - WINDOW_MARGIN
    hi = (end if end is not None else float("inf")) + WINDOW_MARGIN
    points = [p for p in history.points if lo <= p.at <= hi]
    if not points:
        gone = [reason for at, reason in history.unavailable if lo <= at <= hi]
        if gone:
            note = f"no GPU was visible to the supervisor during the run: {gone[-1]}"
        elif history.exists:
            note = "GPU history not recorded for this run (gpu.jsonl has no samples from its time)"
        else:
            note = ("GPU history not recorded: the supervisor of `sdxl-tui start` records it; "
                    "this run was started another way")
        return GpuSummary(note=note, current=current)
    by_index: dict[int, list[GpuPoint]] = {}
    for p in points:
        by_index.setdefault(p.index, []).append(p)
    devices = tuple(_device(by_index[i]) for i in sorted(by_index))
    interval = _interval(points)
    every = f" every {interval:.0f} s" if interval else ""
    note = f"{len({p.at for p in points})} samples{every}, recorded by the supervisor of `sdxl-tui start`"
    return GpuSummary(devices=devices, recorded=True, note=note, interval=interval, current=current)
