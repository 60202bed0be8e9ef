"""Simulated runs for the report tests: a finished run with sample images and an evaluation."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

#: 4 epochs of 10 optimizer steps (20 batches, accumulation 2), a save every 2 epochs,
#: sample images every 2 epochs (2 prompts).
ARGS = [
    "--output_name", "luca_sdxl_v1",
    "--max_train_epochs", "4",
    "--save_every_n_epochs", "2",
    "--gradient_accumulation_steps", "2",
    "--learning_rate", "0.0003", "--unet_lr", "0.0003", "--text_encoder_lr", "0.000201",
    "--lr_scheduler", "cosine_with_restarts",
    "--network_dim", "64", "--network_alpha", "32",
    "--sample_every_n_epochs", "2",
    "--sim-step-seconds", "0", "--sim-startup-seconds", "0",
    "--sim-batches-per-epoch", "20", "--sim-seed", "7",
]
PROMPTS = "luca, a boy with dark hair --w 1024 --h 1024 --d 42\nluca, riding a vespa --w 832 --h 1216 --d 7\n"


def simulate(run_dir: Path, *extra: str) -> Path:
    from sdxl_tui.sim import run_simulated

    prompts = run_dir.parent / f"{run_dir.name}-prompts.txt"
    prompts.write_text(PROMPTS)
    rc = run_simulated(run_dir, [*ARGS, "--sample_prompts", str(prompts), "--logging_dir", str(run_dir / "logs"),
                                 "--log_with", "tensorboard", *extra])
    assert rc in (0, 1), rc
    return run_dir


def add_evaluation(run_dir: Path, epoch: int) -> None:
    """An evaluation folder as the built-in evaluator leaves it: result PNGs and a contact sheet."""
    from sdxl_tui.render.sheet import contact_sheet

    folder = run_dir / f"eval_epoch{epoch}"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(((200, 40, 40), (40, 200, 40))):
        path = folder / f"{i}_{42 + i}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        paths.append(str(path))
    contact_sheet(paths, cell=64).save(folder / "contact_sheet.png")
