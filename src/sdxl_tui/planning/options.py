"""sd-scripts' option tables, and an argv resolver that behaves like their argparse parser.

Why: sd-scripts only reveals a bad option when the process starts (``error: unrecognized
arguments``), and its ``--config_file`` silently keeps misspelt keys
(``library/train_util.py:read_config_from_file``). Checking a launch before it starts needs the real
option list of the real script: by default the packaged dump of v0.10.1's parsers
(``data/sd_scripts_options.json``); when the user's checkout is known, the list its own ``--help``
prints (:func:`sdxl_tui.planning.helptable.load_table_from_checkout`, re-exported here).

The resolver follows CPython's argparse for what sd-scripts uses: unique prefixes are
accepted (``allow_abbrev``), an ambiguous prefix is an error, ``--opt=value``, flags
(``store_true``), single values, ``nargs="*"`` lists, ``choices`` and the ``int``, ``float``
and ``int_or_float`` types. Instead of stopping at the first error it collects them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdxl_tui.formats.optiontable import OptionSpec, OptionTable, convert
from sdxl_tui.planning.helptable import default_cache_dir, load_table_from_checkout, table_from_help

#: argparse's test for "this dash-token is a negative number, not an option".
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


@dataclass(frozen=True, slots=True)
class OptionProblem:
    """Something argparse would reject (error) or a surprise it would accept (warning/note)."""

    severity: str  # "error" | "warning" | "note"
    code: str
    message: str
    fix: str
    option: str | None = None


@dataclass(frozen=True)
class ParsedArgs:
    """What an argv resolves to: explicitly given values by dest, and the problems found."""

    values: Mapping[str, Any]  # dest -> converted value, only options present in argv
    given_as: Mapping[str, str]  # dest -> option string as typed (last occurrence)
    problems: tuple[OptionProblem, ...] = ()
    extras: tuple[str, ...] = ()  # tokens argparse would call "unrecognized arguments"


# ------------------------------------------------------------------------ resolving


def _looks_like_option(token: str, table: OptionTable) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    return not _NEGATIVE_NUMBER.match(token)


def resolve_argv(argv: Sequence[str], table: OptionTable) -> ParsedArgs:
    """Resolve trainer options (no script, no prefix) as argparse would, collecting problems."""
    return _Resolver(argv, table).run()


class _Resolver:
    """One pass over an argv: the values by dest, what each was typed as, the problems."""

    def __init__(self, argv: Sequence[str], table: OptionTable) -> None:
        self.argv = argv
        self.table = table
        self.values: dict[str, Any] = {}
        self.given: dict[str, str] = {}
        self.problems: list[OptionProblem] = []
        self.extras: list[str] = []

    def add(self, problem: OptionProblem) -> None:
        self.problems.append(problem)

    def run(self) -> ParsedArgs:
        argv, n = self.argv, len(self.argv)
        i = 0
        only_positionals = False
        while i < n:
            token = argv[i]
            i += 1
            if only_positionals or not _looks_like_option(token, self.table):
                self.extras.append(token)
                self.add(
                    OptionProblem(
                        "error",
                        "stray-argument",
                        f"{token!r} belongs to no option; argparse reports it as an unrecognized argument",
                        "remove it, or put it after the option it belongs to",
                        None,
                    )
                )
            elif token == "--":
                only_positionals = True
            elif token in ("-h", "--help"):
                self.add(
                    OptionProblem("note", "help", f"{token} prints help and exits without training", "remove it", token)
                )
            else:
                i = self.option(token, i)
        return ParsedArgs(
            values=self.values, given_as=self.given, problems=tuple(self.problems), extras=tuple(self.extras)
        )

    def option(self, token: str, i: int) -> int:
        """Resolve the option ``token`` (its values start at ``argv[i]``); the index after it."""
        argv, n = self.argv, len(self.argv)
        name, eq, inline = token.partition("=")
        spec, ambiguous = self.table.match(name)
        # the tokens this option would swallow (for messages about unknown options)
        following: list[str] = []
        j = i
        while j < n and not _looks_like_option(argv[j], self.table):
            following.append(argv[j])
            j += 1
        if spec is None:
            self.no_such_option(token, ambiguous, following)
            return j
        self.spelling(name, spec)
        self.given[spec.dest] = name
        if spec.kind == "flag":
            if eq:
                self.add(
                    OptionProblem(
                        "error",
                        "flag-with-value",
                        f"{spec.name} takes no value (`ignored explicit argument {inline!r}`)",
                        f"write just {spec.name}",
                        spec.name,
                    )
                )
            self.values[spec.dest] = True
            return i
        raw_values: list[str]
        if eq:
            raw_values = [inline]
        elif spec.nargs in ("*", "+"):
            raw_values = following
            i = j
        else:
            raw_values = following[:1]
            i += len(raw_values)
        if not raw_values and spec.nargs not in ("*", "?"):
            self.add(
                OptionProblem(
                    "error",
                    "missing-value",
                    f"{spec.name}: expected {'at least ' if spec.nargs == '+' else ''}one argument",
                    f"give {spec.name} a value",
                    spec.name,
                )
            )
            return i
        self.convert(spec, raw_values)
        return i

    def spelling(self, name: str, spec: OptionSpec) -> None:
        """Notes on an abbreviated option and a repeated one."""
        if name != spec.name and name not in spec.options:
            self.add(
                OptionProblem(
                    "note",
                    "abbreviated-option",
                    f"{name} is accepted as an abbreviation of {spec.name}",
                    f"write {spec.name} in full so a future option cannot make it ambiguous",
                    name,
                )
            )
        if spec.dest in self.values:
            self.add(
                OptionProblem(
                    "warning",
                    "repeated-option",
                    f"{spec.name} is given more than once; the last value wins",
                    f"keep one {spec.name}",
                    spec.name,
                )
            )

    def convert(self, spec: OptionSpec, raw_values: list[str]) -> None:
        """Type and choices of each value; the option's value is set only when all pass."""
        converted: list[Any] = []
        for text in raw_values:
            try:
                value = convert(spec, text)
            except ValueError:
                self.add(
                    OptionProblem(
                        "error",
                        "bad-value",
                        f"{spec.name}: invalid {spec.type} value: {text!r}",
                        f"give {spec.name} a {spec.type} value",
                        spec.name,
                    )
                )
                return
            if spec.choices is not None and value not in spec.choices:
                shown = ", ".join(repr(c) for c in spec.choices if c is not None)
                self.add(
                    OptionProblem(
                        "error",
                        "bad-value",
                        f"{spec.name}: invalid choice: {value!r} (choose from {shown})",
                        f"use one of {shown}",
                        spec.name,
                    )
                )
                return
            converted.append(value)
        if spec.nargs in ("*", "+"):
            self.values[spec.dest] = converted
        elif converted:
            self.values[spec.dest] = converted[0]
        else:
            self.values[spec.dest] = None

    def no_such_option(self, token: str, ambiguous: tuple[str, ...], following: list[str]) -> None:
        """An ambiguous or unknown option: a problem, and it and its values are extras."""
        name = token.split("=", 1)[0]
        self.extras.extend([token, *following])
        if ambiguous:
            self.add(
                OptionProblem(
                    "error",
                    "ambiguous-option",
                    f"{name}: ambiguous option; could match {', '.join(ambiguous)}",
                    f"spell the option out in full, e.g. {ambiguous[0]}",
                    name,
                )
            )
            return
        shown = " ".join([token, *following])
        target, why = self.table.suggest(name)
        parts = [f"did you mean {target}?"] if target else []
        if why:
            parts.append(why)
        fix = " ".join(parts) or "remove it (see the script's --help for the real options)"
        self.add(
            OptionProblem(
                "error",
                "unknown-option",
                f"{name}: no such option in {self.table.script}; the trainer exits at once with "
                f"`error: unrecognized arguments: {shown}`",
                fix,
                name,
            )
        )


