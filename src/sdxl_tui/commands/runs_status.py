"""`sdxl-tui status ROOT` on a folder of runs: one row per run and per optimisation folder.

The ROOT branch of :mod:`sdxl_tui.commands.status`: discovery decides first (one run, runs
below, or neither), so a folder that holds several runs is never read as one. Reading is the
runs view's (:class:`~sdxl_tui.sources.runs.RunsWatcher`), refreshed once.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["format_runs", "optimisation_json", "route", "run_root", "runs_json"]


def optimisation_json(opt: Any) -> dict[str, Any]:
    """``{"dir", "count", "best": {"trial", "params", "score", ...}, "convergence_alert", ...}``."""
    best = opt.best
    return {
        "dir": opt.path,
        "count": len(opt.trials),
        "state": opt.state,
        "score_field": opt.score_field,
        "score_source": opt.score_source,
        "minimize": opt.pick.minimize if opt.pick is not None else None,
        "best": None if best is None else {
            "trial": best.name, "path": best.path, "params": dict(best.params), "score": opt.score(best),
            "checkpoint": best.checkpoint,
        },
        "best_so_far": [{"trial": n, "at": at, "score": v} for n, at, v in opt.best_so_far],
        "trials": [
            {"trial": t.name, "state": t.state, "score": opt.score(t), "metrics": dict(t.metrics),
             "sources": dict(t.sources), "params": dict(t.params), "checkpoint": t.checkpoint,
             "finished_at": t.finished_at}
            for t in opt.trials
        ],
        "convergence_alert": opt.convergence_alert,
        "problem": opt.problem,
    }


def runs_json(view: Any) -> dict[str, Any]:
    """The ``status ROOT --json`` object (schema version 1, "runs" kind)."""
    opts = [optimisation_json(o) for o in view.optimisations]
    d = view.discovery
    return {
        "schema": 1,
        "root": view.root,
        "root_is_run": d.is_run,
        "taken_at": view.taken_at,
        "runs": [r.to_json() for r in view.rows if r.kind != "trials"],
        "trials": opts[0] if opts else None,
        "optimisations": opts,
        "truncated": d.truncated,
    }


def format_runs(view: Any) -> str:
    """The text table (live runs first), then each optimisation folder's best and verdict."""
    from sdxl_tui.report.runs import HEADERS, row_cells

    rows = [row_cells(r, view.taken_at, view.root) for r in view.rows]
    out = [f"{len(view.rows)} run(s) under {view.root}" + (" (search truncated)" if view.discovery.truncated else "")]
    if view.discovery.is_run:
        out[0] += " (the folder is a run itself: `sdxl-tui status --single` for its full status)"
    widths = [max(len(h), *(len(c[i]) for c in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    widths[-1] = 0
    out.append("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip())
    for cells in rows:
        alert = cells[-1] if len(cells[-1]) <= 70 else cells[-1][:69] + "…"
        out.append("  ".join(c.ljust(w) for c, w in zip((*cells[:-1], alert), widths, strict=True)).rstrip())
    for opt in view.optimisations:
        out.append("")
        out.append(f"{opt.name}: {len(opt.trials)} trials, {opt.state}")
        if opt.best is not None:
            out.append(f"  best {opt.best.name}: {opt.score_field} = {opt.score(opt.best):g} "
                       f"(from {opt.score_source}; {'lowest' if opt.pick.minimize else 'highest'} wins)")
            out.append(f"  next: sdxl-tui plan --from {opt.best.path}")
        if len(opt.best_so_far) > 1:
            out.append("  best so far: " + " -> ".join(f"{v:g} ({n})" for n, _, v in opt.best_so_far))
        if opt.convergence_alert:
            out.append(f"  {opt.convergence_alert}")
        if opt.problem:
            out.append(f"  {opt.problem}")
    return "\n".join(out) + "\n"


def run_root(root: str, *, as_json: bool, settings: Any = None, gpu: bool = True) -> int:
    """Print the runs under ``root`` once; 0."""
    from sdxl_tui.sources.runs import LazyGpu, RunsWatcher

    source = LazyGpu() if gpu else None
    try:
        view = RunsWatcher(root, settings=settings, gpu=source).refresh()
    finally:
        if source is not None:
            source.close()
    if as_json:
        json.dump(runs_json(view), sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_runs(view))
    sys.stdout.flush()
    return 0


def has_content(path: str) -> bool:
    """Anything but dot files in ``path`` (an empty folder is a run still waiting to start)."""
    try:
        with os.scandir(path) as it:
            return any(not e.name.startswith(".") for e in it)
    except OSError:
        return False


def route(run_dir: str, args: Any) -> int | tuple[str, ...]:
    """Decide what ``status DIR`` shows: an exit status when DIR was handled here (a folder of
    runs, or nothing to show), else the runs below DIR (empty: DIR is one plain run)."""
    from sdxl_tui.sources.discovery import NO_RUN_MESSAGE, discover

    found = discover(run_dir)
    if found.is_run:
        below = tuple(r.path for r in found.runs + found.trials)
        if below:  # a run with runs inside: only its own logs/, never theirs
            args.logs_dir = os.path.join(run_dir, "logs")
        return below
    if found.holds_runs or found.is_trials:
        from sdxl_tui.config import ConfigError, load_settings

        try:
            settings = load_settings(config_path=args.config)
        except ConfigError as exc:
            print(f"sdxl-tui status: {exc}", file=sys.stderr)
            return 2
        if getattr(args, "no_cache", False):
            settings = settings.replace(cache__enabled=False)
        if getattr(args, "watch", False):
            from sdxl_tui.commands import status_watch

            problem = status_watch.check_arguments(args)
            if problem:
                print(f"sdxl-tui status: {problem}", file=sys.stderr)
                return 2
            return status_watch.watch_root(args, run_dir, settings, format_runs)
        return run_root(run_dir, as_json=bool(args.json), settings=settings, gpu=not getattr(args, "no_gpu", False))
    if has_content(run_dir):
        print(f"sdxl-tui status: {NO_RUN_MESSAGE} (in {args.dir}); "
              "for a run whose log is elsewhere give --log FILE (or --single)", file=sys.stderr)
        return 2
    return ()  # an empty folder: a run that has not started yet
