"""sd-scripts' option tables, and an argv resolver that behaves like their argparse parser.

Why: sd-scripts only reveals a bad option when the process starts (``error: unrecognized
arguments``), and its ``--config_file`` silently keeps misspelt keys (REF §5.2). Checking a
launch before it starts needs the real option list of the real script: by default the
packaged dump of v0.10.1's parsers (``data/sd_scripts_options.json``); when the user's
checkout is known, the list its own ``--help`` prints (:func:`load_table_from_checkout`).

The resolver follows CPython's argparse for what sd-scripts uses: unique prefixes are
accepted (``allow_abbrev``), an ambiguous prefix is an error, ``--opt=value``, flags
(``store_true``), single values, ``nargs="*"`` lists, ``choices`` and the ``int``, ``float``
and ``int_or_float`` types. Instead of stopping at the first error it collects them all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.formats.optiontable import (
    SDXL_SCRIPT,
    OptionSpec,
    OptionTable,
    convert,
    load_packaged_table,
    spec_from_json,
    table_to_json,
)

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


# ------------------------------------------------------------------ help-text parsing

_SECTION = re.compile(r"^(options|optional arguments|[\w ]+ arguments?)\s*:\s*$", re.IGNORECASE)


def _split_invocation(line: str) -> str:
    """The part of an argparse help row before the help text (two spaces or more)."""
    m = re.match(r"^\s{1,8}(-.*?)(?:\s{2,}|$)", line)
    return m.group(1) if m else ""


def table_from_help(text: str, script: str, *, reference: OptionTable | None = None) -> OptionTable:
    """Build an option table from argparse ``--help`` output.

    Why: a user's checkout may be older or newer than the packaged dump, and ``--help`` is the
    one way to list its options without importing sd-scripts into this process. Help text does
    not carry types, so types and defaults are borrowed from ``reference`` where the dest
    matches; choices come from ``{a,b}`` metavars.

    Raises:
        ValueError: the text lists no options (not an argparse help page).
    """
    specs: list[OptionSpec] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        if not raw.startswith(" ") or not raw.strip().startswith("-"):
            continue
        inv = _split_invocation(raw)
        if not inv:
            continue
        strings: list[str] = []
        metavar = ""
        for part in inv.split(", "):
            bits = part.strip().split(" ", 1)
            if not bits[0].startswith("-"):
                continue
            strings.append(bits[0])
            if len(bits) > 1:
                metavar = bits[1].strip()
        strings = [s for s in strings if s not in ("-h", "--help")]
        if not strings:
            continue
        long = next((s for s in strings if s.startswith("--")), strings[0])
        dest = long.lstrip("-").replace("-", "_")
        if dest in seen:
            continue
        seen.add(dest)
        ref = reference.by_dest(dest) if reference else None
        if not metavar:
            specs.append(OptionSpec(tuple(strings), dest, "flag", None, None, None, False))
            continue
        nargs: str | None = None
        if metavar.startswith("[") and metavar.endswith("...]"):
            nargs = "*"
        elif metavar.endswith("...]"):
            nargs = "+"
        elif metavar.startswith("[") and metavar.endswith("]"):
            nargs = "?"
        choices: tuple[Any, ...] | None = None
        cm = re.match(r"^\[?\{(.*?)\}", metavar)
        if cm:
            raw_choices = cm.group(1).split(",")
            typ = ref.type if ref else "str"
            conv: list[Any] = []
            for c in raw_choices:
                if c == "None":
                    conv.append(None)
                    continue
                try:
                    conv.append(int(c) if typ == "int" else float(c) if typ == "float" else c)
                except ValueError:
                    conv.append(c)
            choices = tuple(conv)
        specs.append(
            OptionSpec(
                tuple(strings),
                dest,
                "value",
                ref.type if ref else "str",
                choices,
                nargs if nargs else (ref.nargs if ref else None),
                ref.default if ref else None,
            )
        )
    if not specs:
        raise ValueError("no options found in the help text")
    return OptionTable(script=os.path.basename(script), options=tuple(specs), source="help")


#: files whose change can change a trainer's option list (the cache key includes their mtimes)
_PARSER_FILES = (
    "train_network.py",
    "sdxl_train_network.py",
    "library/train_util.py",
    "library/sdxl_train_util.py",
    "library/config_util.py",
    "library/deepspeed_utils.py",
    "library/custom_train_functions.py",
    "library/sai_model_spec.py",
    "library/utils.py",
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sdxl-tui/options`` (``~/.cache/sdxl-tui/options``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sdxl-tui" / "options"


def _cache_key(checkout: Path, script: str, exe: str) -> str:
    import hashlib

    parts = [str(checkout.resolve()), script, exe]
    for rel in (script, *_PARSER_FILES):
        try:
            st = (checkout / rel).stat()
        except OSError:
            continue
        parts.append(f"{rel}:{st.st_mtime_ns}:{st.st_size}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def load_table_from_checkout(
    sd_scripts_dir: str | os.PathLike[str],
    script: str = SDXL_SCRIPT,
    *,
    python: str | Sequence[str] | None = None,
    timeout: float = 180.0,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> tuple[OptionTable, str | None]:
    """The option table of the user's own checkout, from ``<python> <script> --help``.

    ``--help`` builds the parser and exits before any model is loaded (it still imports torch,
    hence the generous timeout). On any failure the packaged table is returned with a note
    saying why, so a check never stops for lack of a checkout.

    Returns:
        (table, note): note is None when the checkout's own list was used.
    """
    base = os.path.basename(script)
    try:
        fallback = load_packaged_table(base)
    except KeyError:
        fallback = load_packaged_table(SDXL_SCRIPT)
    path = Path(sd_scripts_dir) / base
    if not path.is_file():
        return fallback, f"{path} not found; using the {fallback.source}"
    command = [python] if isinstance(python, str) else list(python or [sys.executable])
    exe = " ".join(command)
    cache_file: Path | None = None
    if use_cache:
        cache_file = Path(cache_dir or default_cache_dir()) / f"{_cache_key(Path(sd_scripts_dir), base, exe)}.json"
        try:
            data = json.loads(cache_file.read_text("utf-8"))
            cached = OptionTable(
                script=base,
                options=tuple(spec_from_json(o) for o in data["options"]),
                allow_abbrev=True,
                source=str(data.get("source", "help")) + " (cached)",
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass
        else:
            return cached, None
    try:
        proc = subprocess.run(
            [*command, base, "--help"],
            cwd=str(sd_scripts_dir),
            capture_output=True,
            check=False,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fallback, f"could not run {base} --help ({exc}); using the {fallback.source}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return fallback, (
            f"{base} --help exited {proc.returncode} ({tail[0]}); using the {fallback.source}"
        )
    try:
        table = table_from_help(proc.stdout, base, reference=fallback)
    except ValueError:
        return fallback, f"{base} --help printed no option list; using the {fallback.source}"
    table = OptionTable(table.script, table.options, True, f"{base} --help in {sd_scripts_dir}")
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table_to_json(table)), "utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return table, None


# ------------------------------------------------------------------------ resolving


def _looks_like_option(token: str, table: OptionTable) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    return not _NEGATIVE_NUMBER.match(token)


def resolve_argv(argv: Sequence[str], table: OptionTable) -> ParsedArgs:
    """Resolve trainer options (no script, no prefix) as argparse would, collecting problems."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    problems: list[OptionProblem] = []
    extras: list[str] = []
    i = 0
    n = len(argv)
    only_positionals = False

    def unknown(token: str, following: list[str]) -> None:
        name = token.split("=", 1)[0]
        shown = " ".join([token, *following])
        target, why = table.suggest(name)
        parts = [f"did you mean {target}?"] if target else []
        if why:
            parts.append(why)
        fix = " ".join(parts) or "remove it (see the script's --help for the real options)"
        problems.append(
            OptionProblem(
                "error",
                "unknown-option",
                f"{name}: no such option in {table.script}; the trainer exits at once with "
                f"`error: unrecognized arguments: {shown}`",
                fix,
                name,
            )
        )

    while i < n:
        token = argv[i]
        i += 1
        if only_positionals or not _looks_like_option(token, table):
            extras.append(token)
            problems.append(
                OptionProblem(
                    "error",
                    "stray-argument",
                    f"{token!r} belongs to no option; argparse reports it as an unrecognized argument",
                    "remove it, or put it after the option it belongs to",
                    None,
                )
            )
            continue
        if token == "--":
            only_positionals = True
            continue
        if token in ("-h", "--help"):
            problems.append(
                OptionProblem("note", "help", f"{token} prints help and exits without training", "remove it", token)
            )
            continue
        name, eq, inline = token.partition("=")
        spec, ambiguous = table.match(name)
        # the tokens this option would swallow (for messages about unknown options)
        following: list[str] = []
        j = i
        while j < n and not _looks_like_option(argv[j], table):
            following.append(argv[j])
            j += 1
        if spec is None:
            if ambiguous:
                problems.append(
                    OptionProblem(
                        "error",
                        "ambiguous-option",
                        f"{name}: ambiguous option; could match {', '.join(ambiguous)}",
                        f"spell the option out in full, e.g. {ambiguous[0]}",
                        name,
                    )
                )
            else:
                unknown(token, following)
            extras.extend([token, *following])
            i = j
            continue
        if name != spec.name and name not in spec.options:
            problems.append(
                OptionProblem(
                    "note",
                    "abbreviated-option",
                    f"{name} is accepted as an abbreviation of {spec.name}",
                    f"write {spec.name} in full so a future option cannot make it ambiguous",
                    name,
                )
            )
        if spec.dest in values:
            problems.append(
                OptionProblem(
                    "warning",
                    "repeated-option",
                    f"{spec.name} is given more than once; the last value wins",
                    f"keep one {spec.name}",
                    spec.name,
                )
            )
        given[spec.dest] = name
        if spec.kind == "flag":
            if eq:
                problems.append(
                    OptionProblem(
                        "error",
                        "flag-with-value",
                        f"{spec.name} takes no value (`ignored explicit argument {inline!r}`)",
                        f"write just {spec.name}",
                        spec.name,
                    )
                )
            values[spec.dest] = True
            continue
        raw_values: list[str]
        if eq:
            raw_values = [inline]
        elif spec.nargs in ("*", "+"):
            raw_values = following
            i = j
        elif spec.nargs == "?":
            raw_values = following[:1]
            i += len(raw_values)
        else:
            raw_values = following[:1]
            i += len(raw_values)
        if not raw_values and spec.nargs not in ("*", "?"):
            problems.append(
                OptionProblem(
                    "error",
                    "missing-value",
                    f"{spec.name}: expected {'at least ' if spec.nargs == '+' else ''}one argument",
                    f"give {spec.name} a value",
                    spec.name,
                )
            )
            continue
        converted: list[Any] = []
        for text in raw_values:
            try:
                value = convert(spec, text)
            except ValueError:
                problems.append(
                    OptionProblem(
                        "error",
                        "bad-value",
                        f"{spec.name}: invalid {spec.type} value: {text!r}",
                        f"give {spec.name} a {spec.type} value",
                        spec.name,
                    )
                )
                break
            if spec.choices is not None and value not in spec.choices:
                shown = ", ".join(repr(c) for c in spec.choices if c is not None)
                problems.append(
                    OptionProblem(
                        "error",
                        "bad-value",
                        f"{spec.name}: invalid choice: {value!r} (choose from {shown})",
                        f"use one of {shown}",
                        spec.name,
                    )
                )
                break
            converted.append(value)
        else:
            if spec.nargs in ("*", "+"):
                values[spec.dest] = converted
            elif converted:
                values[spec.dest] = converted[0]
            else:
                values[spec.dest] = None
    return ParsedArgs(values=values, given_as=given, problems=tuple(problems), extras=tuple(extras))


def check_config_value(spec: OptionSpec, value: Any) -> str | None:
    """Why a ``--config_file`` value has the wrong shape for ``spec`` (None if fine).

    Why: config values bypass argparse's type conversion and ``choices`` (REF §5.2), so a
    quoted number arrives as a string and fails deep inside training.
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
