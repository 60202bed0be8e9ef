"""The queue with Slurm runs: the next job is submitted at once with a dependency on the one
before it, Slurm starts it when that one ends, and a failed run's follower never starts."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from sdxl_tui.formats.launch_config import load_launch_config, write_launch_config
from tests.helpers.slurm_cluster import SlurmCluster
from tests.slurm.slurmtools import PY, sim_launch

pytestmark = pytest.mark.slow


@pytest.fixture
def qenv(slurm: SlurmCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    qdir = tmp_path / "queue"
    env = {**slurm.env, "SDXL_TUI_QUEUE_DIR": str(qdir), "SDXL_TUI_QUEUE_POLL_INTERVAL": "0.5",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    yield env
    for entry in qdir.glob("*.json"):
        job = json.loads(entry.read_text(encoding="utf-8")).get("job_id")
        if job:
            slurm.run("scancel", str(job), check=False)
    try:
        info = json.loads((qdir / "runner.info").read_text(encoding="utf-8"))
        proc = psutil.Process(info["pid"])
        if abs(proc.create_time() - info["create_time"]) < 0.05:
            proc.kill()
    except (OSError, ValueError, KeyError, psutil.Error):
        pass


def queue(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "sdxl_tui", "queue", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def entries(env: dict[str, str]) -> list[dict[str, Any]]:
    data = json.loads(queue(env, "list", "--json").stdout)
    assert isinstance(data, list)
    return data


def wait_entries(env: dict[str, str], cond: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got = entries(env)
    while not cond(got):
        assert time.monotonic() < deadline, json.dumps(got, indent=1)
        time.sleep(0.5)
        got = entries(env)
    return got


def _crashing(toml: Path) -> None:
    cfg = load_launch_config(toml)
    write_launch_config(replace(cfg, prefix=(*cfg.prefix, "--sim-fault", "crash", "--sim-fault-step", "3")), toml)


def test_slurm_runs_chain_with_a_dependency(slurm: SlurmCluster, tmp_path: Path, qenv: dict[str, str]) -> None:
    first = sim_launch(tmp_path / "first", epochs=2, batches=10, step_seconds=0.3, name="first")
    second = sim_launch(tmp_path / "second", epochs=1, batches=4, step_seconds=0.1, name="second")
    assert queue(qenv, "add", str(first)).returncode == 0
    assert queue(qenv, "add", str(second)).returncode == 0
    both = wait_entries(qenv, lambda es: all(e["job_id"] for e in es), 60)
    job1, job2 = both[0]["job_id"], both[1]["job_id"]
    assert (both[0]["dependency"], both[1]["dependency"]) == (None, f"afterok:{job1}")
    assert f"job {job2} (afterok:{job1})" in queue(qenv, "list").stdout
    shown = slurm.run("scontrol", "show", "job", "-o", job2).stdout
    assert f"Dependency=afterok:{job1}" in shown
    assert "JobState=PENDING Reason=Dependency" in shown  # Slurm holds it while the first runs
    res = subprocess.run([PY, "-m", "sdxl_tui", "status", str(tmp_path / "second"), "--json"], capture_output=True,
                         text=True, env=qenv, stdin=subprocess.DEVNULL, timeout=60, check=True)
    st = json.loads(res.stdout)
    assert (st["state"], st["scheduler"]["state"], st["scheduler"]["reason"]) == ("waiting", "PENDING", "Dependency")
    assert st["state_reason"].startswith(f"Slurm job {job2} pending (Dependency)")
    assert [(e["id"], e["job_id"]) for e in st["queue"]] == [("1", job1), ("2", job2)]
    done = wait_entries(qenv, lambda es: [e["status"] for e in es] == ["done", "done"], 180)
    s1 = slurm.run("scontrol", "show", "job", "-o", job1).stdout
    s2 = slurm.run("scontrol", "show", "job", "-o", job2).stdout
    end1 = s1.split("EndTime=")[1].split()[0]
    start2 = s2.split("StartTime=")[1].split()[0]
    assert start2 >= end1, (end1, start2)  # the second started when the first had ended
    assert all(e["message"].startswith("finished: ") for e in done)


def test_a_failed_slurm_run_keeps_the_next_from_starting(slurm: SlurmCluster, tmp_path: Path,
                                                         qenv: dict[str, str]) -> None:
    first = sim_launch(tmp_path / "bad", epochs=2, batches=10, step_seconds=0.2, name="bad")
    _crashing(first)
    second = sim_launch(tmp_path / "never", epochs=1, batches=4, step_seconds=0.1, name="never")
    assert queue(qenv, "add", str(first)).returncode == 0
    assert queue(qenv, "add", str(second)).returncode == 0
    got = wait_entries(qenv, lambda es: [e["status"] for e in es] == ["failed", "skipped"], 180)
    job2 = got[1]["job_id"]
    assert got[0]["message"].startswith("failed: crashed: ")
    assert got[1]["message"] == (f"the run before it did not finish: Slurm job {job2} cancelled before it started")
    shown = slurm.run("scontrol", "show", "job", "-o", job2).stdout
    assert "JobState=CANCELLED" in shown and "StartTime=" in shown
    assert not (tmp_path / "never" / "training.log").exists()  # it never ran