def check_config_value(spec: OptionSpec, value: Any) -> str | None:
    """Why a ``--config_file`` value has the wrong shape for ``spec`` (None if fine).

    Why: config values bypass argparse's type conversion and ``choices``
    (``library/train_util.py:read_config_from_file``), so a quoted number arrives as a string and
    fails deep inside training.
    """
    if spec.kind == "flag":
        return None if isinstance(value, bool) else f"expected true/false, got {value!r}"
    if spec.dest == "text_encoder_lr" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None  # sd-scripts accepts a plain number here ("toml backward compatibility")
    if spec.nargs in ("*", "+"):
        if not isinstance(value, list):
            return f"expected a list (e.g. [{value!r}]), got {type(value).__name__}"
        items: Iterable[Any] = value
    else:
        if isinstance(value, list):
            return f"expected one value, got a list {value!r}"
        items = [value]
    for item in items:
        if spec.type == "int" and (not isinstance(item, int) or isinstance(item, bool)):
            return f"expected an integer, got {item!r}"
        if spec.type == "float" and (not isinstance(item, (int, float)) or isinstance(item, bool)):
            return f"expected a number, got {item!r}"
        if spec.type == "int_or_float" and (not isinstance(item, (int, float)) or isinstance(item, bool)):
            return f"expected a number, got {item!r}"
        if spec.type in ("str", "Path") and not isinstance(item, str):
            return f"expected a string, got {item!r}"
        if spec.choices is not None and item not in spec.choices:
            shown = ", ".join(repr(c) for c in spec.choices if c is not None)
            return f"{item!r} is not one of {shown} (the config file skips this check)"
    return None


__all__ = [
    "OptionProblem",
    "ParsedArgs",
    "check_config_value",
    "default_cache_dir",
    "load_table_from_checkout",
    "resolve_argv",
    "table_from_help",
]
