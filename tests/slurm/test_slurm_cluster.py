"""The test cluster itself: it starts, runs a job, and has no accounting database."""

from __future__ import annotations

import time

from tests.helpers.slurm_cluster import SlurmCluster


def test_cluster_starts_quickly_and_runs_a_batch_job(slurm: SlurmCluster) -> None:
    assert slurm.started_in is not None and slurm.started_in < 60.0
    assert slurm.node_state() in ("idle", "mixed", "allocated")
    job = slurm.run("sbatch", "--parsable", "--output=/dev/null", "--wrap", "true").stdout.strip()
    assert job.isdigit()
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = slurm.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T").stdout.strip()
        if state == "COMPLETED":
            break
        time.sleep(0.3)
    assert state == "COMPLETED"


def test_cluster_has_no_accounting_database(slurm: SlurmCluster) -> None:
    res = slurm.run("sacct", "-P", "-n", "-j", "1", check=False)
    assert res.returncode != 0
    assert "accounting storage is disabled" in res.stderr
