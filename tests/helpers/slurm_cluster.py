"""A real one-node Slurm cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd.

Why real daemons: the Slurm backend parses the output of ``squeue``/``scontrol``/``sacct``,
relies on how ``scancel --signal`` reaches a batch job and on how Slurm names the end of a
job (COMPLETED, CANCELLED, TIMEOUT); a mock would only repeat our assumptions. Debian's
``slurm-wlm`` (22.05) and ``munge`` packages run such a cluster as root in about a second.

Everything lives in one temporary folder: the munge key and socket, ``slurm.conf`` (no
accounting database, so ``sacct`` answers "accounting storage is disabled", like on many small
clusters), the controller's state, slurmd's spool, pid files and logs. Private ports are
chosen at start, so two test sessions on one machine do not meet. Client commands find the
cluster through ``SLURM_CONF`` (:attr:`SlurmCluster.env`). Each daemon runs in the foreground
as our child and is stopped by its PID; jobs still known to the controller are cancelled
first, and any ``slurmstepd`` of this cluster left behind is ended by PID after checking its
spool folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
PACKAGES = ("slurm-wlm", "munge")
CLUSTER_NAME = "sdxltest"
PARTITION = "debug"


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None]


def ensure_installed(timeout: float = 600.0) -> str | None:
    """Install the Debian packages when a program is missing; None when all is there, else
    the reason the cluster cannot run (the caller skips with it)."""
    if not missing_programs():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (f"Slurm is not installed ({', '.join(missing_programs())} missing) and cannot be installed "
                f"here (needs root and apt-get: apt-get install {' '.join(PACKAGES)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
            subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Slurm packages could not be installed ({' '.join(PACKAGES)}): {exc}"
    still = missing_programs()
    return f"Slurm programs still missing after installing: {', '.join(still)}" if still else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_hardware() -> dict[str, str]:
    """``slurmd -C``'s view of this machine (CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    first = out.splitlines()[0]
    fields = dict(word.split("=", 1) for word in first.split() if "=" in word)
    fields.pop("NodeName", None)
    return fields


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent, always safe to call)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, min_job_age: int = 300,
                 kill_wait: int = 2) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="sdxl-tui-slurm-"))
        self.node = socket.gethostname().split(".")[0] or "localhost"
        self.cluster_name = CLUSTER_NAME
        self.partition = PARTITION
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.started_in: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (and the programs that run them)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        hw = node_hardware()
        r = self.root
        for sub in ("state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        node = " ".join(f"{k}={v}" for k, v in hw.items())
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=512",
            "MpiDefault=none",
            "ReturnToService=2",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            f"MinJobAge={self.min_job_age}",
            f"KillWait={self.kill_wait}",
            "OverTimeLimit=0",
            "SchedulerParameters=sched_interval=2",
            f"NodeName={self.node} NodeAddr=127.0.0.1 {node} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName=short Nodes={self.node} MaxTime=30 State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _start_munge(self) -> None:
        d = self.munge_socket.parent
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={d / 'munged.pid'}",
                               f"--seed-file={d / 'munged.seed'}", f"--log-file={d / 'munged.log'}"])
        self._wait(lambda: self.munge_socket.exists(), 20.0, "munged to create its socket")

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "ab")
        try:
            self._procs[name] = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                                 stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        finally:
            out.close()

    def _wait(self, cond: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():  # type: ignore[operator]
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not within {timeout:.0f} s"
                raise RuntimeError(f"Slurm test cluster: waiting for {what}: {why}\n{self.logs()}")
            time.sleep(0.2)

    def node_state(self) -> str:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, check=False,
                             env=self.env, timeout=30)
        states = set(res.stdout.split()) if res.returncode == 0 else set()  # one line per partition
        return states.pop() if len(states) == 1 else ",".join(sorted(states))

    def start(self, timeout: float = 120.0) -> SlurmCluster:
        """Start the daemons and wait until the node is idle; returns self."""
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        try:
            self._start_munge()
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
            self._wait(lambda: self.node_state() == "idle", timeout, f"node {self.node} to be idle")
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A client command against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=timeout,
                              check=check, stdin=subprocess.DEVNULL)

    def job_ids(self) -> list[str]:
        res = self.run("squeue", "-h", "-o", "%i", check=False)
        return res.stdout.split() if res.returncode == 0 else []

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Cancel every job this controller knows and wait until none is pending or running."""
        ids = self.job_ids()
        if not ids:
            return
        self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while self.job_ids() and time.monotonic() < deadline:
            time.sleep(0.3)

    def stepd_pids(self) -> list[int]:
        """``slurmstepd`` processes of this cluster (they keep slurmd's working directory, ours)."""
        root = str(self.root)
        found = []
        for proc in psutil.process_iter(["pid", "name"]):
            try:
                if proc.info["name"] != "slurmstepd":
                    continue
                if proc.cwd().startswith(root):
                    found.append(proc.pid)
            except (psutil.Error, OSError):
                continue
        return found

    def stop(self) -> None:
        """Cancel jobs, stop slurmd, slurmctld and munged by PID, end strays, remove the folder."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        for pid in self.stepd_pids():
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            try:
                tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(out)


def client_env(cluster: SlurmCluster, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess (``sdxl-tui start`` …) that talks to ``cluster``."""
    env = cluster.env
    env.update(extra or {})
    return env
