"""Deterministic runs in every state the dashboard shows, for the snapshot matrix.

Each builder returns real :class:`RunSnapshot` values (what ``RunReader`` produces) at a
frozen "now": a run of 20 epochs x 60 steps saving every epoch (so "finished" has 20 checkpoints), the log lines in
sd-scripts' own shapes (RichHandler records, tqdm lines with ``avr_loss``), TensorBoard-like
series, 0 to 20 checkpoints and 0, 1 or 8 GPUs. No time, no randomness, no files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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

NOW = 1_795_000_000.0  # 2026-11-19 06:13:20 UTC
RUN_DIR = "/runs/luca/sdxl_v1"
NAME = "luca_sdxl_v1"
EPOCHS = 20
STEPS_PER_EPOCH = 60
TOTAL = EPOCHS * STEPS_PER_EPOCH
SEC_PER_STEP = 2.51
STARTED = NOW - 9000.0  # training started 2h30m before "now"


def _loss(i: int, start: float = 0.14) -> float:
    return start * (0.55 + 0.45 * math.exp(-i / 260)) + 0.012 * math.sin(i / 5.3) + 0.004 * math.cos(i * 1.7)


def _series(tag: str, steps: int, start: float = 0.14) -> Series:
    pts = tuple(ScalarPoint(i, _loss(i, start), STARTED + 60 + i * SEC_PER_STEP) for i in range(1, steps + 1))
    return Series(tag, pts, len(pts), pts[-1] if pts else None)


def _lr(steps: int) -> Series:
    pts = tuple(
        ScalarPoint(i, 3e-4 * 0.5 * (1 + math.cos(math.pi * i / TOTAL)), STARTED + 60 + i * SEC_PER_STEP)
        for i in range(1, steps + 1, 5)
    )
    return Series("lr/unet", pts, len(pts), pts[-1] if pts else None)


def checkpoints(n: int, *, final: bool = False, evals: bool = True) -> tuple[Checkpoint, ...]:
    """``n`` epoch checkpoints (the last one the final, unnumbered file when ``final``)."""
    out = []
    for epoch in range(1, n + 1):
        is_final = final and epoch == n
        name = f"{NAME}.safetensors" if is_final else f"{NAME}-{epoch:06d}.safetensors"
        saved = STARTED + 60 + epoch * STEPS_PER_EPOCH * SEC_PER_STEP
        evaluation = ("done" if epoch % 4 == 0 else "queued" if epoch == 3 else None) if evals else None
        out.append(
            Checkpoint(
                name=name, path=f"{RUN_DIR}/{name}", kind=CheckpointKind.FINAL if is_final else CheckpointKind.EPOCH,
                epoch=epoch, step=epoch * STEPS_PER_EPOCH, size=228_458_112, mtime=min(saved, NOW - 61),
                status=CheckpointStatus.COMPLETE, loss_at_save=_loss(epoch * STEPS_PER_EPOCH) + 0.0001 * epoch,
                state_dir=f"{RUN_DIR}/{NAME}-{epoch:06d}-state" if epoch % 2 == 0 else None, evaluation=evaluation,
            )
        )
    return tuple(out)


def gpus(n: int) -> GpuStatus:
    if n == 0:
        return GpuStatus(available=False, reason="NVML not found (no NVIDIA driver on this machine)", taken_at=NOW)
    samples = tuple(
        GpuSample(
            i, "NVIDIA H100 80GB HBM3" if n > 1 else "NVIDIA GeForce RTX 4090",
            memory_used=(61 if n > 1 else 19) * 1024**3 + i * 2**28, memory_total=(80 if n > 1 else 24) * 1024**3,
            utilization=97 - i, temperature=71 + i, power_draw=412.0 - i, power_limit=450.0 if n == 1 else 700.0,
            process_memory=MappingProxyType({4242 + i: 17 * 1024**3}),
        )
        for i in range(n)
    )
    return GpuStatus(available=True, gpus=samples, taken_at=NOW)


def _interval(t: float) -> str:
    """tqdm's ``format_interval``: ``21:05``, ``1:02:03``."""
    m, s = divmod(int(t), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _tqdm(step: int) -> str:
    frac = step / TOTAL
    full = int(frac * 10)
    bar = "█" * full + (" " * (10 - full))
    done = step * SEC_PER_STEP
    left = (TOTAL - step) * SEC_PER_STEP
    clock, rest = _interval(done), _interval(left)
    return (f"steps: {frac * 100:3.0f}%|{bar}| {step}/{TOTAL} [{clock}<{rest},  {SEC_PER_STEP:.2f}s/it, "
            f"avr_loss={_loss(step, 0.13):.4g}]")


def log_lines(step: int, *, extra: tuple[tuple[str, str, str | None], ...] = ()) -> tuple[LogLine, ...]:
    lines: list[tuple[str, str, str | None]] = [
        ("2026-11-19 03:43:20 INFO     loading model for process 0/1                  train_util.py:5386", "record",
         "INFO"),
        ("2026-11-19 03:44:10 INFO     prepare optimizer, data loader etc.            train_network.py:498", "record",
         "INFO"),
        ("running training / 学習開始", "text", None),
        (f"  num train images * repeats / 学習画像の数×繰り返し回数: {STEPS_PER_EPOCH * 2}", "text", None),
        (f"  num epochs / epoch数: {EPOCHS}", "text", None),
        (f"  total optimization steps / 学習ステップ数: {TOTAL}", "text", None),
    ]
    for epoch in range(1, step // STEPS_PER_EPOCH + 2):
        if (epoch - 1) * STEPS_PER_EPOCH > step or epoch > EPOCHS or (epoch > 1 and (epoch - 1) * STEPS_PER_EPOCH == step
                                                                       and step == TOTAL):
            break
        lines.append((f"epoch {epoch}/{EPOCHS}", "text", None))
        at = min(step, epoch * STEPS_PER_EPOCH)
        lines.append((_tqdm(at), "progress", None))
        if at == epoch * STEPS_PER_EPOCH:
            lines.append((f"saving checkpoint: {RUN_DIR}/{NAME}-{epoch:06d}.safetensors", "text", None))
    lines.extend(extra)
    tail = lines[-60:]
    return tuple(LogLine(i, text, kind, level) for i, (text, kind, level) in enumerate(tail))


def _trainer(alive: bool = True) -> ProcessTree:
    cmd = ("python", "sdxl_train_network.py", "--output_dir", RUN_DIR)
    return ProcessTree(ProcInfo(4242, STARTED - 120, cmd, "luca", alive=alive))


def run(
    state: RunState,
    *,
    step: int = 504,
    reason: str = "",
    n_checkpoints: int | None = None,
    n_gpus: int = 1,
    alerts: tuple[Alert, ...] = (),
    extra: tuple[tuple[str, str, str | None], ...] = (),
    alive: bool | None = None,
    final: bool = False,
) -> RunSnapshot:
    over = state.is_over
    live = (not over) if alive is None else alive
    n_ckpt = step // STEPS_PER_EPOCH if n_checkpoints is None else n_checkpoints
    config = TrainConfig(
        output_name=NAME, num_epochs=EPOCHS, total_steps=TOTAL, save_every_n_epochs=1,
        num_batches_per_epoch=STEPS_PER_EPOCH * 2, gradient_accumulation_steps=2, batch_size=1, network_dim=16,
        network_alpha=8.0, learning_rate=3e-4, optimizer="AdamW8bit", scheduler="cosine", resolution="1024,1024",
        base_model_version="sdxl_base_v1-0", mixed_precision="bf16",
    )
    epoch = min(EPOCHS, step // STEPS_PER_EPOCH + 1)
    left = (TOTAL - step) * SEC_PER_STEP
    next_epoch = step // STEPS_PER_EPOCH + 1
    progress = Progress(
        epoch=epoch if step else None, epochs=EPOCHS, step=step if step else None, total_steps=TOTAL,
        seconds_per_step=SEC_PER_STEP if step else None, elapsed_seconds=step * SEC_PER_STEP if step else None,
        eta_seconds=None if over or not step else left, eta_at=None if over or not step else NOW + left,
        next_checkpoint=None if over or not step else f"{NAME}-{next_epoch:06d}.safetensors",
        next_checkpoint_eta_seconds=None if over or not step else (next_epoch * STEPS_PER_EPOCH - step) * SEC_PER_STEP,
        started_at=STARTED if step else None,
    )
    series = {}
    if step:
        series = {"loss/current": _series("loss/current", step), "loss/average": _series("loss/average", step, 0.12),
                  "lr/unet": _lr(step)}
    taken = STARTED + 60 + step * SEC_PER_STEP + 30 if over else NOW
    return RunSnapshot(
        run_dir=RUN_DIR, taken_at=taken, state=state, state_reason=reason, config=config, progress=progress,
        series=MappingProxyType(series), checkpoints=checkpoints(n_ckpt, final=final),
        process=_trainer(live) if (live or over) else None, gpu=gpus(n_gpus), alerts=alerts,
        log_lines=log_lines(step, extra=extra) if step or extra else (), log_line_count=0,
    )


def _alert(kind: str, severity: Severity, message: str, fix: str | None = None) -> Alert:
    return Alert(kind, severity, message, fix=fix, key=kind)


OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
       "23.65 GiB of which 1.12 GiB is free.", "traceback", None)

#: state name -> snapshot builder (the matrix's rows).
STATES: dict[str, Callable[[], RunSnapshot]] = {
    "waiting": lambda: run(RunState.WAITING, step=0, reason="no training.log yet", n_checkpoints=0, alive=False),
    "loading": lambda: run(RunState.LOADING, step=0, reason="loading the model", n_checkpoints=0,
                           extra=(("2026-11-19 06:13:01 INFO     loading model for process 0/1   train_util.py:5386",
                                   "record", "INFO"),)),
    "training": lambda: run(RunState.TRAINING),
    "sampling": lambda: run(RunState.SAMPLING, step=480, extra=(
        ("2026-11-19 06:13:10 INFO     generating sample images at step / サンプル画像生成 ステップ: 480 "
         "train_util.py:6108", "record", "INFO"),)),
    "stalled": lambda: run(RunState.STALLED, reason="no new step for 41m (12x the usual 2.51 s/step)", alerts=(
        _alert("stalled", Severity.WARNING, "no progress for 41m at step 504",
               "py-spy dump --pid 4242 shows where it waits; kill and resume from -000008"),)),
    "failed": lambda: run(RunState.FAILED, step=612, reason="CUDA out of memory at step 612", extra=(OOM,), alerts=(
        _alert("oom", Severity.ERROR, "CUDA out of memory at step 612",
               "--train_batch_size 1 --gradient_accumulation_steps 4; --gradient_checkpointing"),)),
    "stopped": lambda: run(RunState.STOPPED, step=800, reason=(
        "stopped by you (sdxl-tui kill, SIGINT, 06:02) at step 800; last checkpoint luca_sdxl_v1-000013.safetensors; "
        f"go on with --network_weights {RUN_DIR}/luca_sdxl_v1-000013.safetensors and --max_train_epochs 7"),
                           extra=(("KeyboardInterrupt", "traceback", None),)),
    "finished": lambda: run(RunState.FINISHED, step=TOTAL, reason="'model saved.' logged", final=True,
                            extra=(("model saved.", "text", None),), alerts=(
                                _alert("finished", Severity.INFO, "training finished at step 1200"),)),
}

#: variations of the training run (the matrix's extra columns).
VARIANTS: dict[str, Callable[[], RunSnapshot]] = {
    "no-gpu": lambda: run(RunState.TRAINING, n_gpus=0),
    "eight-gpus": lambda: run(RunState.TRAINING, n_gpus=8),
    "no-checkpoints": lambda: run(RunState.TRAINING, step=42, n_checkpoints=0),
    # 20 checkpoints: "finished" above
}
