"""Entry points shared by the subprocess command and the in-process API."""

from __future__ import annotations

import contextlib
import io
import os

from sdxl_tui.sim.console import SimConsole
from sdxl_tui.sim.options import parse_trainer_args, split_args
from sdxl_tui.sim.ranks import Ranks
from sdxl_tui.sim.trainer import Hooks, SimulatedTrainer


def run_argv(argv: list[str], console: SimConsole, *, in_process: bool, hooks: Hooks | None = None) -> int:
    """Parse like the real trainer and run; returns the exit status.

    In-process, argparse's usage/error text is captured and written to the log (as stderr),
    and its ``SystemExit`` becomes the return value. In a subprocess argparse writes to the
    real stderr and exits 2 itself.
    """
    if in_process:
        buf = io.StringIO()
        try:
            with contextlib.redirect_stderr(buf):
                sim, rest = split_args(argv)
                args = parse_trainer_args(rest, sim.script)
        except SystemExit as exc:
            console.err(buf.getvalue())
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    else:
        sim, rest = split_args(argv)
        args = parse_trainer_args(rest, sim.script)
    if not args.output_dir:
        console.err("sdxl-tui simulate: --output_dir is required (it is what process discovery looks for)\n")
        return 2
    if hooks is None and not in_process:
        hooks = Hooks(fork_workers=True, ranks=Ranks.from_env(os.environ))  # a rank of torchrun/accelerate
    trainer = SimulatedTrainer(args, sim, console, hooks)
    return trainer.run()
