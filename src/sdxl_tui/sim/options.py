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
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.optiontable import SDXL_SCRIPT, int_or_float, load_packaged_table
from sdxl_tui.formats.simargs import SimOptions, split_args

__all__ = ["SimOptions", "build_trainer_parser", "parse_trainer_args", "split_args"]

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


def parse_trainer_args(argv: list[str], script: str = SDXL_SCRIPT) -> argparse.Namespace:
    """Parse like the real trainer (prints usage + error and exits 2 on unknown options).

    ``--config_file`` is honoured the sd-scripts way: the TOML is flattened one level and the
    command line wins over it.
    """
    parser = build_trainer_parser(script)
    args = parser.parse_args(argv)
    if args.config_file:
        args = _apply_config_file(parser, args, argv)
    if script != SDXL_SCRIPT:
        # SDXL-only options (cache_text_encoder_outputs, ...) do not exist for train_network.py:
        # their defaults are what that trainer does, and the simulator reads them all
        for spec in load_packaged_table(SDXL_SCRIPT).options:
            if not hasattr(args, spec.dest):
                setattr(args, spec.dest, spec.default)
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
