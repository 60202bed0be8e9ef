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


def _tbparse_rows(logdir: Path) -> int:
    from tbparse import SummaryReader

    return len(SummaryReader(str(logdir)).scalars)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_row_count_equals_tbparse(runs_root: Path, tmp_path: Path, suffix: str) -> None:
    import pandas as pd

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"all{suffix}"
    p = _cli("export", str(runs_root), "-o", str(out))
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    luca = runs_root / "luca"
    expected = _tbparse_rows(luca / "sdxl_v1" / "logs") + _tbparse_rows(luca / "sdxl_v2" / "logs")
    assert len(table) == expected > 0
    assert list(table.columns) == ["run", "tag", "step", "wall_time", "value"]
    assert set(table["run"]) == {"luca/sdxl_v1", "luca/sdxl_v2"}


def test_export_trials_carry_their_trial(tmp_path: Path) -> None:
    import pandas as pd

    from tests.helpers.runs_folder import build_trials_with_runs

    folder = build_trials_with_runs(tmp_path / "optimization_overnight", 2)
    out = tmp_path / "t.csv"
    p = _cli("export", str(folder), "-o", str(out))
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(out)
    assert set(table["trial"]) == {"trial_0001", "trial_0002"}
    assert len(table) == sum(_tbparse_rows(folder / t / "logs") for t in ("trial_0001", "trial_0002"))


def test_export_refuses_a_path_without_runs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    p = _cli("export", str(tmp_path / "empty"), "-o", str(tmp_path / "x.csv"))
    assert p.returncode == 2 and "no sd-scripts run here" in p.stderr and not (tmp_path / "x.csv").exists()
    p = _cli("export", str(tmp_path), "-o", str(tmp_path / "x.txt"))
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_compare_shows_only_differences_and_writes_a_png(tmp_path: Path) -> None:
    a = sim_run(tmp_path / "v1", "v1")
    b = sim_run(tmp_path / "v2", "v2", "--network_dim", "16", "--gradient_accumulation_steps", "2")
    png = tmp_path / "c.png"
    p = _cli("compare", str(a), str(b), "--align", "epoch", "--png", str(png))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    dim = next(line for line in lines if line.startswith("network_dim "))
    assert "8" in dim and "16" in dim
    assert not any(line.startswith("learning_rate ") for line in lines)  # the same in both: not shown
    assert "loss by epoch" in p.stdout and "● v1" in p.stdout and "◆ v2" in p.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _cli("compare", str(a)).returncode == 2


def test_compare_an_optimisation_folder_compares_its_trials(tmp_path: Path) -> None:
    from tests.helpers.runs_folder import build_trials_with_runs

    folder = build_trials_with_runs(tmp_path / "optimization_overnight", 3)
    p = _cli("compare", str(folder))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("3 runs: trial_0001") and "learning_rate" in p.stdout


def test_status_root_with_an_unreadable_run_lists_the_others(tmp_path: Path) -> None:
    """File modes enforced (tests/helpers/unprivileged.py): a run folder nobody may read is a
    row that says so, or is left out; the other runs are listed, no traceback."""
    from tests.helpers.unprivileged import unprivileged

    sim_run(tmp_path / "luca" / "sdxl_v1", "v1")
    locked = sim_run(tmp_path / "luca" / "sdxl_v2", "v2")
    locked.chmod(0)
    try:
        p = subprocess.run(unprivileged([sys.executable, "-m", "sdxl_tui", "status", str(tmp_path / "luca"),
                                         "--json", "--no-gpu"]),
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=240, check=False)
    finally:
        locked.chmod(0o755)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    runs = {r["name"]: r for r in json.loads(p.stdout)["runs"]}
    assert runs["sdxl_v1"]["state"] == "finished"


def test_status_root_watch_follows_the_runs_table(runs_root: Path) -> None:
    p = _cli("status", str(runs_root), "--watch", "--interval", "0.1", "--count", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("--- every 0.1s: sdxl-tui status ") == 2
    assert p.stdout.count("sdxl_v1") >= 2 and p.stdout.count("sdxl_v2") >= 2
    assert _cli("status", str(runs_root), "--watch", "--json").returncode == 2  # text only, said so
