#!/usr/bin/env python3
"""Benchmark of the run reader (issue 3): prints a table of figures, asserts nothing.

What it measures, on a generated run (``sdxl_tui.sim.bulk.generate_big_run``: a 300 MB
``training.log``, one event file of 200,000 scalars, 20 checkpoints; cached in ``--workdir``):

1. ``sdxl-tui status --json DIR`` cold: a fresh Python process each time (import, read, print),
   median of ``--repeat`` runs; and, side by side in the same run, tbparse's
   ``SummaryReader(DIR/logs).scalars`` in a fresh process on the same event files (median of
   ``--tbparse-repeat``), plus the ratio. Target: status <= 0.6 s, >= 15x faster than tbparse.
2. A refresh after 100 new steps: one ``RunReader`` (``procs=False`` and no GPU source: the reader
   itself, not NVML or the process table) is refreshed once, then 100 realistic steps are
   appended (tqdm redraws with ``avr_loss``, ``epoch`` lines, 4 scalars per micro-batch) and
   ``refresh()`` is timed; median of ``--repeat``. Target: <= 20 ms.
3. Peak RSS of ``sdxl-tui status --json`` over a second generated run of 1,000,000 scalars and
   a 1 GB log (``ru_maxrss`` of the child via ``os.wait4``). Target: < 200 MB.

"Cold" means a new process; the files are in the page cache (the benchmark cannot drop it
without root). Quick run: ``--quick`` (about 1/20 of every size). The benchmark never runs
under pytest; ``tests/unit/test_status_cli.py`` has a smoke test that runs it with tiny sizes.

Usage::

    .venv/bin/python benchmarks/bench_reader.py [--workdir DIR] [--quick] [--repeat 5]
        [--log-mb 300] [--scalars 200000] [--checkpoints 20] [--big-log-mb 1000]
        [--big-scalars 1000000] [--skip-rss] [--skip-tbparse] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _generate(run_dir: Path, *, log_bytes: int, scalars: int, checkpoints: int) -> float:
    """Generate (or reuse) a big run; returns the seconds spent generating (0 when cached)."""
    marker = run_dir / ".bench-params.json"
    params = {"log_bytes": log_bytes, "scalars": scalars, "checkpoints": checkpoints, "v": 1}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return 0.0
        except ValueError:
            pass
    import shutil

    from sdxl_tui.sim.bulk import generate_big_run

    if run_dir.exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    generate_big_run(run_dir, log_bytes=log_bytes, scalars=scalars, checkpoints=checkpoints)
    elapsed = time.perf_counter() - t0
    marker.write_text(json.dumps(params))
    return elapsed


#: Child environment: bytecode cached (as after `pip install`), outside the source tree.
CHILD_ENV = dict(os.environ)


def _copy_run(src: Path, dst: Path) -> None:
    """Copy the log and event files (they get appended to); link everything else."""
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    for p in src.rglob("*"):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if p.name == "training.log" or "tfevents" in p.name:
            shutil.copyfile(p, target)
        else:
            try:
                os.link(p, target)
            except OSError:
                shutil.copyfile(p, target)


def _child_env(workdir: Path) -> None:
    CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    CHILD_ENV["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + CHILD_ENV.get("PYTHONPATH", "")


def _child(cmd: list[str]) -> tuple[float, int, int, bytes, float]:
    """Run ``cmd``; returns (wall seconds, exit status, peak RSS bytes, stdout, CPU seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=CHILD_ENV)
    out = proc.stdout.read() if proc.stdout is not None else b""
    err = proc.stderr.read() if proc.stderr is not None else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode("utf-8", "replace")[-2000:])
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return wall, proc.returncode, rss, out, usage.ru_utime + usage.ru_stime


def status_cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sdxl_tui", "status", str(run_dir), "--json"]


def tbparse_cmd(logs_dir: Path) -> list[str]:
    code = (
        "import sys\n"
        "from tbparse import SummaryReader\n"
        "df = SummaryReader(sys.argv[1]).scalars\n"
        "print(len(df))\n"
    )
    return [sys.executable, "-c", code, str(logs_dir)]


def _event_file(run_dir: Path) -> Path:
    files = sorted(run_dir.rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_size)
    if not files:
        raise SystemExit(f"no event file under {run_dir}")
    return files[-1]


