"""`sdxl-tui status ROOT` on a folder of runs, `export`, `compare` (real files, real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.runs_folder import build_runs_folder, sim_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    build_runs_folder(root)
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdxl_tui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=240)


def test_status_root_json_contract(runs_root: Path) -> None:
    p = _cli("status", str(runs_root), "--json", "--no-gpu")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    runs = {r["name"]: r for r in data["runs"]}
    assert set(runs) == {"sdxl_v1", "sdxl_v2"}
    for r in runs.values():
        assert {"run_dir", "name", "kind", "state", "step", "total_steps", "loss", "best_loss"} <= set(r)
    assert runs["sdxl_v1"]["state"] == "finished" and runs["sdxl_v2"]["state"] == "failed"
    t = data["trials"]
    assert t["count"] == 6 and t["best"]["trial"] == "trial_0025" and t["best"]["score"] == 0.864
    assert t["best"]["params"]["network_dim"] == 64 and "Convergence reached" in t["convergence_alert"]


def test_status_root_text_never_mixes_unrelated_files(runs_root: Path) -> None:
    p = _cli("status", str(runs_root), "--no-gpu")
    assert p.returncode == 0, p.stderr
    assert "luca/sdxl_v1" in p.stdout and "luca/sdxl_v2" in p.stdout
    assert "apt.log" not in p.stdout and "stray" not in p.stdout
    assert "sdxl-tui plan --from" in p.stdout and "trial_0025" in p.stdout


def test_status_on_a_single_run_is_unchanged(runs_root: Path) -> None:
    p = _cli("status", str(runs_root / "luca" / "sdxl_v1"), "--json", "--no-gpu")
    data = json.loads(p.stdout)
    assert data["state"] == "finished" and "runs" not in data and "runs_below" not in data


def test_status_on_a_folder_without_runs_says_so(tmp_path: Path) -> None:
    (tmp_path / "apt.log").write_text("Get:1 http://archive.ubuntu.com jammy InRelease\n")
    p = _cli("status", str(tmp_path), "--no-gpu")
    assert p.returncode == 2 and "no sd-scripts run here" in p.stderr and "Traceback" not in p.stderr


def test_a_run_holding_a_run_reads_only_its_own_files(tmp_path: Path) -> None:
    outer = sim_run(tmp_path / "outer", "outer")
    inner = sim_run(outer / "rerun", "rerun", "--max_train_epochs", "4")
    p = _cli("status", str(outer), "--json", "--no-gpu")
    data = json.loads(p.stdout)
    assert data["runs_below"] == [str(inner)]
    assert data["total_steps"] == 10 and [c["name"] for c in data["checkpoints"]][-1] == "outer.safetensors"
