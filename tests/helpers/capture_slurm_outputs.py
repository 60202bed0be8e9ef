"""Record what real Slurm prints, for the parsing tests: ``python -m tests.helpers.capture_slurm_outputs DIR``.

Starts the one-node test cluster, runs jobs into each state the backend must understand
(pending for resources and by priority, running, completed, failed, cancelled, interrupted
through sdxl-tui's batch script, timed out) and writes each command's exact stdout (and
stderr where the error text is the point) to ``DIR/<name>.txt``. Re-run it after a Slurm
upgrade; the parsing tests then show what changed. Takes about two minutes (the time limit).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdxl_tui.formats.slurm import SACCT_FIELDS, SQUEUE_FORMAT, BatchSpec, SlurmConfig, batch_script
from tests.helpers.slurm_cluster import SlurmCluster


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster().start()
    work = Path(tempfile.mkdtemp(prefix="slurm-capture-"))
    try:
        return _capture(cluster, out, work)
    finally:
        cluster.stop()


def _capture(c: SlurmCluster, out: Path, work: Path) -> int:
    def save(name: str, text: str) -> None:
        (out / f"{name}.txt").write_text(text, encoding="utf-8")

    def sq(job: str) -> str:
        return c.run("squeue", "-h", "-t", "all", "-j", job, "-o", SQUEUE_FORMAT).stdout

    def sc(job: str) -> str:
        return c.run("scontrol", "show", "job", "-o", job).stdout

    def wait_state(job: str, states: tuple[str, ...], timeout: float = 200.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if c.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T").stdout.strip() in states:
                return
            time.sleep(0.3)
        raise RuntimeError(f"job {job} never reached {states}")

    def sbatch(*args: str) -> str:
        return c.run("sbatch", "--parsable", "--output=/dev/null", *args).stdout.strip()

    cpus = c.run("sinfo", "-h", "-o", "%c").stdout.strip()
    first = c.run("sbatch", "--parsable", "--output=/dev/null", f"--cpus-per-task={cpus}", "--wrap", "sleep 40")
    save("sbatch-parsable", first.stdout)
    big = first.stdout.strip()
    wait_state(big, ("RUNNING",))
    waiting = sbatch(f"--cpus-per-task={cpus}", "--time=5", "--wrap", "true")
    behind = sbatch(f"--cpus-per-task={cpus}", "--time=5", "--wrap", "true")
    time.sleep(4)  # one scheduling pass: the reasons settle (Resources, Priority)
    save("squeue-running", sq(big))
    save("scontrol-running", sc(big))
    save("squeue-pending-resources", sq(waiting))
    save("squeue-pending-priority", sq(behind))
    save("scontrol-pending", sc(waiting))
    save("squeue-pending-order", c.run("squeue", "-h", "-t", "PD", "-o", "%i", "--sort=-p,i").stdout)
    c.run("scancel", big, waiting, behind)

    ok = sbatch("--wrap", "true")
    failed = sbatch("--wrap", "exit 3")
    cancelled = sbatch("--wrap", "sleep 60")
    wait_state(cancelled, ("RUNNING",))
    c.run("scancel", cancelled)
    script = work / "interrupted.sh"
    spec = BatchSpec(slurm=SlurmConfig(time="10"), argv=(sys.executable, "-c", "import time; time.sleep(60)"),
                     cwd=str(work), output_dir=str(work), log_path=str(work / "training.log"),
                     state_dir=str(work))
    script.write_text(batch_script(spec), encoding="utf-8")
    interrupted = sbatch(str(script))
    wait_state(interrupted, ("RUNNING",))
    time.sleep(1)
    c.run("scancel", "--full", "--signal=INT", interrupted)
    timeout = sbatch("--time=1", "--wrap", "sleep 300")
    for job, name in ((ok, "completed"), (failed, "failed"), (cancelled, "cancelled"), (interrupted, "interrupted")):
        wait_state(job, ("COMPLETED", "FAILED", "CANCELLED"))
        save(f"squeue-{name}", sq(job))
        save(f"scontrol-{name}", sc(job))
    save("slurm-end-interrupted", (work / "slurm-end.json").read_text(encoding="utf-8"))
    wait_state(timeout, ("TIMEOUT",))
    save("squeue-timeout", sq(timeout))
    save("scontrol-timeout", sc(timeout))

    unknown = c.run("squeue", "-h", "-t", "all", "-j", "999999", "-o", SQUEUE_FORMAT, check=False)
    save("squeue-unknown-job.stderr", unknown.stderr)
    unknown = c.run("scontrol", "show", "job", "-o", "999999", check=False)
    save("scontrol-unknown-job.stderr", unknown.stderr)
    acct = c.run("sacct", "-P", "-n", "-X", "-j", ok, "-o", ",".join(SACCT_FIELDS), check=False)
    save("sacct-disabled.stderr", acct.stderr)
    save("sinfo-partitions", c.run("sinfo", "-h", "-o", "%P|%a").stdout)
    gpu_job = sbatch("--wrap", "sleep 30")
    wait_state(gpu_job, ("RUNNING",))
    smi = c.run("srun", f"--jobid={gpu_job}", "--overlap", "nvidia-smi", "--query-gpu=index",
                "--format=csv,noheader", check=False)
    save("srun-nvidia-smi-missing.stderr", smi.stderr)
    c.run("scancel", gpu_job)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except subprocess.CalledProcessError as exc:
        print(f"{exc.cmd}: {exc.stderr}", file=sys.stderr)
        sys.exit(1)
