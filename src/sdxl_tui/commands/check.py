"""`sdxl-tui check`: check a training launch against the real trainer's options and rules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdxl_tui.planning.check import CheckReport
    from sdxl_tui.planning.checkctx import GpuArg
    from sdxl_tui.planning.environment import Environment

DESCRIPTION = """\
Check an sd-scripts LoRA launch before it runs, and say how to fix each problem.

What it takes:
  sdxl-tui check RUN_DIR | sdxl-tui.toml     a launch config (or the run folder holding one)
  sdxl-tui check CONFIG.toml                 an sd-scripts --config_file TOML (and its dataset TOML)
  sdxl-tui check DATASET.toml                a dataset TOML alone (relative folders: from --cwd,
                                             else --sd-scripts, else the TOML's folder)
  sdxl-tui check -- python train_network.py --dataset_config ds.toml ...
                                             a raw command line, exactly as you would run it

It resolves the options the way sd-scripts' argparse does (unique prefixes, --opt=value,
choices, types), reads the base model's safetensors header (without loading it) to match it
to the script, validates the dataset TOML against sd-scripts' schema and looks at the image
and caption files, asks the trainer's Python which modules it can import, and estimates
steps, time, VRAM and disk. Options come from sd-scripts v0.10.1's own parsers, or from your
checkout's --help when it is known (launch config sd_scripts_dir, or --sd-scripts DIR).
"""

_EPILOG = """\
severities:
  error    the run would fail (at start, or hours later)
  warning  it would run, but not as meant
  note     worth knowing; nothing to fix

{rules}

exit status:
  0  clean (notes only)
  1  warnings, no errors
  2  errors (or bad usage: unreadable input)
