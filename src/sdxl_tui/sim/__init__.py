"""A simulated sd-scripts ``sdxl_train_network.py`` that writes the real formats.

Used by the demo, test fixtures and benchmarks. What it writes follows sd-scripts v0.10.1's code
and a real run's files (tests/fixtures/real-sdxl-run: file names, RichHandler log layout, tqdm ``\\r`` bars,
TensorBoard layout/tags/steps, safetensors header and ``ss_*``/``modelspec.*``/``sshs_*``
metadata), so readers can be tested against it without a GPU.

Command line (a separate process, like the real trainer)::

    sdxl-tui simulate --output_dir OUT [sd-scripts options] [--sim-step-seconds S]
        [--sim-startup-seconds S] [--sim-batches-per-epoch N]
        [--sim-fault {oom,nan,hang,crash} --sim-fault-step N] [--sim-hang-seconds S]
        [--sim-real-size] [--sim-seed N] [--sim-hostname NAME]

It prints to its own stdout/stderr; launch it as the real one is launched,
``... > OUT/training.log 2>&1 &`` (see :func:`start_simulated`).

Python API:

- ``run_simulated(output_dir, args, *, unbuffered=None) -> int``: run in this process and
  write ``OUTPUT_DIR/training.log`` the way the shell redirect would (stdout emulates an
  8 KiB block buffer unless ``unbuffered`` or ``PYTHONUNBUFFERED``). ``args`` are trainer
  and ``--sim-*`` options; ``--output_dir`` is added when missing. Returns the exit status
  (0, 1 for oom/crash, 2 for bad arguments).
- ``simulate_command(output_dir, args) -> list[str]``: the subprocess argv
  ``[sys.executable, "-m", "sdxl_tui", "simulate", ..., "--output_dir", OUT]``.
- ``start_simulated(output_dir, args, **popen_kwargs) -> subprocess.Popen``: start that
  command detached (new session) with stdout+stderr redirected to ``OUT/training.log``.
- ``demo_args(output_dir) -> list[str]``: a realistic SDXL "luca" run (dim 64 / alpha 32,
  unet_lr 3e-4, text_encoder_lr 2.01e-4, gradient accumulation 2, 12 epochs, save every 2,
  cosine_with_restarts, logging_dir OUT/logs, samples every 2 epochs) paced for a 3-5 minute
  demo. It writes its small dataset (PNG + captions) and prompt file to ``OUT-inputs/``.
- ``sdxl_tui.sim.bulk.generate_big_run(run_dir, *, log_bytes, scalars, checkpoints)``: a
  finished-looking big run for benchmarks, as fast as possible.

Ranks: launched by ``torchrun`` or ``accelerate launch --multi_gpu --num_processes N`` each
process reads ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` and behaves as that rank of sd-scripts does
(only rank 0 saves and writes events, only local rank 0 prints and draws bars, every rank logs,
batches sharded, a ``gloo`` barrier before saves: :mod:`sdxl_tui.sim.ranks`).

Not simulated (known differences): wandb,
``--log_config`` hparams sub-runs, ``--cache_latents_to_disk`` ``.npz`` files beside the
images, LoRA+/block-wise/DAdapt/Prodigy LR tags. ``--resume`` and ``--skip_until_initial_step`` count
steps as sd-scripts does (``formats/trainstate.py``), mis-steps included. Source line
numbers of records that do not appear in the real sample run are plausible, not verified.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["demo_args", "run_simulated", "simulate_command", "start_simulated"]


def _with_output_dir(output_dir: str | os.PathLike[str], args: list[str]) -> list[str]:
    argv = list(args)
    if not any(a == "--output_dir" or a.startswith("--output_dir=") for a in argv):
        argv += ["--output_dir", str(output_dir)]
    return argv


def run_simulated(output_dir: str | os.PathLike[str], args: list[str], *, unbuffered: bool | None = None) -> int:
    """Run a simulated training in-process; returns the trainer's exit status."""
    from sdxl_tui.sim.console import SimConsole
    from sdxl_tui.sim.runner import run_argv

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "training.log", "wb") as f:
        console = SimConsole(f, unbuffered=unbuffered)
        try:
            return run_argv(_with_output_dir(output_dir, args), console, in_process=True)
        finally:
            console.flush_stdout()


def simulate_command(output_dir: str | os.PathLike[str], args: list[str]) -> list[str]:
    """The argv that runs the simulator as its own process (carries ``--output_dir``)."""
    return [sys.executable, "-m", "sdxl_tui", "simulate", *_with_output_dir(output_dir, args)]


def start_simulated(
    output_dir: str | os.PathLike[str], args: list[str], **popen_kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start the simulator like ``nohup ... > OUT/training.log 2>&1 &`` (new session)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "training.log", "wb")  # noqa: SIM115 - handed to the child, closed here after
    try:
        popen_kwargs.setdefault("start_new_session", True)
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(
            simulate_command(output_dir, args), stdout=log, stderr=subprocess.STDOUT, **popen_kwargs
        )
    finally:
        log.close()


def demo_args(output_dir: str | os.PathLike[str]) -> list[str]:
    """A realistic SDXL LoRA launch (the "luca" run) paced for a 3-5 minute demo."""
    from sdxl_tui.sim.demo import write_demo_inputs

    out = Path(output_dir)
    inputs = Path(str(out) + "-inputs")
    dataset, prompts = write_demo_inputs(inputs)
    return [
        "--pretrained_model_name_or_path", "/models/sd_xl_base_1.0.safetensors",
        "--dataset_config", str(dataset),
        "--output_dir", str(out),
        "--output_name", "luca_sdxl_v1",
        "--network_module", "networks.lora",
        "--network_dim", "64",
        "--network_alpha", "32",
        "--learning_rate", "0.0003",
        "--unet_lr", "0.0003",
        "--text_encoder_lr", "0.000201",
        "--max_train_epochs", "12",
        "--save_every_n_epochs", "2",
        "--save_model_as", "safetensors",
        "--save_precision", "fp16",
        "--mixed_precision", "fp16",
        "--no_half_vae",
        "--gradient_checkpointing",
        "--gradient_accumulation_steps", "2",
        "--optimizer_type", "AdamW8bit",
        "--lr_scheduler", "cosine_with_restarts",
        "--lr_scheduler_num_cycles", "3",
        "--lr_warmup_steps", "30",
        "--logging_dir", str(out / "logs"),
        "--log_with", "tensorboard",
        "--seed", "42",
        "--cache_latents",
        "--max_data_loader_n_workers", "2",
        "--persistent_data_loader_workers",
        "--xformers",
        "--max_token_length", "225",
        "--sample_prompts", str(prompts),
        "--sample_every_n_epochs", "2",
        "--sample_sampler", "euler_a",
        "--sim-step-seconds", "0.35",
        "--sim-startup-seconds", "6",
    ]
