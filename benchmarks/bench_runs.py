"""Benchmark: a folder of 50 runs (issue 13): `status ROOT --json` cold, and watching it idle.

    .venv/bin/python benchmarks/bench_runs.py [--workdir DIR] [--runs 50] [--trials 30] [--watch 20]

Builds (once, cached in --workdir) a folder like the user's: N-1 finished or failed simulated
runs (a third fail with CUDA OOM), one optimisation folder of --trials trials (params.json +
result.json), and starts one live simulated run (a real process, slow steps). Prints:

* ``status ROOT --json`` cold: a new process each time, median of 3 (wall and CPU: user+sys
  of the child); target <= 1.5 s.
* the runs view's first table: a headless ``RunsApp`` with a new watcher, in this process.
* the same folder watched with nothing changing (the live run stopped): one ``RunsWatcher``
  refreshed every 2 s (the runs view's cadence) for --watch seconds; CPU% of one core
  (process time / wall); target <= 1 %. And the same with the live run writing.
* the machine load (``os.getloadavg``) next to each figure: the box is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAST = ["--max_train_epochs", "2", "--save_every_n_epochs", "1", "--network_dim", "8", "--network_alpha", "4",
        "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "20"]


def build(folder: Path, runs: int, trials: int) -> None:
    from sdxl_tui.sim import run_simulated

    marker = folder / ".built"
    if marker.exists() and marker.read_text() == f"{runs} {trials}":
        return
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(runs - 1):
        out = folder / f"sdxl_v{i + 1}"
        extra = ["--sim-fault", "oom", "--sim-fault-step", "15"] if i % 3 == 2 else []
        run_simulated(out, [*FAST, "--output_name", f"luca_v{i + 1}", "--logging_dir", str(out / "logs"),
                            "--log_with", "tensorboard", "--sim-seed", str(i), *extra])
    opt = folder / "optimization_overnight"
    for t in range(1, trials + 1):
        d = opt / f"trial_{t:04d}"
        d.mkdir(parents=True)
        params = {"learning_rate": 1e-4 * (1 + t % 5), "network_dim": 32 + t % 3 * 16}
        (d / "params.json").write_text(json.dumps(params))
        (d / "result.json").write_text(json.dumps({"state": "COMPLETE", "score": 0.7 + (t % 7) / 50}))
    marker.write_text(f"{runs} {trials}")


def start_live(folder: Path) -> subprocess.Popen[bytes]:
    from sdxl_tui.sim import start_simulated

    out = folder / "sdxl_live"
    shutil.rmtree(out, ignore_errors=True)
    return start_simulated(out, ["--max_train_epochs", "50", "--sim-step-seconds", "1.5", "--sim-startup-seconds", "0",
                                 "--sim-batches-per-epoch", "20", "--output_name", "luca_live",
                                 "--logging_dir", str(out / "logs"), "--log_with", "tensorboard"])


def cold_status(folder: Path) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "sdxl_tui", "status", str(folder), "--json", "--no-gpu"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, len(json.loads(p.stdout)["runs"])


def first_table(folder: Path) -> tuple[float, float]:
    """Seconds from starting the runs view (headless, in this process) to its first table (the
    rows named by discovery), and to every cell read."""
    import asyncio

    from sdxl_tui.sources.runs import RunsWatcher
    from sdxl_tui.tui.runs_app import RunsApp

    async def run() -> tuple[float, float]:
        t = time.monotonic()
        app = RunsApp(str(folder), watcher=RunsWatcher(folder), interval=0)
        async with app.run_test(size=(160, 48)) as pilot:
            while app.view is None:
                await pilot.pause(0.01)
            return (app.first_table_at or t) - t, time.monotonic() - t

    return asyncio.run(run())


def watch(folder: Path, seconds: float, interval: float = 2.0) -> tuple[float, int, int]:
    from sdxl_tui.sources.runs import RunsWatcher

    w = RunsWatcher(folder)
    w.refresh()  # the first table (cold) is not the idle cost
    w.refresh()
    reread = 0
    refreshes = 0
    c0, t0 = time.process_time(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        reread += w.refresh().reread
        refreshes += 1
        time.sleep(interval)
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - t0), refreshes, reread


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sdxl-tui-bench-runs"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--watch", type=float, default=20.0)
    args = ap.parse_args()
    folder = Path(args.workdir) / "luca"
    t = time.perf_counter()
    build(folder, args.runs, args.trials)
    print(f"folder {folder}: {args.runs - 1} runs + 1 live + {args.trials} trials (built/checked in "
          f"{time.perf_counter() - t:.1f} s)")
    live = start_live(folder)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "sdxl_live" / "logs").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        results = [cold_status(folder) for _ in range(3)]
        wall = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        print(f"status ROOT --json cold ({results[0][2]} runs): wall {wall:.2f} s (runs: "
              f"{', '.join(f'{r[0]:.2f}' for r in results)}), CPU {cpu:.2f} s; target <= 1.5 s; "
              f"load {os.getloadavg()[0]:.2f}")
        named, full = first_table(folder)
        print(f"runs view (headless, new watcher, Textual already imported): first table {named:.2f} s, "
              f"every cell read {full:.2f} s; target <= 1.5 s; load {os.getloadavg()[0]:.2f}")
        pct, n, reread = watch(folder, args.watch)
        print(f"watching with the live run writing: {pct:.2f}% of one core ({n} refreshes, {reread} runs re-read); "
              f"load {os.getloadavg()[0]:.2f}")
    finally:
        os.killpg(live.pid, signal.SIGINT)
        live.wait(timeout=60)
    pct, n, reread = watch(folder, args.watch)
    print(f"watching idle (nothing changing): {pct:.2f}% of one core ({n} refreshes, {reread} runs re-read); "
          f"target <= 1%; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
