"""``OUTPUT_DIR/.sdxl-tui/gpu.jsonl``: a slow, bounded GPU history for the morning report.

Why: NVML only answers "now". The dashboard keeps a history while it is open, but the night
usually passes without one, so the question "did VRAM peak near the limit, did the card
throttle at 3 a.m.?" needs samples taken by something that lives as long as the run: the
supervisor of a run started with ``sdxl-tui start`` appends one line every
:data:`GPU_HISTORY_INTERVAL` seconds. The file stays below :data:`GPU_HISTORY_MAX_BYTES`:
once it grows past that, every second line is dropped (older samples get sparser, the whole
run stays covered).

One JSON object per line::

    {"t": 1796406792.1, "gpus": [{"i": 0, "name": "NVIDIA GeForce RTX 4090", "mem": 20401094656,
      "total": 25757220864, "util": 97, "temp": 71, "power": 402.5, "limit": 450.0,
      "thr": ["sw_power_cap"], "proc": 19327352832}]}
    {"t": 1796406792.1, "unavailable": "no NVIDIA driver (NVML library not found)"}

``proc`` is the VRAM of the trainer's processes (absent when unknown). Readers skip lines
they cannot parse (a line cut by a crash).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.formats.statedir import state_dir
from sdxl_tui.model import GpuSample, GpuStatus

__all__ = [
    "GPU_HISTORY_INTERVAL",
    "GPU_HISTORY_MAX_BYTES",
    "GPU_HISTORY_NAME",
    "GpuHistory",
    "GpuPoint",
    "append_gpu_sample",
    "gpu_history_path",
    "read_gpu_history",
]

GPU_HISTORY_NAME = "gpu.jsonl"
#: Seconds between samples: slow enough to cost nothing, fast enough to see a night's shape.
GPU_HISTORY_INTERVAL = 30.0
#: Above this size the file is thinned to every second line (about 10,000 one-GPU samples).
GPU_HISTORY_MAX_BYTES = 2_000_000


def gpu_history_path(output_dir: str | os.PathLike[str]) -> Path:
    """Where the history of ``output_dir`` lives (beside the run record)."""
    return state_dir(output_dir) / GPU_HISTORY_NAME


@dataclass(frozen=True, slots=True)
class GpuPoint:
    """One GPU at one sample time."""

    at: float
    index: int
    name: str
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    utilization: int | None = None  # percent
    temperature: int | None = None  # celsius
    power_draw: float | None = None  # watts
    power_limit: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    process_memory: int | None = None  # the trainer's VRAM on this GPU, bytes


@dataclass(frozen=True, slots=True)
class GpuHistory:
    """What the file holds: the GPU points in time order, and the "no GPU" notes."""

    points: tuple[GpuPoint, ...] = ()
    unavailable: tuple[tuple[float, str], ...] = ()  # (time, reason) of samples without GPUs
    exists: bool = False


def _gpu_json(g: GpuSample, trainer_pids: Collection[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"i": g.index, "name": g.name}
    for key, value in (("mem", g.memory_used), ("total", g.memory_total), ("util", g.utilization),
                       ("temp", g.temperature), ("power", g.power_draw), ("limit", g.power_limit)):
        if value is not None:
            out[key] = value
    if g.throttle_reasons:
        out["thr"] = list(g.throttle_reasons)
    if trainer_pids:
        used = [mem for pid, mem in g.process_memory.items() if pid in trainer_pids]
        if used:
            out["proc"] = sum(used)
    return out


def append_gpu_sample(
    path: str | os.PathLike[str],
    status: GpuStatus,
    *,
    at: float,
    trainer_pids: Collection[int] = (),
    max_bytes: int = GPU_HISTORY_MAX_BYTES,
) -> None:
    """Append one sample line; thin the file to every second line once it passes ``max_bytes``.

    Raises ``OSError`` when the file cannot be written (the caller decides how quiet to be).
    """
    if status.available:
        entry: dict[str, Any] = {"t": round(at, 3),
                                 "gpus": [_gpu_json(g, trainer_pids) for g in status.gpus]}
    else:
        entry = {"t": round(at, 3), "unavailable": status.reason or "no GPU"}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        size = fh.tell()
    if size > max_bytes:
        _thin(p)


def _thin(path: Path) -> None:
    """Keep every second line (and always the newest), atomically."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = lines[::2]
    if lines and kept[-1] is not lines[-1]:
        kept.append(lines[-1])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _points(at: float, gpus: Iterable[Any]) -> list[GpuPoint]:
    out = []
    for g in gpus:
        if not isinstance(g, Mapping) or _int(g.get("i")) is None:
            continue
        thr = g.get("thr")
        out.append(GpuPoint(
            at=at, index=int(g["i"]), name=str(g.get("name") or f"GPU {g['i']}"),
            memory_used=_int(g.get("mem")), memory_total=_int(g.get("total")),
            utilization=_int(g.get("util")), temperature=_int(g.get("temp")),
            power_draw=_float(g.get("power")), power_limit=_float(g.get("limit")),
            throttle_reasons=tuple(str(r) for r in thr) if isinstance(thr, list) else (),
            process_memory=_int(g.get("proc")),
        ))
    return out


def read_gpu_history(path: str | os.PathLike[str]) -> GpuHistory:
    """Read the history; a missing or unreadable file is an empty history, bad lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return GpuHistory()
    points: list[GpuPoint] = []
    unavailable: list[tuple[float, str]] = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        at = _float(entry.get("t"))
        if at is None:
            continue
        if isinstance(entry.get("gpus"), list):
            points.extend(_points(at, entry["gpus"]))
        elif entry.get("unavailable") is not None:
            unavailable.append((at, str(entry["unavailable"])))
    points.sort(key=lambda p: (p.at, p.index))
    return GpuHistory(points=tuple(points), unavailable=tuple(unavailable), exists=True)
