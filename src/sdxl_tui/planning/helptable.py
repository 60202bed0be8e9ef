"""The option table of the user's own sd-scripts checkout, from its ``--help``.

Why: a user's checkout may be older or newer than the packaged dump of v0.10.1's parsers
(``data/sd_scripts_options.json``, :mod:`sdxl_tui.formats.optiontable`), and ``--help`` is the
one way to list its options without importing sd-scripts into this process. The table is cached
per checkout, keyed by the mtimes of the files that build the parser
(``train_network.py:setup_parser``, ``library/train_util.py:add_*_arguments``...).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdxl_tui.formats.optiontable import (
    SDXL_SCRIPT,
    OptionSpec,
    OptionTable,
    load_packaged_table,
    spec_from_json,
    table_to_json,
)

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


def _split_invocation(line: str) -> str:
    """The part of an argparse help row before the help text (two spaces or more)."""
    m = re.match(r"^\s{1,8}(-.*?)(?:\s{2,}|$)", line)
    return m.group(1) if m else ""


def table_from_help(text: str, script: str, *, reference: OptionTable | None = None) -> OptionTable:
    """Build an option table from argparse ``--help`` output.

    Help text does not carry types, so types and defaults are borrowed from ``reference`` where
    the dest matches; choices come from ``{a,b}`` metavars.

    Raises:
        ValueError: the text lists no options (not an argparse help page).
    """
    specs: list[OptionSpec] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        if not raw.startswith(" ") or not raw.strip().startswith("-"):
            continue
        spec = _row_spec(raw, reference)
        if spec is None or spec.dest in seen:
            continue
        seen.add(spec.dest)
        specs.append(spec)
    if not specs:
        raise ValueError("no options found in the help text")
    return OptionTable(script=os.path.basename(script), options=tuple(specs), source="help")


def _row_spec(raw: str, reference: OptionTable | None) -> OptionSpec | None:
    """The option one help row lists (None for a row that lists none, or only ``-h``)."""
    inv = _split_invocation(raw)
    if not inv:
        return None
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
        return None
    long = next((s for s in strings if s.startswith("--")), strings[0])
    dest = long.lstrip("-").replace("-", "_")
    if not metavar:
        return OptionSpec(tuple(strings), dest, "flag", None, None, None, False)
    ref = reference.by_dest(dest) if reference else None
    nargs: str | None = None
    if metavar.startswith("[") and metavar.endswith("...]"):
        nargs = "*"
    elif metavar.endswith("...]"):
        nargs = "+"
    elif metavar.startswith("[") and metavar.endswith("]"):
        nargs = "?"
    return OptionSpec(
        tuple(strings),
        dest,
        "value",
        ref.type if ref else "str",
        _choices(metavar, ref.type if ref else "str"),
        nargs if nargs else (ref.nargs if ref else None),
        ref.default if ref else None,
    )


def _choices(metavar: str, typ: str | None) -> tuple[Any, ...] | None:
    """The choices of a ``{a,b}`` metavar, converted to the option's type."""
    cm = re.match(r"^\[?\{(.*?)\}", metavar)
    if not cm:
        return None
    conv: list[Any] = []
    for c in cm.group(1).split(","):
        if c == "None":
            conv.append(None)
            continue
        try:
            conv.append(int(c) if typ == "int" else float(c) if typ == "float" else c)
        except ValueError:
            conv.append(c)
    return tuple(conv)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sdxl-tui/options`` (``~/.cache/sdxl-tui/options``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sdxl-tui" / "options"


def _cache_key(checkout: Path, script: str, exe: str) -> str:
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
    cache_file: Path | None = None
    if use_cache:
        key = _cache_key(Path(sd_scripts_dir), base, " ".join(command))
        cache_file = Path(cache_dir or default_cache_dir()) / f"{key}.json"
        cached = _read_cache(cache_file, base)
        if cached is not None:
            return cached, None
    help_text, why = _run_help(command, base, sd_scripts_dir, timeout)
    if help_text is None:
        return fallback, f"{why}; using the {fallback.source}"
    try:
        table = table_from_help(help_text, base, reference=fallback)
    except ValueError:
        return fallback, f"{base} --help printed no option list; using the {fallback.source}"
    table = OptionTable(table.script, table.options, True, f"{base} --help in {sd_scripts_dir}")
    if cache_file is not None:
        _write_cache(cache_file, table)
    return table, None


def _run_help(
    command: list[str], base: str, sd_scripts_dir: str | os.PathLike[str], timeout: float
) -> tuple[str | None, str]:
    """(the ``--help`` text, "") or (None, why it could not be had)."""
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
        return None, f"could not run {base} --help ({exc})"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"{base} --help exited {proc.returncode} ({tail[0]})"
    return proc.stdout, ""


def _read_cache(cache_file: Path, base: str) -> OptionTable | None:
    try:
        data = json.loads(cache_file.read_text("utf-8"))
        return OptionTable(
            script=base,
            options=tuple(spec_from_json(o) for o in data["options"]),
            allow_abbrev=True,
            source=str(data.get("source", "help")) + " (cached)",
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache_file: Path, table: OptionTable) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table_to_json(table)), "utf-8")
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a cache that cannot be written only costs time
