"""`sdxl-tui compare RUN RUN... [--align step|epoch|wall] [--png FILE]`: what differs, and the
loss curves on one axis. Module-level imports stay light."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = """\
Compare two or more runs (sdxl_v1 and its reruns, an SD1.5 trial and an SDXL run...):

  configuration  only the settings whose values differ: what each run reports (its log,
                 command line, launch config) and the ss_* metadata of its newest checkpoint
                 (ids, times, hashes and progress keys left out); "-" where a run has none.
  loss           every run's loss/current (else loss/average) on one axis, aligned by
                 optimizer step, by epoch (step / that run's steps per epoch: runs with other
                 batch sizes line up) or by wall-clock minutes from its first point, with
                 TensorBoard's debiased EMA smoothing (--smoothing, TensorBoard's slider).

A RUN may also be a folder of runs: every run below it is compared; an optimisation folder
adds each of its trials that is a run (its own training.log or logs/)."""

EPILOG = """\
examples:
  sdxl-tui compare luca/sdxl_v1 luca/sdxl_v2
  sdxl-tui compare luca --align epoch --png /tmp/luca_loss.png
  sdxl-tui compare luca/optimization_overnight/trial_0025 luca/sdxl_v1 --align wall

exit status:
  0  compared;  2  a path is missing or holds no run, fewer than two runs, bad usage"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="RUN", help="run directories (or folders of runs)")
    parser.add_argument("--align", choices=("step", "epoch", "wall"), default="step",
                        help="x axis: optimizer step (default), epoch, or wall-clock minutes from each run's start")
    parser.add_argument("--smoothing", type=float, default=0.6, metavar="S",
                        help="TensorBoard smoothing, 0 (raw) to 0.999 (default 0.6)")
    parser.add_argument("--png", metavar="FILE", help="also write the chart as a PNG")
    parser.add_argument("--width", type=int, default=72, help="text chart width in cells (default 72)")


def _err(message: str) -> int:
    print(f"sdxl-tui compare: {message}", file=sys.stderr)
    return 2


def _expand(paths: list[str]) -> list[str] | str:
    from sdxl_tui.sources.discovery import NO_RUN_MESSAGE, discover, trial_runs

    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            return f"no such directory: {p}"
        found = discover(p)
        runs = [r.path for r in found.all if r.kind == "run"]
        runs += [t for r in found.all if r.kind == "trials" for t in trial_runs(r.path)]
        if not runs:
            return f"{p}: {NO_RUN_MESSAGE}"
        out.extend(r for r in runs if r not in out)
    return out


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.smoothing < 1.0:
        return _err("--smoothing must be in [0, 1)")
    paths = _expand(args.paths)
    if isinstance(paths, str):
        return _err(paths)
    if len(paths) < 2:
        return _err(f"need at least two runs to compare (found {len(paths)})")
    from sdxl_tui.report.compare import aligned_curves, config_diff, load_runs, png_chart, text_chart

    runs = load_runs(paths)
    out = [f"{len(runs)} runs: " + ", ".join(f"{r.name} ({r.snapshot.state.value})" for r in runs), ""]
    diff = config_diff(runs)
    if diff:
        width = max(len(k) for k, _ in diff)
        cols = [max(len(r.name), *(len(v[i]) for _, v in diff)) for i, r in enumerate(runs)]
        out.append("configuration (only what differs)")
        out.append(" " * (width + 2) + "  ".join(r.name.ljust(c) for r, c in zip(runs, cols, strict=True)))
        for key, values in diff:
            out.append(f"{key:<{width}}  " + "  ".join(v.ljust(c) for v, c in zip(values, cols, strict=True)).rstrip())
    else:
        out.append("configuration: identical")
    curves = aligned_curves(runs, align=args.align, smoothing=args.smoothing)
    out.append("")
    out.append(f"loss by {args.align} (smoothing {args.smoothing:g})")
    sys.stdout.write("\n".join(out) + "\n" + text_chart(curves, align=args.align, width=max(20, args.width)))
    if args.png:
        png = png_chart(curves, align=args.align, smoothing=args.smoothing)
        if png is None:
            return _err("no loss points to draw; no PNG written")
        try:
            with open(args.png, "wb") as f:
                f.write(png)
        except OSError as exc:
            return _err(f"cannot write {args.png}: {exc.strerror or exc}")
        print(f"chart: {args.png}")
    return 0
