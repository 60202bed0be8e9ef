"""A big, finished-looking run for benchmarks, written with the simulator's real writers.

``generate_big_run`` runs the simulated trainer in-process on a fake clock (no sleeping;
the clock advances a realistic step time per micro-batch so log times, tqdm rates and event
wall times look like a long night), then stretches ``training.log`` to ``log_bytes`` by
repeating its rendered epoch blocks. TensorBoard points, checkpoints and metadata are real
outputs of the run, sized by ``scalars`` and ``checkpoints``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from sdxl_tui.sim.console import SimConsole
from sdxl_tui.sim.runner import run_argv
from sdxl_tui.sim.trainer import Hooks


class _FakeClock:
    def __init__(self, start: float, micro: float) -> None:
        self.t = start
        self.micro = micro
        self.calls = 0

    def now(self) -> float:
        self.calls += 1
        self.t += 1e-4  # time moves a little with every look, like a real clock
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def generate_big_run(
    run_dir: str | os.PathLike[str],
    *,
    log_bytes: int = 300_000_000,
    scalars: int = 200_000,
    checkpoints: int = 20,
    output_name: str = "big_lora",
    step_seconds: float = 1.6,
) -> None:
    """Write a finished run: ``training.log`` of about ``log_bytes``, about ``scalars``
    TensorBoard scalars (U-Net-only: 4 per micro-batch + 1 per epoch), and ``checkpoints``
    LoRA files (``checkpoints - 1`` epoch files plus the final one)."""
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    epochs = max(1, checkpoints)
    micro_batches = max(epochs, (scalars - epochs) // 4)
    batches = max(1, math.ceil(micro_batches / epochs))
    clock = _FakeClock(1_795_000_000.0, step_seconds)
    args = [
        "--pretrained_model_name_or_path", "/models/sd_xl_base_1.0.safetensors",
        "--output_dir", str(out),
        "--output_name", output_name,
        "--network_module", "networks.lora",
        "--network_dim", "4",
        "--network_alpha", "2",
        "--network_train_unet_only",
        "--learning_rate", "1e-4",
        "--lr_scheduler", "cosine_with_restarts",
        "--lr_warmup_steps", "100",
        "--max_train_epochs", str(epochs),
        "--save_every_n_epochs", "1",
        "--mixed_precision", "bf16",
        "--max_data_loader_n_workers", "2",
        "--cache_latents",
        "--xformers",
        "--logging_dir", str(out / "logs"),
        "--sim-step-seconds", str(step_seconds),
        "--sim-startup-seconds", "90",
        "--sim-batches-per-epoch", str(batches),
    ]
    log_path = out / "training.log"
    with open(log_path, "wb") as f:
        console = SimConsole(f, unbuffered=True, clock=clock.now)
        run_argv(args, console, in_process=True, hooks=Hooks(now=clock.now, sleep=clock.sleep))
        console.flush_stdout()
    _stretch_log(log_path, log_bytes)


def _stretch_log(path: Path, target: int) -> None:
    """Repeat the rendered epoch blocks until the file reaches ``target`` bytes."""
    data = path.read_bytes()
    if len(data) >= target:
        return
    start = data.find(b"\nepoch 1/")
    end = data.rfind(b"\nsaving checkpoint:")
    if start < 0 or end <= start:
        return
    head, middle, tail = data[:start], data[start:end], data[end:]
    reps = math.ceil((target - len(head) - len(tail)) / len(middle))
    tmp = path.with_suffix(".log.tmp")
    with open(tmp, "wb") as f:
        f.write(head)
        f.writelines(middle for _ in range(reps))
        f.write(tail)
    os.replace(tmp, path)
