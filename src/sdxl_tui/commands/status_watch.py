"""`sdxl-tui status DIR --watch`: the status text again every few seconds, for a plain terminal.

What the dashboard shows, for places it cannot go: ``nohup``, a pipe, ``ssh host`` without
``-t``, a log file, or users of ``watch``. One incremental :class:`RunReader` is kept for the
whole watch (each refresh reads only what was appended), NVML is opened once, and Ctrl+C ends
it cleanly (exit 0). On a terminal each snapshot replaces the previous one (like ``watch``);
otherwise snapshots follow each other, each under a time stamp line.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

CLEAR = "\x1b[H\x1b[2J"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch", action="store_true",
        help="print the status (of a folder of runs: its runs table) again every --interval seconds until Ctrl+C (text)"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, metavar="S", help="with --watch: seconds between snapshots (default 5)"
    )
    parser.add_argument("--count", type=int, metavar="N", help=argparse.SUPPRESS)  # tests: stop after N


def check_arguments(args: argparse.Namespace) -> str | None:
    """Why the watch options cannot be used together with the rest, or None."""
    if not args.watch:
        return None
    if args.json:
        return "--watch prints text; for JSON, run `sdxl-tui status DIR --json` in your own loop"
    if not args.interval > 0:
        return f"--interval must be a positive number of seconds, not {args.interval:g}"
    return None


def watch(args: argparse.Namespace, run_dir: str, format_status: Callable[[object], str]) -> int:
    """Follow ``run_dir`` until Ctrl+C (or ``--count`` snapshots); 0 when ended by the user."""
    # `status` turns the cyclic collector off for its one short snapshot; a watch runs for
    # hours, so it needs it back (or cycles from every refresh would pile up)
    gc.enable()
    from sdxl_tui.config import ConfigError, load_settings
    from sdxl_tui.sources.gpu import GpuMonitor
    from sdxl_tui.sources.rundir import RunReader

    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        print(f"sdxl-tui status: {exc}", file=sys.stderr)
        return 2
    monitor = None if args.no_gpu else GpuMonitor()
    reader = RunReader(
        run_dir,
        gpu=monitor.sample if monitor is not None else None,
        procs=False if args.no_procs else None,
        log_path=args.log,
        logs_dir=args.logs_dir,
        settings=settings,
        launch_file=getattr(args, "launch", None),
        log_tail_bytes=256 << 10,
    )
    try:
        return follow(args, os.path.basename(run_dir), lambda: format_status(reader.refresh()))
    finally:
        reader.close()
        if monitor is not None:
            monitor.close()


def watch_root(args: argparse.Namespace, root: str, settings: Any, format_runs: Callable[[Any], str]) -> int:
    """Follow a folder of runs: ``format_runs`` of its view every ``--interval`` seconds (one watcher)."""
    gc.enable()
    from sdxl_tui.sources.runs import LazyGpu, RunsWatcher

    source = None if args.no_gpu else LazyGpu()
    watcher = RunsWatcher(root, settings=settings, gpu=source)
    try:
        return follow(args, os.path.basename(root.rstrip("/")) or root, lambda: format_runs(watcher.refresh()))
    finally:
        if source is not None:
            source.close()


def follow(args: argparse.Namespace, name: str, render: Callable[[], str]) -> int:
    """Print ``render()`` every ``--interval`` seconds until Ctrl+C (or ``--count`` times); 0."""
    tty = sys.stdout.isatty()
    shown = 0
    try:
        while args.count is None or shown < args.count:
            text = render()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            head = f"every {args.interval:g}s: sdxl-tui status {name}  {stamp}  (Ctrl+C to stop)"
            sys.stdout.write((CLEAR if tty else ("\n" if shown else "")) + f"--- {head}\n" + text)
            sys.stdout.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
    return 0
