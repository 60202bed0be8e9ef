"""`sdxl-tui check` on a Slurm launch, against the real cluster's partitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.slurm_cluster import SlurmCluster
from tests.slurm.slurmtools import PY, cli, sim_launch


def _codes(out: str) -> dict[str, str]:
    report = json.loads(out)
    return {f["code"]: f["message"] for f in report["findings"] if f["code"].startswith("slurm-")}


def _retarget(toml: Path, old: str, new: str) -> None:
    toml.write_text(toml.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_check_asks_the_cluster_about_the_slurm_table(slurm: SlurmCluster, tmp_path: Path) -> None:
    toml = sim_launch(tmp_path / "run", epochs=1, batches=2, step_seconds=0.0, time_limit="20")
    res = cli(slurm, "check", str(toml), "--json", "--no-env")
    assert _codes(res.stdout) == {"slurm-no-gres": "no [slurm] gres: the job may run without a GPU"}
    assert res.returncode == 1, res.stdout  # warnings only

    _retarget(toml, 'partition = "debug"', 'partition = "gpu"')
    codes = _codes(cli(slurm, "check", str(toml), "--json", "--no-env").stdout)
    assert codes["slurm-partition-unknown"] == "partition 'gpu' does not exist (sinfo lists debug, short)"

    _retarget(toml, 'partition = "gpu"', 'partition = "short"')
    _retarget(toml, 'time = "20"', 'time = "1:00:00"')
    res = cli(slurm, "check", str(toml), "--json", "--no-env")
    assert res.returncode == 2
    assert _codes(res.stdout)["slurm-time-over-limit"] == (
        "time 1:00:00 is above partition short's limit 30:00: sbatch refuses the job")
    start = cli(slurm, "start", "--launch", str(toml), "--yes")
    assert start.returncode == 2 and "slurm-time-over-limit" in start.stdout  # the preflight refuses too


def test_check_syntax_errors_and_a_machine_without_sbatch(slurm: SlurmCluster, tmp_path: Path) -> None:
    toml = sim_launch(tmp_path / "run", epochs=1, batches=2, step_seconds=0.0, time_limit="20")
    _retarget(toml, 'time = "20"', 'time = "20 min"')
    res = cli(slurm, "check", str(toml))
    assert res.returncode == 2 and "[slurm] time must be one word" in res.stderr
    _retarget(toml, 'time = "20 min"', 'time = "20m"')
    res = cli(slurm, "check", str(toml))
    assert res.returncode == 2 and "not a Slurm time limit; use MINUTES, MM:SS" in res.stderr
    _retarget(toml, 'time = "20m"', 'time = "20"\ngres = "gpu:"')
    res = cli(slurm, "check", str(toml))
    assert res.returncode == 2 and "is not Slurm's --gres syntax" in res.stderr

    _retarget(toml, '\ngres = "gpu:"', "")
    no_slurm = {**slurm.env, "PATH": os.path.dirname(PY)}
    res = subprocess.run([sys.executable, "-m", "sdxl_tui", "check", str(toml), "--json", "--no-env"],
                         capture_output=True, text=True, env=no_slurm, check=False, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert _codes(res.stdout) == {"slurm-no-sbatch": "sbatch is not on PATH: this machine cannot submit Slurm jobs"}
