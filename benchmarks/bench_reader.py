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


def _child(cmd: list[str], cache_home: Path | None = None) -> tuple[float, int, int, bytes, float]:
    """Run ``cmd``; returns (wall seconds, exit status, peak RSS bytes, stdout, CPU seconds).

    ``cache_home``: the child's ``XDG_CACHE_HOME`` (sdxl-tui's event cache lives there)."""
    env = dict(CHILD_ENV)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    env["SDXL_TUI_BENCH_SPAWNED_AT"] = repr(time.time())  # the first-frame child's start (bench_tui.py)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
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
    from sdxl_tui.formats.tfrecord import frame, scalar_event
    from sdxl_tui.sim.progress import format_meter

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


def upb_cmd(event_file: Path) -> list[str]:
    """A plain Python loop over protobuf's compiled ``Event`` (framing split by hand, no CRC
    checks): what a reader built on protobuf's own parser would cost at best."""
    code = (
        "import struct, sys\n"
        "from google.protobuf.internal import api_implementation\n"
        "from tensorboard.compat.proto.event_pb2 import Event\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "pos, n, count, last = 0, len(data), 0, {}\n"
        "unpack = struct.Struct('<Q').unpack_from\n"
        "parse = Event.FromString\n"
        "while pos + 12 <= n:\n"
        "    (length,) = unpack(data, pos)\n"
        "    ev = parse(data[pos + 12 : pos + 12 + length])\n"
        "    for v in ev.summary.value:\n"
        "        last[v.tag] = (ev.step, v.simple_value)\n"
        "        count += 1\n"
        "    pos += length + 16\n"
        "print(api_implementation.Type(), count)\n"
    )
    return [sys.executable, "-c", code, str(event_file)]


def frame_cmd(run_dir: Path) -> list[str]:
    """``bench_tui.py``'s first-frame child: ``build_app`` as the CLI does, headless, until the
    screen shows the checkpoints and the loss; prints seconds since its process started."""
    return [sys.executable, str(ROOT / "benchmarks" / "bench_tui.py"), "--child-first-frame", str(run_dir)]


def _medians(cmd: list[str], repeat: int, cache: Path | None, fresh: bool) -> tuple[float, float, int, bytes]:
    """(median wall, median CPU, max RSS, last stdout) of ``repeat`` runs of ``cmd``; ``fresh``:
    an empty cache folder for each run (cold), else the same one, primed first (warm)."""
    import shutil

    walls, cpus, rss_all = [], [], []
    out = b""
    if cache is not None and not fresh:
        shutil.rmtree(cache, ignore_errors=True)
        _child(cmd, cache)  # primes the cache
    for _ in range(repeat):
        if cache is not None and fresh:
            shutil.rmtree(cache, ignore_errors=True)
        wall, rc, rss, out, cpu = _child(cmd, cache)
        if rc != 0:
            raise SystemExit(f"{cmd[2:4]} failed with {rc}")
        walls.append(wall)
        cpus.append(cpu)
        rss_all.append(rss)
    return statistics.median(walls), statistics.median(cpus), max(rss_all), out


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    bits = [f"Python {sys.version.split()[0]}"]
    for name in ("textual", "protobuf", "tbparse"):
        try:
            bits.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            bits.append(f"{name} -")
    return ", ".join(bits)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}), nproc {len(os.sched_getaffinity(0))}"


def _measure(args: argparse.Namespace, run: Path, results: dict[str, object]) -> None:
    cold = args.workdir / "xdg-cold"
    warm = args.workdir / "xdg-warm"
    _child(status_cmd(run), cold)  # warm-up: writes the bytecode cache, fills the page cache
    wall, cpu, rss, out = _medians(status_cmd(run), args.repeat, cold, fresh=True)
    data = json.loads(out)
    results.update(status_state=data["state"], status_scalars=sum(s["count"] for s in data["series"].values()),
                   status_median_s=wall, status_cpu_median_s=cpu, status_rss_mb=rss / 1e6)
    wall, cpu, _rss, out = _medians(status_cmd(run), args.repeat, warm, fresh=False)
    results.update(warm_median_s=wall, warm_cpu_median_s=cpu)
    _measure_floor(args, run, warm, results)
    if not args.skip_tbparse:
        _child(tbparse_cmd(run / "logs"))  # warm-up (bytecode of pandas etc.)
        wall, cpu, _rss, out = _medians(tbparse_cmd(run / "logs"), args.tbparse_repeat, None, fresh=True)
        results.update(tbparse_median_s=wall, tbparse_cpu_median_s=cpu, tbparse_rows=int(out.decode().strip() or 0))
        results["ratio"] = wall / results["status_median_s"]  # type: ignore[operator]
        results["ratio_cpu"] = cpu / results["status_cpu_median_s"]  # type: ignore[operator]
    wall, cpu, _rss, out = _medians(upb_cmd(_event_file(run)), args.repeat, None, fresh=True)
    results.update(upb_median_s=wall, upb_cpu_median_s=cpu, upb_backend=out.decode().split()[0])
    if not args.skip_frame:
        _child(frame_cmd(run), cold)  # warm-up: Textual's bytecode
        frames = []
        for fresh, cache in ((True, cold), (False, warm)):
            wall, cpu, _rss, out = _medians(frame_cmd(run), args.repeat, cache, fresh=fresh)
            frames.append((float(out.decode().strip().splitlines()[-1]), wall, cpu))
        results.update(frame_cold_s=frames[0][0], frame_cold_cpu_s=frames[0][2],
                       frame_warm_s=frames[1][0], frame_warm_cpu_s=frames[1][2])


