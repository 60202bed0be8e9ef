"""`sdxl-tui demo`: the dashboard on a simulated run that starts by itself.

The simulator is a separate, detached process writing the real formats into a temporary
directory, exactly as the real trainer would; the dashboard does not know it is a demo.
Because the demo's simulator is ours, quitting the demo ends it and removes the directory
(unless --keep); a real run is never touched by quitting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

DESCRIPTION = """\
Start a simulated kohya-ss sd-scripts SDXL LoRA run (the "luca" run: 12 epochs, a checkpoint
every 2 epochs, sample images, TensorBoard scalars) in a temporary directory and open the
dashboard on it. No GPU, model or dataset needed; it takes a few minutes to finish.

Every key works: evaluation (e), the comparison grid (g) and the images (i) use a simulated
evaluator (python -m sdxl_tui.sim.evaluator: the built-in evaluator's outputs, with drawn
pictures) unless eval.command or eval.base_model is configured.

Quitting the demo stops the simulated trainer and deletes the temporary directory;
with --keep, both the directory and the running simulator are left as they are. With --dir,
the directory is kept; a directory that already holds files is refused unless --force
(which empties it first), so two runs never mix in one training.log."""

EPILOG = """\
examples:
  sdxl-tui demo
  sdxl-tui demo --fault oom --fault-step 150     # watch an out-of-memory crash and its alert
  sdxl-tui demo --step-seconds 0.1 --keep        # faster; keep the run directory afterwards
  sdxl-tui demo --runs                           # the runs view on a folder like the card's luca/:
                                                 # the optimisation (5 trials, converged), sdxl_v1
                                                 # finished, sdxl_v2 failed (OOM), sdxl_v3 live

All dashboard options of `sdxl-tui tui` (--config, --theme, --readonly) apply; see
`sdxl-tui tui --help` for the keys and settings."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", metavar="DIR", help="use DIR instead of a temporary directory (kept)")
    parser.add_argument("--force", action="store_true", help="with --dir: empty a directory that holds files first")
    parser.add_argument(
        "--keep", action="store_true", help="keep the directory (and do not stop the simulator) on quit"
    )
    parser.add_argument(
        "--step-seconds", type=float, metavar="S", help="seconds per simulated step (default: the demo's pace)"
    )
    parser.add_argument("--fault", choices=("oom", "nan", "hang", "crash"), help="inject a failure")
    parser.add_argument(
        "--fault-step", type=int, default=150, metavar="N", help="step of the injected failure (default 150)"
    )
    parser.add_argument("--runs", action="store_true",
                        help="a folder of runs instead of one run: the runs view (see sdxl-tui tui --help)")
    parser.add_argument("--readonly", action="store_true", default=None, help="remove start, kill, stop and eval")
    parser.add_argument("--config", metavar="FILE", help="settings TOML")
    parser.add_argument("--theme", metavar="T", help="Textual theme")
    parser.add_argument("--force-polling", action="store_true", default=None, help="never use inotify")


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop our own simulator (by its pid, it is in its own session)."""
    pid = proc.pid
    if proc.poll() is not None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - a simulator that will not wait is killed below
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def with_simulated_evaluator(settings: Any) -> Any:
    """The demo's settings: unless an evaluation is configured (eval.command or
    eval.base_model), e, g and i use the simulated evaluator, which draws its images."""
    if settings.eval.command or settings.eval.base_model:
        return settings
    from sdxl_tui.sim.evaluator import template

    return settings.replace(eval__command=tuple(template()), eval__num_samples=4)


def _check_dir(run_dir: str, *, force: bool) -> str | None:
    """Refuse a file or a non-empty directory (unless ``force``); None if fine."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        return f"not a directory: {run_dir}"
    if not os.path.isdir(run_dir):
        return None
    try:
        names = os.listdir(run_dir)
    except OSError as exc:
        return f"cannot read {run_dir}: {exc.strerror or exc}"
    if names and not force:
        return (
            f"{run_dir} already holds {len(names)} file(s) (a previous run?); a demo there would mix two runs.\n"
            "  use an empty or new directory, or --force to empty this one first"
        )
    return None


def _empty_dir(run_dir: str) -> None:
    if not os.path.isdir(run_dir):
        return
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.commands.tui import cli_overrides
    from sdxl_tui.config import ConfigError, load_settings
    from sdxl_tui.sim import demo_args, start_simulated

    try:
        settings = load_settings(cli_overrides(args), args.config)
    except ConfigError as exc:
        print(f"sdxl-tui: {exc}", file=sys.stderr)
        return 2
    settings = with_simulated_evaluator(settings)
    if args.runs:
        return _run_demo_folder(args, settings)
    temp_root = None
    if args.dir:
        run_dir = os.path.abspath(os.path.expanduser(args.dir))
        problem = _check_dir(run_dir, force=args.force)
        if problem:
            print(f"sdxl-tui demo: {problem}", file=sys.stderr)
            return 2
    from sdxl_tui.commands.tui import no_terminal_message

    refusal = no_terminal_message(None)
    if refusal:
        alone = "\n  sdxl-tui simulate DIR                 a simulated run without the dashboard"
        print(refusal + alone, file=sys.stderr)
        return 2
    if args.dir:
        _empty_dir(run_dir)
    else:
        temp_root = tempfile.mkdtemp(prefix="sdxl-tui-demo-")
        run_dir = os.path.join(temp_root, "luca_sdxl_v1")
    sim_args = demo_args(run_dir)
    if args.step_seconds is not None:
        sim_args += ["--sim-step-seconds", str(args.step_seconds)]
    if args.fault:
        sim_args += ["--sim-fault", args.fault, "--sim-fault-step", str(args.fault_step)]
    proc = start_simulated(run_dir, sim_args)
    keep = args.keep or temp_root is None
    notice = f"demo: a simulated run in {run_dir} (pid {proc.pid}). " + (
        "It is kept when you quit." if keep else "Quitting ends it and deletes the directory."
    )
    try:
        from sdxl_tui.commands.tui import build_app

        app = build_app(settings, run_dir, notice=notice)
        result = app.run()
    finally:
        if not args.keep:
            _end(proc)
        if temp_root is not None and not args.keep:
            time.sleep(0.1)
            shutil.rmtree(temp_root, ignore_errors=True)
    if keep:
        print(
            f"sdxl-tui demo: the run is in {run_dir}" + (f" (simulator pid {proc.pid})" if proc.poll() is None else "")
        )
    return int(result or 0)


def _run_demo_folder(args: argparse.Namespace, settings: Any) -> int:
    """``sdxl-tui demo --runs``: build the demo folder, start its live run, open the runs view."""
    from sdxl_tui.commands.runs_tui import run_runs_view
    from sdxl_tui.commands.tui import build_app
    from sdxl_tui.sim import start_simulated
    from sdxl_tui.sim.folders import build_demo_folder, live_args

    temp_root = None if args.dir else tempfile.mkdtemp(prefix="sdxl-tui-demo-runs-")
    root = os.path.abspath(args.dir or temp_root or ".")
    print(f"sdxl-tui demo: writing a folder of simulated runs in {root}…", flush=True)
    luca = build_demo_folder(root)
    step = args.step_seconds if args.step_seconds is not None else 0.5
    proc = start_simulated(luca / "sdxl_v3", live_args(luca, step))
    try:
        return run_runs_view(str(luca), settings, lambda s, d: build_app(s, d))
    finally:
        if not args.keep:
            _end(proc)
        if temp_root is not None and not args.keep:
            shutil.rmtree(temp_root, ignore_errors=True)
        else:
            print(f"sdxl-tui demo: the runs are in {luca}")
