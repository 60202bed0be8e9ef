"""A demo folder of runs, like the user's card: ``luca/`` with the SD1.5 optimisation and
the SDXL runs, written with the simulator's real writers (for ``sdxl-tui demo --runs``, the
runs-view tests and the README capture).

``luca/optimization_overnight/trial_NNNN`` are finished runs of the simulated SD1.5
``train_network.py`` (:data:`SD15_SCRIPT_ARGS`) with a
``params.json`` and a ``result.json`` each and a ``CONVERGENCE_ALERT.txt``;
``luca/sdxl_v1`` finished, ``luca/sdxl_v2`` failed (CUDA out of memory); the caller starts
the live ``luca/sdxl_v3`` (:func:`live_args`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sdxl_tui.sim import run_simulated

__all__ = ["SD15_SCRIPT_ARGS", "build_demo_folder", "live_args"]

#: How the simulator is told to be SD1.5's train_network.py (512, ss_base_model_version sd_v1).
SD15_SCRIPT_ARGS: tuple[str, ...] = ("--sim-script", "train_network.py", "--resolution", "512")

_FAST = ("--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--save_every_n_epochs", "1",
         "--network_dim", "8", "--network_alpha", "4")
#: (learning rate, dim) of the demo trials and their score (trial 3 is the best)
_TRIALS = ((1e-4, 32, 0.79), (3e-4, 64, 0.83), (3e-4, 64, 0.864), (5e-4, 64, 0.81), (2e-4, 128, 0.85))


def _run(out: Path, name: str, *extra: str) -> None:
    run_simulated(out, [*_FAST, "--output_name", name, "--logging_dir", str(out / "logs"),
                        "--log_with", "tensorboard", "--max_train_epochs", "2", "--sim-batches-per-epoch", "10",
                        *extra])


def build_demo_folder(root: str | os.PathLike[str], *, trials: int = 5) -> Path:
    """Write ``ROOT/luca`` (returned); the live run is left to the caller."""
    luca = Path(root) / "luca"
    opt = luca / "optimization_overnight"
    for i in range(1, trials + 1):
        lr, dim, score = _TRIALS[(i - 1) % len(_TRIALS)]
        trial = opt / f"trial_{i:04d}"
        _run(trial, f"lora_trial_{i}", *SD15_SCRIPT_ARGS, "--learning_rate", str(lr), "--sim-seed", str(i))
        params = {"learning_rate": lr, "network_dim": dim, "network_alpha": dim // 2, "optimizer_type": "AdamW8bit",
                  "lr_scheduler": "cosine_with_restarts", "gradient_accumulation_steps": 2, "max_train_epochs": 12}
        (trial / "params.json").write_text(json.dumps(params, indent=1))
        (trial / "result.json").write_text(json.dumps({"trial": i, "state": "COMPLETE", "score": score}))
    best = max(range(1, trials + 1), key=lambda i: _TRIALS[(i - 1) % len(_TRIALS)][2])
    (opt / "CONVERGENCE_ALERT.txt").write_text(
        f"Convergence reached after {trials} trials: best score {_TRIALS[best - 1][2]} (trial_{best:04d}); "
        "no improvement in the last 2 trials.\n")
    _run(luca / "sdxl_v1", "luca_sdxl_v1", "--learning_rate", "0.0003")
    _run(luca / "sdxl_v2", "luca_sdxl_v2", "--learning_rate", "0.0003", "--train_batch_size", "8",
         "--sim-fault", "oom", "--sim-fault-step", "7")
    return luca


def live_args(luca: str | os.PathLike[str], step_seconds: float = 0.5) -> list[str]:
    """Arguments of the live ``sdxl_v3`` run (a rerun with batch 2 x accumulation 4)."""
    out = Path(luca) / "sdxl_v3"
    return ["--output_name", "luca_sdxl_v3", "--logging_dir", str(out / "logs"), "--log_with", "tensorboard",
            "--max_train_epochs", "6", "--save_every_n_epochs", "2", "--train_batch_size", "2",
            "--gradient_accumulation_steps", "4", "--network_dim", "64", "--network_alpha", "32",
            "--learning_rate", "0.0003", "--sim-batches-per-epoch", "40", "--sim-step-seconds", str(step_seconds),
            "--sim-startup-seconds", "2"]