def modules_cmd(run_dir: Path) -> list[str]:
    """A warm ``status --json`` in-process; prints the modules it imported, in import order."""
    code = """if True:
        import contextlib, io, sys
        before = set(sys.modules)
        from sdxl_tui.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            main(['status', sys.argv[1], '--json'])
        print(','.join(m for m in sys.modules if m not in before and not m.startswith('__main__')))
    """
    return [sys.executable, "-c", code, str(run_dir)]


def imports_cmd(modules: str) -> list[str]:
    """A new process that only imports ``modules`` (and ends as status does, ``os._exit``)."""
    code = "import importlib, os, sys\nfor m in sys.argv[1].split(','):\n    importlib.import_module(m)\nos._exit(0)\n"
    return [sys.executable, "-c", code, modules]


def _measure_floor(args: argparse.Namespace, run: Path, cache: Path, results: dict[str, object]) -> None:
    """What a warm status cannot go below: the interpreter's start, and the start plus the
    imports of exactly the modules a warm status imports (measured alone, nothing read);
    interleaved with warm status runs, so that all three see the same load."""
    _wall, _rc, _rss, out, _cpu = _child(modules_cmd(run), cache)
    modules = out.decode().strip().splitlines()[-1]
    cmds = {"python_start": [sys.executable, "-c", "pass"], "imports_floor": imports_cmd(modules),
            "floor_warm": status_cmd(run)}
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(args.repeat):
        for key, cmd in cmds.items():
            wall, rc, _rss, _out, cpu = _child(cmd, cache)
            if rc != 0:
                raise SystemExit(f"{cmd[1:3]} failed with {rc}")
            got[key].append((wall, cpu))
    for key, runs in got.items():
        results[f"{key}_s"] = statistics.median(w for w, _c in runs)
        results[f"{key}_cpu_s"] = statistics.median(c for _w, c in runs)
    results["imports_floor_modules"] = modules.count(",") + 1