def append_steps(run_dir: Path, reader_step: int, total: int, n: int = 100, accum: int = 2) -> int:
    """Append ``n`` optimizer steps the way sd-scripts writes them; returns the new step."""
    from sdxl_tui.sim.progress import format_meter
    from sdxl_tui.formats.tfrecord import frame, scalar_event

    log = run_dir / "training.log"
    ev = _event_file(run_dir)
    now = time.time()
    text: list[str] = []
    records: list[bytes] = []
    step = reader_step
    total = max(total, step + n + 1)
    for _ in range(n):
        for micro in range(accum):
            loss = 0.1 + 0.01 * ((step * 7 + micro) % 13)
            if micro == accum - 1:
                step += 1
            elapsed = 3.0 * step
            text.append("\r" + format_meter(step, total, elapsed, prefix="steps", postfix=f"avr_loss={loss:.3g}"))
            for tag, value in (("loss/current", loss), ("loss/average", loss * 0.9),
                               ("lr/unet", 3e-4), ("lr/textencoder", 2e-4)):
                records.append(frame(scalar_event(tag, value, step, now)))
    with open(log, "ab") as f:
        f.write("".join(text).encode("utf-8"))
    with open(ev, "ab") as f:
        f.write(b"".join(records))
    return step


REFRESH_CPU: list[float] = []


