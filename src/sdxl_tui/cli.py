"""Command line entry point: ``sdxl-tui [DIR]`` opens the dashboard; subcommands are its
headless twins.

Each subcommand lives in ``sdxl_tui.commands.<name>`` with two functions,
``add_arguments(parser)`` and ``run(args) -> int``, and is imported only when used, so
``sdxl-tui status`` never pays for importing Textual.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import typing
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
  variables, the TOML file (--config FILE, else $SDXL_TUI_CONFIG, else
  $XDG_CONFIG_HOME/sdxl-tui/config.toml, else ~/.config/sdxl-tui/config.toml), then
  built-in defaults. `sdxl-tui tui --help`
  lists every setting with its variable.

exit status:
  0 success; 1 warnings (check) or a failed action; 2 bad usage or errors found;
  see each command's --help.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for mistyped options (Python 3.11 has none)."""

    def error(self, message: str) -> typing.NoReturn:
        match = re.match(r"unrecognized arguments: (.*)", message)
        if match:
            import difflib  # only for a "did you mean": not on every start

            known = [o for action in self._actions for o in action.option_strings]
            hints = []
            for word in match.group(1).split():
                if word.startswith("-"):
                    close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
                    if close:
                        hints.append(f"{word}: did you mean {close[0]}?")
            if hints:
                message += "\n  " + "\n  ".join(hints)
        super().error(message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; every subcommand module contributes its own options.

    With ``only``, just that subcommand's module is imported and its options added (the
    others are listed by name and help alone), so ``sdxl-tui status`` does not pay for
    importing eight command modules before it starts reading.
    """
    parser = _Parser(
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
    sub = parser.add_subparsers(dest="_command", metavar="COMMAND", parser_class=_Parser)
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


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return typing.cast(argparse.ArgumentParser, action.choices[name])
    return parser


def _not_a_command(word: str) -> str | None:
    """Why ``sdxl-tui WORD`` is refused, or None when WORD may be a run directory.

    ``sdxl-tui stauts DIR`` would otherwise open a dashboard on ``./stauts`` (and complain
    about DIR); a missing bare name that looks like a word is far more often a mistyped
    command than a directory to wait for (that one can be written ``./NAME``).
    """
    if word.startswith(("-", ".", "~")) or os.path.exists(word) or os.sep in word:
        return None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", word):
        return None
    import difflib  # only for a "did you mean": not on every start

    close = difflib.get_close_matches(word, list(COMMANDS), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ", nor a directory."
    lines = [f"sdxl-tui: '{word}' is not a command{hint}"]
    if not close:
        lines.append("  commands: " + ", ".join(COMMANDS))
    lines.append(f"  to watch a directory that does not exist yet, write it as a path: sdxl-tui ./{word}")
    lines.append("  sdxl-tui --help lists every command")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw and raw[0] not in COMMANDS:
        refusal = _not_a_command(raw[0])
        if refusal:
            print(refusal, file=sys.stderr)
            return 2
    args_list = _normalise(raw)
    first = args_list[0]
    parser = build_parser(first if first in COMMANDS else None)
    args, extra = parser.parse_known_args(args_list)
    if extra:  # the sub-command's own parser names its options in the "did you mean"
        _command_parser(parser, args._command).error("unrecognized arguments: " + " ".join(extra))
    module = importlib.import_module(args._module)
    global _quick_exit
    _quick_exit = bool(getattr(module, "QUICK_EXIT", False))
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sdxl-tui status | head`
        return 0


#: Set by ``main`` from the command module's ``QUICK_EXIT``: the process may end without
#: the interpreter's teardown (see ``entry``).
_quick_exit = False


def entry() -> typing.NoReturn:
    """The ``sdxl-tui`` program (console script and ``python -m sdxl_tui``): ``main``, then exit.

    A one-shot read-only command (``status``: ``QUICK_EXIT`` in its module) has written and
    flushed everything and holds nothing that needs closing, so its process ends with
    ``os._exit`` instead of tearing down the interpreter: freeing every module and object one
    by one is about a tenth of a warm ``sdxl-tui status`` (10-20 ms).
    """
    code = main()
    if _quick_exit:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (BrokenPipeError, ValueError):  # `| head` closed the pipe: nothing more to say
            pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()

