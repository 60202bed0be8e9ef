"""A folder of runs like the user's card: ``luca/optimization_overnight`` (the trials fixture),
``luca/sdxl_v1`` (finished), ``luca/sdxl_v2`` (failed: OOM), an SD1.5 run (``sd15_v1``) and
unrelated files (an apt log, a stray folder) that must never be mixed into a run."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE_TRIALS = Path(__file__).resolve().parents[1] / "fixtures" / "trials" / "optimization_overnight"

#: 2 epochs of 5 optimizer steps, a save every epoch, no waiting
FAST = [
    "--max_train_epochs", "2", "--save_every_n_epochs", "1",
    "--network_dim", "8", "--network_alpha", "4", "--learning_rate", "0.0003",
    "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "5",
]


def sim_run(run_dir: Path, name: str, *extra: str) -> Path:
    from sdxl_tui.sim import run_simulated

    rc = run_simulated(run_dir, [*FAST, "--output_name", name, "--logging_dir", str(run_dir / "logs"),
                                 "--log_with", "tensorboard", *extra])
    assert rc in (0, 1), rc
    return run_dir


def build_runs_folder(root: Path) -> Path:
    luca = root / "luca"
    luca.mkdir(parents=True)
    shutil.copytree(FIXTURE_TRIALS, luca / "optimization_overnight")
    sim_run(luca / "sdxl_v1", "luca_sdxl_v1")
    sim_run(luca / "sdxl_v2", "luca_sdxl_v2", "--sim-fault", "oom", "--sim-fault-step", "7")
    (root / "apt.log").write_text("Get:1 http://archive.ubuntu.com jammy InRelease\n")
    (root / "stray").mkdir()
    (root / "stray" / "notes.txt").write_text("nothing to see\n")
    return luca


def build_trials_with_runs(folder: Path, count: int = 3) -> Path:
    """An optimisation folder whose trials are simulated SD runs (their own logs/), with
    params.json and a result.json each (score higher is better; trial 2 is the best)."""
    import json

    for i in range(1, count + 1):
        trial = folder / f"trial_{i:04d}"
        lr = ("0.0001", "0.0003", "0.0005")[(i - 1) % 3]
        sim_run(trial, f"lora_trial_{i}", "--learning_rate", lr, "--sim-seed", str(i))
        (trial / "params.json").write_text(json.dumps({"learning_rate": float(lr), "network_dim": 8}))
        (trial / "result.json").write_text(json.dumps({"state": "COMPLETE", "score": 0.8 + (0.05 if i == 2 else 0.01 * i)}))
    return folder