def bench_refresh(run_dir: Path, repeat: int) -> tuple[list[float], float, int]:
    """(refresh times after 100 new steps, first refresh seconds, last step seen)."""
    from sdxl_tui.sources.rundir import RunReader

    reader = RunReader(run_dir, procs=False)
    t0 = time.perf_counter()
    snap = reader.refresh()
    first = time.perf_counter() - t0
    step = snap.progress.step or 0
    total = snap.progress.total_steps or (step + 1000)
    times = []
    cpu = []
    for _ in range(repeat):
        step = append_steps(run_dir, step, total + 100 * repeat)
        t0 = time.perf_counter()
        c0 = time.process_time()
        snap = reader.refresh()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if snap.progress.step != step:
            print(f"warning: reader saw step {snap.progress.step}, expected {step}", file=sys.stderr)
    REFRESH_CPU[:] = cpu
    return times, first, snap.progress.step or 0


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _s(x: float) -> str:
    return f"{x:.3f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sdxl-tui-bench")
    ap.add_argument("--quick", action="store_true", help="about 1/20 of every size")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tbparse-repeat", type=int, default=3)
    ap.add_argument("--log-mb", type=float, default=300)
    ap.add_argument("--scalars", type=int, default=200_000)
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--big-log-mb", type=float, default=1000)
    ap.add_argument("--big-scalars", type=int, default=1_000_000)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-tbparse", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.log_mb, args.scalars, args.big_log_mb, args.big_scalars = 15, 10_000, 50, 50_000

    args.workdir.mkdir(parents=True, exist_ok=True)
    run = args.workdir / f"run-{int(args.log_mb)}mb-{args.scalars}-{args.checkpoints}"
    gen = _generate(run, log_bytes=int(args.log_mb * 1e6), scalars=args.scalars, checkpoints=args.checkpoints)
    # refresh first: it appends steps; measure the cold status after, on the same files
    results: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "run": str(run),
        "log_bytes": (run / "training.log").stat().st_size,
        "event_bytes": _event_file(run).stat().st_size,
        "generate_seconds": round(gen, 2),
    }

    _child_env(args.workdir)
    _child(status_cmd(run))  # warm-up: writes the bytecode cache, fills the page cache
    status_times = []
    status_cpu = []
    status_rss = []
    for _ in range(args.repeat):
        wall, rc, rss, out, cpu = _child(status_cmd(run))
        if rc != 0:
            print(f"status failed with {rc}", file=sys.stderr)
            return 1
        status_times.append(wall)
        status_cpu.append(cpu)
        status_rss.append(rss)
    data = json.loads(out)
    results["status_state"] = data["state"]
    results["status_scalars"] = sum(s["count"] for s in data["series"].values())
    results["status_median_s"] = statistics.median(status_times)
    results["status_cpu_median_s"] = statistics.median(status_cpu)
    results["status_all_s"] = [round(t, 3) for t in status_times]
    results["status_rss_mb"] = max(status_rss) / 1e6

    if not args.skip_tbparse:
        tb_times = []
        tb_cpu = []
        _child(tbparse_cmd(run / "logs"))  # warm-up (bytecode of pandas etc.)
        for _ in range(args.tbparse_repeat):
            wall, rc, _rss, out, cpu = _child(tbparse_cmd(run / "logs"))
            tb_cpu.append(cpu)
            if rc != 0:
                print("tbparse failed", file=sys.stderr)
                return 1
            tb_times.append(wall)
        results["tbparse_median_s"] = statistics.median(tb_times)
        results["tbparse_cpu_median_s"] = statistics.median(tb_cpu)
        results["tbparse_rows"] = int(out.decode().strip() or 0)
        results["ratio"] = results["tbparse_median_s"] / results["status_median_s"]  # type: ignore[operator]
        results["ratio_cpu"] = results["tbparse_cpu_median_s"] / results["status_cpu_median_s"]  # type: ignore[operator]

    # the refresh benchmark appends steps: work on a copy so the cached run stays as generated
    work = args.workdir / "refresh-copy"
    _copy_run(run, work)
    times, first, last_step = bench_refresh(work, args.repeat)
    results["first_refresh_s"] = first
    results["refresh_100_steps_median_ms"] = statistics.median(times) * 1000
    results["refresh_100_steps_all_ms"] = [round(t * 1000, 2) for t in times]
    results["refresh_100_steps_cpu_median_ms"] = statistics.median(REFRESH_CPU) * 1000
    results["refresh_last_step"] = last_step

    if not args.skip_rss:
        big = args.workdir / f"big-{int(args.big_log_mb)}mb-{args.big_scalars}"
        _generate(big, log_bytes=int(args.big_log_mb * 1e6), scalars=args.big_scalars, checkpoints=args.checkpoints)
        wall, rc, rss, out, _cpu = _child(status_cmd(big))
        results["big_log_bytes"] = (big / "training.log").stat().st_size
        results["big_scalars"] = sum(s["count"] for s in json.loads(out)["series"].values()) if rc == 0 else None
        results["big_status_s"] = wall
        results["big_status_rss_mb"] = rss / 1e6

    rows = [
        ("generated run", (f"{results['log_bytes'] / 1e6:.0f} MB log, {results['status_scalars']} scalars "
                          f"({results['event_bytes'] / 1e6:.1f} MB events), {args.checkpoints} checkpoints"), ""),
        ("sdxl-tui status --json (cold process, median)", _s(results["status_median_s"]), "<= 0.6 s"),  # type: ignore[arg-type]
        ("  its CPU time (user+sys, median)", _s(results["status_cpu_median_s"]), ""),  # type: ignore[arg-type]
    ]
    if "tbparse_median_s" in results:
        rows.append(("tbparse SummaryReader(...).scalars (same files)", _s(results["tbparse_median_s"]), ""))  # type: ignore[arg-type]
        rows.append(("  its CPU time (user+sys, median)", _s(results["tbparse_cpu_median_s"]), ""))  # type: ignore[arg-type]
        rows.append(("speed-up over tbparse", f"{results['ratio']:.1f}x", ">= 15x"))
        rows.append(("  by CPU time", f"{results['ratio_cpu']:.1f}x", ""))
    rows.append(("refresh after 100 new steps (median)", f"{results['refresh_100_steps_median_ms']:.1f} ms", "<= 20 ms"))
    rows.append(("  its CPU time (median)", f"{results['refresh_100_steps_cpu_median_ms']:.1f} ms", ""))
    rows.append(("first refresh in-process (no NVML/psutil)", _s(first), ""))
    rows.append(("status peak RSS on that run", f"{results['status_rss_mb']:.0f} MB", ""))
    if "big_status_rss_mb" in results:
        rows.append((f"status peak RSS: {results['big_log_bytes'] / 1e9:.2f} GB log, {results['big_scalars']} scalars",
                     f"{results['big_status_rss_mb']:.0f} MB ({results['big_status_s']:.2f} s)", "< 200 MB"))
    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"sdxl-tui reader benchmark  ({results['machine']}, load average {load:.1f})")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>24}  {target}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