def _measure_big(args: argparse.Namespace, results: dict[str, object]) -> None:
    big = args.workdir / f"big-{int(args.big_log_mb)}mb-{args.big_scalars}"
    _generate(big, log_bytes=int(args.big_log_mb * 1e6), scalars=args.big_scalars, checkpoints=args.checkpoints)
    cache = args.workdir / "xdg-big"
    _child(status_cmd(big), cache)  # page cache
    wall, cpu, rss, out = _medians(status_cmd(big), max(1, args.repeat // 2), cache, fresh=True)
    results.update(big_log_bytes=(big / "training.log").stat().st_size,
                   big_scalars=sum(s["count"] for s in json.loads(out)["series"].values()),
                   big_status_s=wall, big_status_cpu_s=cpu, big_status_rss_mb=rss / 1e6)
    wall, cpu, rss, _out = _medians(status_cmd(big), max(1, args.repeat // 2), cache, fresh=False)
    results.update(big_warm_s=wall, big_warm_cpu_s=cpu, big_warm_rss_mb=rss / 1e6)


def _rows(args: argparse.Namespace, r: dict[str, object]) -> list[tuple[str, str, str]]:
    def f(key: str, unit: str = "s") -> str:
        v = r[key]
        assert isinstance(v, float)
        return f"{v * 1000:.1f} ms" if unit == "ms" else f"{v:.3f} s"

    rows = [
        ("generated run", (f"{r['log_bytes'] / 1e6:.0f} MB log, {r['status_scalars']} scalars "
                          f"({r['event_bytes'] / 1e6:.1f} MB events), {args.checkpoints} checkpoints"), ""),
        ("sdxl-tui status --json (cold process, median)", f"{f('status_median_s')}  CPU {f('status_cpu_median_s')}",
         "<= 0.25 s"),
        ("  warm: the second call, run unchanged (median)", f"{f('warm_median_s')}  CPU {f('warm_cpu_median_s')}",
         "<= 0.1 s"),
        ("  floor: python -c pass (median)", f"{f('python_start_s')}  CPU {f('python_start_cpu_s')}", ""),
        (f"  floor: start + the {r['imports_floor_modules']} modules a warm status imports, alone",
         f"{f('imports_floor_s')}  CPU {f('imports_floor_cpu_s')}", ""),
        ("  floor: a warm status between those runs (median)", f"{f('floor_warm_s')}  CPU {f('floor_warm_cpu_s')}",
         ""),
    ]
    if "tbparse_median_s" in r:
        rows.append(("tbparse SummaryReader(...).scalars (same files)",
                     f"{f('tbparse_median_s')}  CPU {f('tbparse_cpu_median_s')}", ""))
        rows.append(("speed-up over tbparse (cold status)", f"{r['ratio']:.1f}x  CPU {r['ratio_cpu']:.1f}x", ">= 15x"))
    upb = f"{f('upb_median_s')}  CPU {f('upb_cpu_median_s')}"
    rows.append((f"protobuf Event loop ({r['upb_backend']}, no CRC)", upb, ""))
    if "frame_cold_s" in r:
        rows.append(("dashboard first full frame, cold (median)", f"{f('frame_cold_s')}  CPU {f('frame_cold_cpu_s')}",
                     "<= 0.6 s"))
        rows.append(("  warm (cache primed)", f"{f('frame_warm_s')}  CPU {f('frame_warm_cpu_s')}", ""))
    rows.append(("refresh after 100 new steps (median)",
                 f"{r['refresh_100_steps_median_ms']:.1f} ms  CPU {r['refresh_100_steps_cpu_median_ms']:.1f} ms",
                 "<= 5 ms"))
    rows.append(("first refresh in-process (no NVML/psutil)", f("first_refresh_s"), ""))
    rows.append(("status peak RSS on that run", f"{r['status_rss_mb']:.0f} MB", ""))
    if "big_status_rss_mb" in r:
        name = f"{r['big_log_bytes'] / 1e9:.2f} GB log, {r['big_scalars']} scalars"
        rows.append((f"{name}: open (status, cold)", f"{f('big_status_s')}  CPU {f('big_status_cpu_s')}", "<= 0.8 s"))
        rows.append(("  its peak RSS (cold / warm)", f"{r['big_status_rss_mb']:.0f} / {r['big_warm_rss_mb']:.0f} MB",
                     "<= 120 MB"))
        rows.append(("  warm open", f"{f('big_warm_s')}  CPU {f('big_warm_cpu_s')}", ""))
    return rows


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
    ap.add_argument("--skip-rss", action="store_true", help="leave out the 1 GB / 1M-scalar run")
    ap.add_argument("--skip-tbparse", action="store_true")
    ap.add_argument("--skip-frame", action="store_true", help="leave out the dashboard's first frame")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    ap.add_argument("--markdown", action="store_true", help="also print the table in Markdown (README)")
    args = ap.parse_args(argv)
    if args.quick:
        args.log_mb, args.scalars, args.big_log_mb, args.big_scalars = 15, 10_000, 50, 50_000

    args.workdir.mkdir(parents=True, exist_ok=True)
    run = args.workdir / f"run-{int(args.log_mb)}mb-{args.scalars}-{args.checkpoints}"
    gen = _generate(run, log_bytes=int(args.log_mb * 1e6), scalars=args.scalars, checkpoints=args.checkpoints)
    load_before = _load()
    results: dict[str, object] = {
        "machine": f"{_versions()}; {load_before}",
        "run": str(run),
        "log_bytes": (run / "training.log").stat().st_size,
        "event_bytes": _event_file(run).stat().st_size,
        "generate_seconds": round(gen, 2),
    }
    _child_env(args.workdir)
    _measure(args, run, results)
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
        _measure_big(args, results)
    results["load_after"] = _load()
    rows = _rows(args, results)
    width = max(len(r[0]) for r in rows)
    print(f"sdxl-tui reader benchmark ({results['machine']})")
    print("  wall times depend on the machine's load; CPU = user+sys of the process and its children")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>30}  {target}")
    print(f"  (after: {results['load_after']})")
    if args.markdown:
        print(f"\n{results['machine']}; after: {results['load_after']}\n")
        print("| figure | wall, CPU | target |\n|---|---|---|")
        for name, value, target in rows:
            print(f"| {name.strip()} | {' '.join(value.split())} | {target} |")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
