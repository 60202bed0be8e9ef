"""Helpers for the tests against the one-node Slurm cluster: launch configs for the simulator,
the CLI run against the cluster, and waiting on what ``status --json`` says."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
from sdxl_tui.formats.slurm import SlurmConfig
from tests.helpers.slurm_cluster import SlurmCluster

PY = sys.executable


def sim_launch(run_dir: Path, *, epochs: int, batches: int, step_seconds: float, time_limit: str | None = None,
               save_state: bool = False, name: str = "slurmrun") -> Path:
    """``RUN_DIR/sdxl-tui.toml``: the simulated trainer as a Slurm job (one CPU, no GPU)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    args: dict[str, Any] = {"output_name": name, "max_train_epochs": epochs, "save_every_n_epochs": 1,
                            "network_dim": 4}
    if save_state:
        args["save_state"] = True
    cfg = LaunchConfig(
        prefix=(PY, "-m", "sdxl_tui", "simulate", "--sim-batches-per-epoch", str(batches),
                "--sim-step-seconds", str(step_seconds), "--sim-startup-seconds", "0.5"),
        script="", output_dir=str(run_dir), args=args, backend="slurm",
        slurm=SlurmConfig(partition="debug", time=time_limit, cpus_per_task=1, mem="256M"),
    )
    return write_launch_config(cfg, run_dir / "sdxl-tui.toml")


def cli(cluster: SlurmCluster, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``sdxl-tui ARGS`` in a child process that talks to ``cluster`` (stdin /dev/null)."""
    return subprocess.run([PY, "-m", "sdxl_tui", *args], capture_output=True, text=True, env=cluster.env,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def status(cluster: SlurmCluster, run_dir: Path) -> dict[str, Any]:
    res = cli(cluster, "status", str(run_dir), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, dict)
    return data


def wait_status(cluster: SlurmCluster, run_dir: Path, cond: Callable[[dict[str, Any]], bool],
                timeout: float, what: str) -> dict[str, Any]:
    """Poll ``status --json`` until ``cond`` holds; the last answer is in the failure message."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = status(cluster, run_dir)
        if cond(last):
            return last
        time.sleep(1.0)
    slim = {k: last.get(k) for k in ("state", "state_reason", "step", "scheduler", "gpu_status")}
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last status: {json.dumps(slim, indent=1)}\n"
                         f"{cluster.logs(5)}")


def sched_state(data: dict[str, Any]) -> str | None:
    sched = data.get("scheduler") or {}
    return sched.get("state")


def job_processes(run_dir: Path) -> list[str]:
    """Processes on this machine (the cluster's only node) whose command line names ``run_dir``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd: Sequence[str] = proc.info.get("cmdline") or []
        if any(str(run_dir) in part for part in cmd):
            found.append(f"{proc.info['pid']}: {' '.join(cmd)[:200]}")
    return found
