"""Command-line parsing for the simulator: the real trainer's options plus ``--sim-*`` ones.

The trainer's parser is rebuilt from the option table that ships with sdxl-tui
(:mod:`sdxl_tui.formats.optiontable`, extracted from sd-scripts v0.10.1), so a launch line for
``sdxl_train_network.py`` parses here exactly as it would there: same names, types, choices,
``allow_abbrev`` prefixes and the same ``usage: ... error: unrecognized arguments: ...``
message with exit status 2. Simulation options are split off first so they never leak into
that usage text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.optiontable import SDXL_SCRIPT, int_or_float, load_packaged_table

FAULTS = ("oom", "nan", "hang", "crash")


@dataclass(frozen=True)
class SimOptions:
    """The simulator's own knobs (``--sim-*``); everything else is the trainer's."""

    step_seconds: float = 0.5
    startup_seconds: float = 1.0
    batches_per_epoch: int | None = None
    fault: str | None = None
    fault_step: int = 1
    hang_seconds: float = 0.0  # 0 = forever (a real hang); >0 ends the hang (in-process tests)
    real_size: bool = False
    seed: int = 42
    hostname: str | None = None


_TYPES: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "Path": str,
    "int_or_float": int_or_float,
}


def build_trainer_parser(script: str = SDXL_SCRIPT) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` equivalent to the real trainer's (prog, options, abbreviations)."""
    table = load_packaged_table(script)
    parser = argparse.ArgumentParser(prog=table.script, allow_abbrev=table.allow_abbrev)
    for spec in table.options:
        kw: dict[str, Any] = {"dest": spec.dest, "default": spec.default}
        if spec.kind == "flag":
            parser.add_argument(*spec.options, action="store_true", **kw)
            continue
        convert = _TYPES.get(spec.type or "str", str)
        kw["type"] = convert
        if spec.nargs:
            kw["nargs"] = spec.nargs
        if spec.choices is not None:
            kw["choices"] = [c if c is None or convert not in (int, float) else convert(c)
                             for c in spec.choices]
        parser.add_argument(*spec.options, **kw)
    return parser


def build_sim_parser() -> argparse.ArgumentParser:
    """Parser for the ``--sim-*`` options only (exact names, no abbreviations)."""
    p = argparse.ArgumentParser(prog="sdxl-tui simulate", add_help=False, allow_abbrev=False)
    p.add_argument("--sim-step-seconds", type=float, default=SimOptions.step_seconds)
    p.add_argument("--sim-startup-seconds", type=float, default=SimOptions.startup_seconds)
    p.add_argument("--sim-batches-per-epoch", type=int, default=None)
    p.add_argument("--sim-fault", choices=FAULTS, default=None)
    p.add_argument("--sim-fault-step", type=int, default=SimOptions.fault_step)
    p.add_argument("--sim-hang-seconds", type=float, default=0.0)
    p.add_argument("--sim-real-size", action="store_true")
    p.add_argument("--sim-seed", type=int, default=SimOptions.seed)
    p.add_argument("--sim-hostname", default=None)
    return p


def split_args(argv: list[str]) -> tuple[SimOptions, list[str]]:
    """Separate ``--sim-*`` options from the trainer's; raises SystemExit(2) on bad sim values."""
    ns, rest = build_sim_parser().parse_known_args(argv)
    sim = SimOptions(
        step_seconds=max(0.0, ns.sim_step_seconds),
        startup_seconds=max(0.0, ns.sim_startup_seconds),
        batches_per_epoch=ns.sim_batches_per_epoch,
        fault=ns.sim_fault,
        fault_step=max(0, ns.sim_fault_step),
        hang_seconds=max(0.0, ns.sim_hang_seconds),
        real_size=ns.sim_real_size,
        seed=ns.sim_seed,
        hostname=ns.sim_hostname,
    )
    return sim, rest


def parse_trainer_args(argv: list[str]) -> argparse.Namespace:
    """Parse like the real trainer (prints usage + error and exits 2 on unknown options).

    ``--config_file`` is honoured the sd-scripts way: the TOML is flattened one level and the
    command line wins over it.
    """
    parser = build_trainer_parser()
    args = parser.parse_args(argv)
    if args.config_file:
        args = _apply_config_file(parser, args, argv)
    return args


def _apply_config_file(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]
) -> argparse.Namespace:
    path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
    try:
        data = toml.load(path)
    except OSError:
        return args
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    ns = argparse.Namespace(**flat)
    return parser.parse_args(argv, namespace=ns)
