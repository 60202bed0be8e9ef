"""Regenerate ``tests/snapshots/fixture_run``: a small finished simulated run, stored so the
snapshot tests see byte-identical input (the simulator's log carries real timestamps and
tqdm rates, which would change every frame).

    .venv/bin/python tests/snapshots/make_fixture.py && .venv/bin/python -m pytest tests/snapshots --snapshot-update
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
#: The frozen "now" of every snapshot test (2026-11-19 06:13:20 UTC).
FROZEN = 1_795_000_000.0
RUN = HERE / "fixture_run"

ARGS = [
    "--output_name", "luca_sdxl_v1",
    "--max_train_epochs", "6",
    "--save_every_n_epochs", "2",
    "--gradient_accumulation_steps", "2",
    "--learning_rate", "0.0003",
    "--unet_lr", "0.0003",
    "--text_encoder_lr", "0.000201",
    "--lr_scheduler", "cosine_with_restarts",
    "--lr_scheduler_num_cycles", "3",
    "--network_dim", "2",
    "--network_alpha", "1",
    "--sim-step-seconds", "0",
    "--sim-startup-seconds", "0",
    "--sim-batches-per-epoch", "40",
    "--sim-seed", "42",
    "--sim-hostname", "trainbox",
]


def main() -> int:
    from sdxl_tui.sim import run_simulated

    if RUN.exists():
        shutil.rmtree(RUN)
    rc = run_simulated(RUN, [*ARGS, "--logging_dir", str(RUN / "logs"), "--log_with", "tensorboard"])
    for p in sorted(RUN.rglob("*")):
        print(p.relative_to(HERE), p.stat().st_size if p.is_file() else "")
    return rc


if __name__ == "__main__":
    sys.exit(main())
