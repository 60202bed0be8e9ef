"""A scripted stand-in reader for TUI tests that do not need real files.

It produces real :class:`RunSnapshot` values (no mocks of the UI): each ``refresh()`` returns
the next scripted snapshot, then repeats the last one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from types import MappingProxyType

from sdxl_tui.model import (
    Alert,
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    GpuSample,
    GpuStatus,
    LogLine,
    ProcessTree,
    ProcInfo,
    Progress,
    RunSnapshot,
    RunState,
    ScalarPoint,
    Series,
    Severity,
    TrainConfig,
)

T0 = 1_790_000_000.0  # a fixed "now"


def series(tag: str, n: int, *, start: float = 0.12, nan_at: int | None = None) -> Series:
    pts = []
    for i in range(n):
        v = start * (0.6 + 0.4 * math.exp(-i / 200)) + 0.01 * math.sin(i / 7)
        if nan_at is not None and i >= nan_at:
            v = float("nan")
        pts.append(ScalarPoint(i, v, T0 - 3600 + i * 2.0))
    return Series(tag, tuple(pts), n, pts[-1] if pts else None)


def checkpoint(run_dir: str, epoch: int, *, status: CheckpointStatus = CheckpointStatus.COMPLETE, age: float = 600) -> Checkpoint:
    name = f"luca_sdxl_v1-{epoch:06d}.safetensors"
    return Checkpoint(
        name=name, path=f"{run_dir}/{name}", kind=CheckpointKind.EPOCH, epoch=epoch, step=epoch * 100,
        size=190_000_000, mtime=T0 - age, status=status, loss_at_save=0.0812, state_dir=None,
    )


def trainer(alive: bool = True) -> ProcessTree:
    return ProcessTree(ProcInfo(4242, T0 - 4000, ("python", "sdxl_train_network.py", "--output_dir", "/x"), "luca", alive=alive))


def gpu_status() -> GpuStatus:
    return GpuStatus(
        available=True,
        gpus=(GpuSample(0, "NVIDIA GeForce RTX 4090", memory_used=18 * 1024**3, memory_total=24 * 1024**3,
                        utilization=97, temperature=71, power_draw=320.0, power_limit=450.0,
                        process_memory=MappingProxyType({4242: 17 * 1024**3})),),
        taken_at=T0,
    )


def snapshot(
    run_dir: str = "/runs/luca/sdxl_v1",
    *,
    step: int = 600,
    state: RunState = RunState.TRAINING,
    alive: bool = True,
    checkpoints: Sequence[Checkpoint] | None = None,
    alerts: Sequence[Alert] = (),
    lines: int = 40,
    taken_at: float = T0,
) -> RunSnapshot:
    ckpts = tuple(checkpoints) if checkpoints is not None else (checkpoint(run_dir, 2, age=1800), checkpoint(run_dir, 4, age=300))
    log = tuple(LogLine(i, f"2026-11-28 21:{i % 60:02d}:00 INFO     line {i}", "record", "INFO") for i in range(lines))
    return RunSnapshot(
        run_dir=run_dir,
        taken_at=taken_at,
        state=state,
        config=TrainConfig(output_name="luca_sdxl_v1", num_epochs=12, total_steps=1200, save_every_n_epochs=2, num_batches_per_epoch=100),
        progress=Progress(epoch=step // 100 + 1, epochs=12, step=step, total_steps=1200, seconds_per_step=2.5,
                          elapsed_seconds=step * 2.5, eta_seconds=(1200 - step) * 2.5, eta_at=taken_at + (1200 - step) * 2.5,
                          next_checkpoint="luca_sdxl_v1-000006.safetensors", next_checkpoint_eta_seconds=120.0),
        series=MappingProxyType({"loss/current": series("loss/current", step), "loss/average": series("loss/average", step, start=0.1),
                                 "lr/unet": Series("lr/unet", tuple(ScalarPoint(i, 3e-4 * (1 - i / 1200)) for i in range(0, step, 10)), step // 10)}),
        checkpoints=ckpts,
        process=trainer(alive),
        gpu=gpu_status(),
        alerts=tuple(alerts),
        log_lines=log,
        log_line_count=lines,
    )


class StubReader:
    """Returns scripted snapshots; ``push()`` queues more from the test thread."""

    def __init__(self, snapshots: Sequence[RunSnapshot]) -> None:
        self._lock = threading.Lock()
        self._queue = list(snapshots)
        self._last: RunSnapshot | None = None
        self.calls = 0

    def push(self, snap: RunSnapshot) -> None:
        with self._lock:
            self._queue.append(snap)

    def refresh(self) -> RunSnapshot:
        with self._lock:
            self.calls += 1
            if self._queue:
                self._last = self._queue.pop(0)
            assert self._last is not None
            return self._last


def oom_alert() -> Alert:
    return Alert("oom", Severity.ERROR, "CUDA out of memory at step 601", fix="--train_batch_size 2 --gradient_accumulation_steps 4", key="oom", step=601)
