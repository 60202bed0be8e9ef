#!/usr/bin/env python3
"""GPU check of ``sdxl-tui kill`` on a multi-process run: two torchrun ranks, real CUDA memory.

Why: the test suite has no GPU; what matters on a real box is that a kill frees the GPU. This
starts ``python -m torch.distributed.run --nproc_per_node 2`` around a small CUDA workload whose
file name matches the trainer pattern (``rank_train_network.py``, with ``--output_dir``), waits
until NVML shows memory for both ranks, runs the real ``sdxl-tui kill DIR --yes`` and checks:

* discovery sees one run: rank 0 its trainer, rank 1 beside it (``RANK`` from ``/proc/PID/environ``);
* ``sdxl-tui status --json`` attributes each rank's VRAM (``gpus[].run_memory``: ``rank 0``, ``rank 1``);
* the plan named both ranks (``rank 0``, ``rank 1``) and torchrun's agent (``launcher``), which got
  the SIGINT first;
* every rank process is gone and NVML lists none of them; the device's used memory is back
  near what it was before the start;
* the run's state is ``stopped`` ("stopped by you (sdxl-tui kill, SIGINT, …)").

It prints one JSON record (timings, per-rank VRAM, the kill's output, the verdict) and exits 0
when every check holds, 1 when one fails, 2 when there is no CUDA device or no NVML.
Usage: ``python scripts/ranks_gpu_check.py [--mib 1024] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

WORKLOAD = textwrap.dedent("""\
    import argparse, os, time
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--output_dir", required=True)
    p.add_argument("--mib", type=int, default=1024)
    a = p.parse_args()
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(rank % torch.cuda.device_count())
    hold = torch.empty(a.mib * 1024 * 1024, dtype=torch.uint8, device="cuda")
    x = torch.randn(1024, 1024, device="cuda")
    os.makedirs(a.output_dir, exist_ok=True)
    print(f"rank {rank} pid {os.getpid()} holds {a.mib} MiB", flush=True)
    step = 0
    while True:  # "training": no signal handler, like sd-scripts
        x = (x @ x).tanh()
        torch.cuda.synchronize()
        step += 1
        if step % 50 == 0:
            print(f"steps: {step}", flush=True)
        time.sleep(0.01)
    """)


def _nvml() -> Any:
    import pynvml  # type: ignore[import-untyped, unused-ignore]

    pynvml.nvmlInit()
    return pynvml


def _gpu_procs(nv: Any) -> dict[int, int]:
    """pid -> bytes used, over every device (compute processes)."""
    out: dict[int, int] = {}
    for i in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        for p in nv.nvmlDeviceGetComputeRunningProcesses(handle):
            out[int(p.pid)] = int(p.usedGpuMemory or 0)
    return out


def _used(nv: Any) -> int:
    return sum(int(nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(i)).used)
               for i in range(nv.nvmlDeviceGetCount()))


def _wait(cond: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    return None


def _ranks(out: Path) -> list[int]:
    """The run's trainer processes, rank 0 first (one tree for the multi-process launch)."""
    from sdxl_tui.sources.procs import discover

    tree = discover(out).tree
    return [p.pid for p in tree.trainers] if tree is not None else []


def _run_memory(out: Path) -> dict[str, int]:
    """owner -> MiB of the run's VRAM as ``sdxl-tui status --json`` attributes it."""
    done = subprocess.run([sys.executable, "-m", "sdxl_tui", "status", "--json", str(out)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    owners: dict[str, int] = {}
    for gpu in json.loads(done.stdout).get("gpus", []):
        for item in gpu.get("run_memory", []):
            owners[item["owner"]] = owners.get(item["owner"], 0) + int(item["memory_used"]) // 2**20
    return owners


def _check(root: Path, mib: int, nv: Any, record: dict[str, Any]) -> bool:
    out = root / "run"
    script = root / "rank_train_network.py"
    script.write_text(WORKLOAD, encoding="utf-8")
    before = _used(nv)
    record["used_before_mib"] = before // 2**20
    t0 = time.monotonic()
    with open(root / "training.log", "ab") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
             "--output_dir", str(out), "--mib", str(mib)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ranks = _wait(lambda: (r := _ranks(out)) and len(r) == 2 and all(p in _gpu_procs(nv) for p in r) and r, 180)
    record["ranks_up_s"] = round(time.monotonic() - t0, 1)
    if not ranks:
        record["error"] = "two ranks with GPU memory did not appear within 180 s"
        agent.kill()
        return False
    seen = _gpu_procs(nv)
    record["rank_vram_mib"] = {str(p): seen.get(p, 0) // 2**20 for p in ranks}
    record["status_run_memory_mib"] = run_memory = _run_memory(out)
    t1 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sdxl_tui", "kill", "--yes", str(out)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)
    record["kill_s"] = round(time.monotonic() - t1, 1)
    record["kill_rc"] = done.returncode
    record["kill_stdout"] = done.stdout.splitlines()
    roles = {" ".join(line.split()[:2]) for line in done.stdout.splitlines() if line.startswith("rank ")}
    roles |= {line.split()[0] for line in done.stdout.splitlines() if line.startswith("launcher")}
    freed = _wait(lambda: not (set(ranks) & set(_gpu_procs(nv))), 60)
    record["freed_s"] = round(time.monotonic() - t1, 1)
    after = _wait(lambda: (u := _used(nv)) <= before + 256 * 2**20 and u, 60) or _used(nv)
    record["used_after_mib"] = after // 2**20
    from sdxl_tui.sources.rundir import read_run

    snap = read_run(out, gpu=False)
    record["state"], record["state_reason"] = snap.state.value, snap.state_reason
    try:
        agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
    checks = {
        "kill exit 0": done.returncode == 0,
        "one run, rank 0 first": len(ranks) == 2,
        "status attributes VRAM per rank": {"rank 0", "rank 1"} <= set(run_memory),
        "plan named both ranks and the launcher": {"rank 0", "rank 1", "launcher"} <= roles,
        "the agent got SIGINT first": "SIGINT first to launcher" in done.stdout,
        "ranks gone from NVML": bool(freed),
        "memory back near the start": after <= before + 256 * 2**20,
        "no rank process alive": not any(Path(f"/proc/{p}").exists() for p in ranks),
        "verdict stopped": snap.state.value == "stopped" and "stopped by you (sdxl-tui kill" in snap.state_reason,
    }
    record["checks"] = checks
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=1024, help="GPU memory each rank holds (default 1024)")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    record: dict[str, Any] = {"host": os.uname().nodename}
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        record["device"] = torch.cuda.get_device_name(0)
        nv = _nvml()
    except Exception as exc:  # noqa: BLE001 - any missing piece: say which, exit 2
        record["skipped"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(record, indent=2))
        return 2
    if args.keep:
        root = Path(args.keep)
        root.mkdir(parents=True, exist_ok=True)
        ok = _check(root, args.mib, nv, record)
    else:
        with tempfile.TemporaryDirectory(prefix="ranks-gpu-") as tmp:
            ok = _check(Path(tmp), args.mib, nv, record)
    record["ok"] = ok
    print(json.dumps(record, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
