"""Command line entry point: ``sdxl-tui [DIR]`` opens the dashboard; subcommands are its
headless twins.

Each subcommand lives in ``sdxl_tui.commands.<name>`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``, and is imported only when used, so
``sdxl-tui status`` never pays for importing Textual.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sdxl_tui import __version__

#: name -> (one-line help, module). Order is the order in ``--help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "tui": ("open the live dashboard on a run directory (the default)", "sdxl_tui.commands.tui"),
    "demo": (
        "start a simulated sd-scripts run in a temporary directory and open the dashboard on it",
        "sdxl_tui.commands.demo",
    ),
    "status": ("print what a run directory says, as text or --json", "sdxl_tui.commands.status"),
    "start": ("preflight-check and launch a training run, detached", "sdxl_tui.commands.start"),
    "kill": ("stop the training process tree safely", "sdxl_tui.commands.kill"),
    "eval": ("evaluate a checkpoint (configured template or built-in sampler)", "sdxl_tui.commands.eval"),
    "queue": ("the queue for the night: runs one after another, here or on Slurm", "sdxl_tui.commands.queue"),
    "report": (
        "write the morning report of a run: one self-contained HTML file, or Markdown",
        "sdxl_tui.commands.report",
    ),
    "export": ("every TensorBoard scalar of runs or folders of runs as one .csv/.parquet table",
               "sdxl_tui.commands.export"),
    "compare": ("compare runs: what differs in their configuration, their loss curves overlaid",
                "sdxl_tui.commands.compare"),
    "check": ("check a launch against the real trainer's options and rules", "sdxl_tui.commands.check"),
    "plan": ("turn the SD1.5 best trial into a checked SDXL launch", "sdxl_tui.commands.plan"),
    "simulate": (
        "run a simulated sd-scripts trainer that writes the real formats",
        "sdxl_tui.commands.simulate",
    ),
}

_EPILOG = """\
Run `sdxl-tui COMMAND --help` for a command's options.

configuration:
  Settings come from, highest first: command-line options, SDXL_TUI_* environment
  variables, the TOML file (--config FILE, else $XDG_CONFIG_HOME/sdxl-tui/config.toml,
  else ~/.config/sdxl-tui/config.toml), then built-in defaults. `sdxl-tui tui --help`
  lists every setting with its variable.

exit status:
  0 success; 1 warnings (check) or a failed action; 2 bad usage or errors found;
  see each command's --help.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; every subcommand module contributes its own options.

    With ``only``, just that subcommand's module is imported and its options added (the
    others are listed by name and help alone), so ``sdxl-tui status`` does not pay for
    importing eight command modules before it starts reading.
    """
    parser = argparse.ArgumentParser(
        prog="sdxl-tui",
        description=(
            "A terminal dashboard for kohya-ss sd-scripts SDXL LoRA training runs. "
            "`sdxl-tui DIR` watches the run directory DIR live; the subcommands below do "
            "the same things headless, for scripts."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sdxl-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, module_name) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        cmd_parser = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd_parser)
        cmd_parser.set_defaults(_module=module_name)
    return parser


def _normalise(argv: list[str]) -> list[str]:
    """``sdxl-tui DIR [opts]`` and bare ``sdxl-tui`` mean ``sdxl-tui tui …``."""
    if not argv:
        return ["tui"]
    first = argv[0]
    if first in COMMANDS or first in ("-h", "--help", "--version"):
        return argv
    return ["tui", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _normalise(list(sys.argv[1:] if argv is None else argv))
    first = args_list[0]
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(args_list)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sdxl-tui status | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
