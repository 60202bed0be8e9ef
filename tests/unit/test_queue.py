"""The night's queue with local runs: real simulated trainers, the real detached runner.

Every command goes through the CLI (``sdxl-tui queue ...`` in a child process) with the queue
in this test's folder (``SDXL_TUI_QUEUE_DIR``) and a fast runner poll.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
from tests.helpers.proctools import Procs, end_recorded_evaluations, managed_procs, wait_until

PY = sys.executable
FAKE_EVAL = str(Path(__file__).resolve().parents[1] / "helpers" / "fake_eval.py")


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from managed_procs()


@pytest.fixture
def qenv(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of the CLI calls; the queue runner is ended by PID afterwards."""
    qdir = tmp_path / "queue"
    env = {**os.environ, "SDXL_TUI_QUEUE_DIR": str(qdir), "SDXL_TUI_QUEUE_POLL_INTERVAL": "0.3",
           "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "SDXL_TUI_EVAL_COMMAND": json.dumps([PY, FAKE_EVAL, "--checkpoint", "{checkpoint}",
                                                "--output-dir", "{output_dir}", "--num-samples", "1"]),
           "SDXL_TUI_EVAL_DEVICE": "cpu"}
    yield env
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
    res = queue(env, "list", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, list)
    return data


def sim(procs: Procs, run_dir: Path, *, fault: str | None = None, epochs: int = 2) -> Path:
    procs.watch_dir(run_dir)
    run_dir.mkdir(parents=True)
    prefix = [PY, "-m", "sdxl_tui", "simulate", "--sim-batches-per-epoch", "4", "--sim-step-seconds", "0.1",
              "--sim-startup-seconds", "0.2"]
    if fault:
        prefix += ["--sim-fault", fault, "--sim-fault-step", "3"]
    cfg = LaunchConfig(prefix=tuple(prefix), script="", output_dir=str(run_dir),
                       args={"output_name": run_dir.name, "max_train_epochs": epochs, "save_every_n_epochs": 1,
                             "network_dim": 4})
    return write_launch_config(cfg, run_dir / "sdxl-tui.toml")


def statuses(env: dict[str, str]) -> list[str]:
    return [e["status"] for e in entries(env)]


@pytest.mark.slow
def test_local_runs_start_one_after_another_and_evaluate(tmp_path: Path, procs: Procs, qenv: dict[str, str]) -> None:
    a, b = sim(procs, tmp_path / "a"), sim(procs, tmp_path / "b")
    try:
        assert queue(qenv, "add", str(a)).returncode == 0
        res = queue(qenv, "add", str(b.parent), "--eval", "last")
        assert res.returncode == 0 and res.stdout.strip() == f"queued #2: local run into {b.parent}", res.stderr
        wait_until(lambda: statuses(qenv) == ["done", "done"], timeout=120, interval=0.5)
        first, second = entries(qenv)
        assert first["ended_at"] <= second["started_at"]  # one after the other, never together
        assert first["message"].startswith("finished: ")
        assert "1 evaluation(s) queued (b.safetensors)" in second["message"]
        wait_until(lambda: (b.parent / "eval_b" / "argv.json").exists(), timeout=60)
    finally:
        end_recorded_evaluations(b.parent)


@pytest.mark.slow
def test_a_failed_run_stops_the_rest_unless_it_says_continue(tmp_path: Path, procs: Procs,
                                                             qenv: dict[str, str]) -> None:
    crash2, goes_on = sim(procs, tmp_path / "crash2", fault="crash"), sim(procs, tmp_path / "goes_on")
    crash, after = sim(procs, tmp_path / "crash", fault="crash"), sim(procs, tmp_path / "after")
    assert queue(qenv, "add", str(crash2), "--on-failure", "continue").returncode == 0
    assert queue(qenv, "add", str(goes_on)).returncode == 0
    assert queue(qenv, "add", str(crash)).returncode == 0
    assert queue(qenv, "add", str(after)).returncode == 0
    bad = queue(qenv, "add", str(after), "--after", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "neither a queue entry (1, 2, 3, 4) nor a run directory" in bad.stderr
    wait_until(lambda: all(s not in ("waiting", "running") for s in statuses(qenv)), timeout=120, interval=0.5)
    assert queue(qenv, "add", str(goes_on), "--after", str(tmp_path / "crash")).returncode == 0
    wait_until(lambda: statuses(qenv)[-1] not in ("waiting", "running"), timeout=60, interval=0.5)
    got = {e["id"]: (e["status"], e["message"]) for e in entries(qenv)}
    assert got["1"][0] == "failed" and got["1"][1].startswith("failed: crashed: ")
    assert got["2"][0] == "done"  # #1 failed, but said --on-failure continue
    assert got["3"][0] == "failed"
    assert got["4"] == ("skipped", "#3 did not finish; skipped (add it with --on-failure continue to go on anyway)")
    assert got["5"][0] == "skipped" and got["5"][1].startswith(f"{tmp_path / 'crash'} did not finish")
    listing = queue(qenv, "list").stdout
    assert "#3   failed    local crash" in listing and "#4   skipped   local after" in listing


def test_remove_a_waiting_entry(tmp_path: Path, procs: Procs, qenv: dict[str, str]) -> None:
    a = sim(procs, tmp_path / "a", epochs=30)
    b = sim(procs, tmp_path / "b")
    assert queue(qenv, "add", str(a)).returncode == 0
    assert queue(qenv, "add", str(b)).returncode == 0
    res = queue(qenv, "remove", "2")
    assert res.returncode == 0 and res.stdout.strip() == "removed #2"
    wait_until(lambda: statuses(qenv)[0] == "running", timeout=60, interval=0.3)
    res = queue(qenv, "remove", "1")
    assert res.returncode == 1 and f"stop it with `sdxl-tui kill {a.parent}`" in res.stderr
    assert queue(qenv, "remove", "2").returncode == 2  # already removed
    assert queue(qenv, "remove", "9").returncode == 2
    assert entries(qenv)[1]["status"] == "removed" and not (b.parent / "training.log").exists()
