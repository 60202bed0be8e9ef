"""The simulated trainer as a real Slurm job: start, watch, time limit, kill, stop after a checkpoint.

Every run goes through the public CLI (``sdxl-tui start/status/kill``) in a child process
pointed at the one-node cluster by ``SLURM_CONF``; what the tests assert is what
``status --json`` and Slurm itself say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.slurm_cluster import SlurmCluster
from tests.slurm.slurmtools import cli, job_processes, sched_state, sim_launch, status, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture
def runs(slurm: SlurmCluster, tmp_path: Path) -> Iterator[Path]:
    """A folder for this test's run directories; their jobs are cancelled afterwards."""
    yield tmp_path
    for record in tmp_path.glob("*/.sdxl-tui/run.json"):
        job = json.loads(record.read_text(encoding="utf-8")).get("job_id")
        if job:
            slurm.run("scancel", str(job), check=False)


def _submit(slurm: SlurmCluster, run_dir: Path) -> str:
    res = cli(slurm, "start", str(run_dir), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("job id: "))
    return line.removeprefix("job id: ")


def test_pending_running_completed(slurm: SlurmCluster, runs: Path) -> None:
    cpus = slurm.run("sinfo", "-h", "-o", "%c").stdout.strip()
    blocker = slurm.run("sbatch", "--parsable", "--output=/dev/null", f"--cpus-per-task={cpus}",
                        "--wrap", "sleep 600").stdout.strip()
    deadline = time.monotonic() + 60
    while slurm.run("squeue", "-h", "-j", blocker, "-o", "%T").stdout.strip() != "RUNNING":
        assert time.monotonic() < deadline, "the blocking job never started"
        time.sleep(0.3)
    run_dir = runs / "completes"
    sim_launch(run_dir, epochs=2, batches=10, step_seconds=0.2)
    dry = cli(slurm, "start", str(run_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "#SBATCH --partition=debug" in dry.stdout and "sbatch --parsable --job-name=sdxl-tui:slurmrun" in dry.stdout
    job = _submit(slurm, run_dir)

    pending = wait_status(slurm, run_dir, lambda d: sched_state(d) == "PENDING" and d["scheduler"]["reason"],
                          60, "the job pending for a reason")
    assert pending["state"] == "waiting" and pending["log_path"] is None
    assert pending["state_reason"].startswith(f"Slurm job {job} pending (Resources), #1 in the queue, submitted ")
    assert pending["scheduler"]["job_id"] == job and pending["scheduler"]["queue_position"] == 1
    again = cli(slurm, "start", str(run_dir), "--yes")
    assert again.returncode == 3 and f"Slurm job {job} for this output directory is still PENDING" in again.stderr

    slurm.run("scancel", blocker)
    running = wait_status(slurm, run_dir, lambda d: sched_state(d) == "RUNNING", 60, "the job running")
    assert running["scheduler"]["node"] == slurm.node
    assert running["state"] in ("loading", "caching", "training", "saving", "sampling")
    assert f"Slurm job {job} running on {slurm.node}" in running["state_reason"]
    assert running["gpu_status"]["available"] is False
    assert running["gpu_status"]["reason"].startswith("GPU figures not available from here: nvidia-smi on node")

    done = wait_status(slurm, run_dir, lambda d: sched_state(d) == "COMPLETED", 120, "the job completed")
    assert done["state"] == "finished", done["state_reason"]
    assert done["scheduler"]["exit_code"] == 0 and done["step"] == done["total_steps"] == 20
    assert done["state_reason"].endswith(f"Slurm job {job} COMPLETED")
    end = json.loads((run_dir / ".sdxl-tui" / "slurm-end.json").read_text(encoding="utf-8"))
    assert end == {"job_id": job, "exit_code": 0, "signal": "", "node": slurm.node, "ended_at": end["ended_at"]}
    assert "model saved." in (run_dir / "training.log").read_text(encoding="utf-8")


def test_kill_interrupts_the_trainer_and_cancels_the_job(slurm: SlurmCluster, runs: Path) -> None:
    run_dir = runs / "killed"
    sim_launch(run_dir, epochs=50, batches=20, step_seconds=0.3)
    job = _submit(slurm, run_dir)
    wait_status(slurm, run_dir, lambda d: sched_state(d) == "RUNNING" and (d.get("step") or 0) >= 3, 90,
                "the job training")
    res = cli(slurm, "kill", str(run_dir), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Slurm job {job} (cluster sdxltest): RUNNING on {slurm.node}, user root, partition debug" in res.stdout
    data = status(slurm, run_dir)
    assert sched_state(data) == "CANCELLED" and data["scheduler"]["exit_code"] == 130
    assert data["state"] == "stopped"
    assert data["state_reason"].startswith("stopped by you (sdxl-tui kill, SIGINT, ")
    assert data["state_reason"].endswith(f"Slurm job {job} CANCELLED")
    log = (run_dir / "training.log").read_text(encoding="utf-8")
    assert "KeyboardInterrupt" in log  # SIGINT reached the trainer itself, not only the batch shell
    deadline = time.monotonic() + 30
    while job_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_processes(run_dir) == []
    stop = json.loads((run_dir / ".sdxl-tui" / "last-kill.json").read_text(encoding="utf-8"))["stop"]
    assert (stop["by"], stop["how"], stop["signals"], stop["result"], stop["job_id"]) == (
        "sdxl-tui kill", "kill", ["SIGINT"], "stopped", job)
    assert cli(slurm, "kill", str(run_dir), "--yes").returncode == 3  # nothing left to stop


def test_stop_after_the_next_checkpoint(slurm: SlurmCluster, runs: Path) -> None:
    run_dir = runs / "stopped"
    sim_launch(run_dir, epochs=30, batches=12, step_seconds=0.25, save_state=True)
    job = _submit(slurm, run_dir)
    wait_status(slurm, run_dir, lambda d: sched_state(d) == "RUNNING" and (d.get("step") or 0) >= 2, 90,
                "the job training")
    res = cli(slurm, "kill", str(run_dir), "--yes", "--after-checkpoint")
    assert res.returncode == 0, res.stdout + res.stderr
    done = wait_status(slurm, run_dir, lambda d: sched_state(d) == "CANCELLED", 120, "the job cancelled")
    watch_file = run_dir / ".sdxl-tui" / "stop-after-checkpoint.json"
    deadline = time.monotonic() + 60
    while (watch := json.loads(watch_file.read_text(encoding="utf-8")))["state"] == "stopping":
        assert time.monotonic() < deadline, watch
        time.sleep(0.3)
    assert watch["state"] == "done", watch
    ckpt = watch["checkpoint"]
    assert ckpt not in watch["baseline"]
    assert any(c["name"] == ckpt and c["complete"] for c in done["checkpoints"])
    assert any(s["name"] == ckpt.removesuffix(".safetensors") + "-state" and s["complete"] for s in done["states"])
    assert done["state"] == "stopped"
    assert done["state_reason"].startswith("stopped by you (sdxl-tui kill --after-checkpoint, SIGINT, ")
    stop = json.loads((run_dir / ".sdxl-tui" / "last-kill.json").read_text(encoding="utf-8"))["stop"]
    assert (stop["how"], stop["checkpoint"], stop["job_id"]) == ("stop-after-checkpoint", ckpt, job)


def test_time_limit_ends_in_timeout_with_a_resume_hint(slurm: SlurmCluster, runs: Path) -> None:
    run_dir = runs / "timeout"
    sim_launch(run_dir, epochs=100, batches=10, step_seconds=0.3, time_limit="1", save_state=True)
    job = _submit(slurm, run_dir)
    data = wait_status(slurm, run_dir, lambda d: sched_state(d) == "TIMEOUT", 200, "the time limit")
    assert data["state"] == "interrupted"
    assert data["scheduler"]["time_limit"] == 60 and data["scheduler"]["reason"] == "TimeLimit"
    reason = data["state_reason"]
    assert reason.startswith(f"hit the time limit (1:00) at step {data['step']}: resume with resume = \"{run_dir}/")
    assert reason.endswith("-state\" in [args] and a longer [slurm] time (sbatch --time)")
    assert any(a["kind"] == "slurm" and a["key"] == f"slurm:{job}:TIMEOUT" for a in data["alerts"])
