"""The dashboard's keys on a Slurm run (s, k), through the same actions the dialogs call."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sdxl_tui.config import Settings
from sdxl_tui.control.slurm import CancelPlan
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.sources.rundir import read_run
from sdxl_tui.tui import actions
from tests.helpers.slurm_cluster import SlurmCluster
from tests.slurm.slurmtools import sim_launch

pytestmark = pytest.mark.slow


def test_start_and_kill_keys_submit_and_cancel_the_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "keys"
    sim_launch(run_dir, epochs=40, batches=20, step_seconds=0.3)
    settings = Settings()
    try:
        proposal = actions.plan_start(str(run_dir), settings)
        assert proposal.allowed, proposal.body
        assert isinstance(proposal.plan, LaunchConfig) and proposal.plan.backend == "slurm"
        assert "batch script (" in proposal.body and "#SBATCH --partition=debug" in proposal.body
        assert "submitted with:\n  sbatch --parsable --job-name=sdxl-tui:slurmrun" in proposal.body
        ok, text = actions.do_start(proposal.plan)
        assert ok and text.startswith("submitted Slurm job "), text
        deadline = time.monotonic() + 90
        while (snap := read_run(run_dir, gpu=False)).scheduler is None or snap.scheduler.state != "RUNNING" \
                or not snap.progress.step:
            assert time.monotonic() < deadline, snap.state_reason
            time.sleep(1.0)
        kill = actions.plan_kill(str(run_dir))
        assert kill.title == "Cancel the Slurm job?" and isinstance(kill.plan, CancelPlan)
        assert f"Slurm job {snap.scheduler.job_id} (cluster sdxltest): RUNNING on {slurm.node}" in kill.body
        ok, text = actions.do_kill(kill.plan, settings)
        assert ok and text == f"Slurm job {snap.scheduler.job_id} ended: CANCELLED", text
        after = read_run(run_dir, gpu=False)
        assert after.state_reason.startswith("stopped by you (dashboard key k, SIGINT, ")
    finally:
        record = run_dir / ".sdxl-tui" / "run.json"
        if record.exists():
            slurm.run("scancel", str(json.loads(record.read_text(encoding="utf-8"))["job_id"]), check=False)