"""


def __getattr__(name: str) -> str:
    """``EPILOG``, built on first use from the table of rules (keeps this module light to import)."""
    if name == "EPILOG":
        from sdxl_tui.planning.rules import rules_help

        return _EPILOG.format(rules=rules_help())
    raise AttributeError(name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sd-scripts", metavar="DIR", dest="sd_scripts",
                        help="your sd-scripts checkout: use its own option list (from its --help) and run there")
    parser.add_argument("--script", default=None, metavar="NAME",
                        help="trainer for an sd-scripts config TOML (default: sdxl_train_network.py)")
    parser.add_argument("--cwd", metavar="DIR", help="working directory for relative paths of a raw command line "
                        "(default: --sd-scripts DIR, else the current directory)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-env", action="store_true",
                        help="do not run the trainer's Python to see which modules it can import")
    parser.add_argument("--no-gpu", action="store_true", help="do not ask NVML for the GPU's free memory")
    parser.add_argument("--gpu-free", type=float, metavar="GB",
                        help="free GPU memory to compare the VRAM estimate with (instead of NVML)")
    parser.add_argument("target", nargs="?", metavar="TARGET",
                        help="launch config, run folder, or sd-scripts config TOML; or `-- COMMAND...`")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _gpu_arg(args: argparse.Namespace) -> GpuArg:
    if args.gpu_free is not None:
        from sdxl_tui.model import GpuSample, GpuStatus

        total = int(args.gpu_free * 1024**3)
        return GpuStatus(available=True, gpus=(GpuSample(index=0, name="GPU (--gpu-free)", memory_total=total,
                                                          memory_used=0),))
    return False if args.no_gpu else None


def _toml_kind(path: Path) -> str:
    """"launch" (sdxl-tui.toml), "dataset" (a dataset TOML) or "config" (an sd-scripts config)."""
    from sdxl_tui.formats import toml

    try:
        data = toml.load(path)
    except (OSError, toml.TOMLDecodeError):
        return "config"
    if isinstance(data.get("launch"), dict):
        return "launch"
    if isinstance(data.get("datasets"), list):
        return "dataset"
    return "config"


def _reparse_trailing(args: argparse.Namespace, extra: list[str]) -> bool:
    """Options written after TARGET (``check x.toml --json``): parse them as ours if they all are."""
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    try:
        ns, unknown = p.parse_known_args(extra)
    except SystemExit:
        return False
    if unknown or ns.target is not None or ns.command:
        return False
    for key, value in vars(ns).items():
        if key in ("target", "command"):
            continue
        if value not in (None, False):
            setattr(args, key, value)
    return True


def _check_file(
    first: Path, args: argparse.Namespace, environment: Environment | None, gpu: GpuArg
) -> CheckReport | int:
    """Check a run folder's launch config, a launch config, a dataset TOML or an sd-scripts
    config TOML; an exit status when there is nothing to check."""
    from sdxl_tui.formats.launch_config import DEFAULT_NAME, LaunchConfigError, load_launch_config
    from sdxl_tui.planning.check import check_config_file, check_dataset_config, check_launch

    path = first
    if path.is_dir():
        path = path / DEFAULT_NAME
        if not path.is_file():
            print(f"sdxl-tui check: {first} holds no {DEFAULT_NAME}; give the launch config or "
                  "the sd-scripts config TOML", file=sys.stderr)
            return 2
    kind = _toml_kind(path)
    if kind == "dataset":
        sdxl = (args.script or "sdxl_train_network.py").startswith("sdxl")
        return check_dataset_config(path, sdxl=sdxl, cwd=args.cwd or args.sd_scripts)
    if kind == "launch":
        try:
            launch = load_launch_config(path)
        except LaunchConfigError as exc:
            print(f"sdxl-tui check: {exc}", file=sys.stderr)
            return 2
        return check_launch(launch, sd_scripts_dir=args.sd_scripts, environment=environment, gpu=gpu)
    return check_config_file(path, script=args.script or "sdxl_train_network.py", environment=environment, gpu=gpu,
                             sd_scripts_dir=args.sd_scripts, cwd=args.cwd)


def _single_target_problem(first: Path, tokens: list[str], *, raw: bool) -> str | None:
    """Why a lone TARGET cannot be checked (a file that is no TOML, a missing path, an unreadable
    folder), before it is mistaken for a one-word command line."""
    if raw:
        return None
    if first.is_dir():
        if not os.access(first, os.R_OK | os.X_OK):
            return f"cannot read {first}: permission denied"
        return None
    if len(tokens) > 1:
        return None
    if first.exists() and first.suffix.lower() != ".toml":
        return (f"{first} is not a launch config: give a run folder, an sdxl-tui.toml, an sd-scripts config "
                "TOML, or a command line after `--`")
    if not first.exists() and (first.suffix or os.sep in str(first)):
        return f"no such file or directory: {first}"
    if first.exists() and not os.access(first, os.R_OK):
        return f"cannot read {first}: permission denied"
    return None


def run(args: argparse.Namespace) -> int:
    tokens = ([args.target] if args.target else []) + list(args.command or [])
    if tokens and tokens[0] == "--":
        tokens = tokens[1:]
    if not tokens:
        print("sdxl-tui check: give a launch config, a run folder, an sd-scripts config TOML, "
              "or `-- COMMAND...` (see --help)", file=sys.stderr)
        return 2

    from sdxl_tui.planning.check import check_argv, format_report
    from sdxl_tui.planning.environment import UnknownEnvironment

    first = Path(os.path.expanduser(tokens[0]))
    file_mode = first.exists() and (first.is_dir() or first.suffix.lower() == ".toml")
    problem = _single_target_problem(first, tokens, raw=bool(args.command) and args.target == "--")
    if problem:
        print(f"sdxl-tui check: {problem}", file=sys.stderr)
        return 2
    if file_mode and len(tokens) > 1 and not _reparse_trailing(args, tokens[1:]):
        print(f"sdxl-tui check: unexpected arguments after {tokens[0]}: {' '.join(tokens[1:])} "
              "(a raw command line goes after `--`)", file=sys.stderr)
        return 2
    environment = UnknownEnvironment("not inspected (--no-env)") if args.no_env else None
    gpu = _gpu_arg(args)
    try:
        if file_mode:
            report = _check_file(first, args, environment, gpu)
            if isinstance(report, int):
                return report
        else:
            argv = tokens
            if args.script and not any(t.endswith(".py") for t in argv):
                argv = [args.script, *argv]
            report = check_argv(argv, environment=environment, gpu=gpu, sd_scripts_dir=args.sd_scripts,
                                cwd=args.cwd)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"sdxl-tui check: cannot read {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(format_report(report))
    return report.exit_code
