"""`sdxl-tui eval RUN CHECKPOINT --versus TRIAL_OR_CKPT --sd15-base PATH`: the ``--versus`` branch
of ``sdxl-tui eval`` (see :mod:`sdxl_tui.control.evaluate.versus`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["run_versus_command"]


def run_versus_command(args: argparse.Namespace, run_dir: str, checkpoint: str, settings: Any,
                       plan_kw: dict[str, Any]) -> int:
    """Plan both sides, print them (``--dry-run`` stops there), run them, print the grid."""
    from sdxl_tui.control.evaluate.plan import EvalError
    from sdxl_tui.control.evaluate.versus import plan_versus, run_versus

    kw = {k: v for k, v in plan_kw.items() if k != "resolution"}  # each side has its own
    try:
        left, right, grid = plan_versus(run_dir, checkpoint, args.versus, sd15_base=args.sd15_base,
                                        settings=settings, dry_run=args.dry_run, **kw)
    except EvalError as exc:
        print(f"sdxl-tui eval: error: {exc}", file=sys.stderr)
        return 2
    for side in (left, right):
        for warning in side.plan.warnings:
            print(f"sdxl-tui eval: warning: {warning}", file=sys.stderr)
        print(f"{side.label}: {side.plan.command_line}", flush=True)
    if args.dry_run:
        print(f"grid: {grid}")
        return 0
    result = run_versus((left, right), grid)
    for side, code in zip(result.sides, result.exit_codes, strict=True):
        state = "done" if code == 0 else f"failed (exit {code}; log {side.plan.log_path})"
        print(f"{side.label}: {state}; {side.plan.output_dir}")
    print(result.grid, flush=True)
    if args.show:
        from sdxl_tui.render.show import print_image

        print_image(result.grid, halfblock=args.halfblock)
    return 0 if result.exit_codes == (0, 0) else 1
