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

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

SDXL_SCRIPT = "sdxl_train_network.py"
SD1_SCRIPT = "train_network.py"
KNOWN_SCRIPTS = (SDXL_SCRIPT, SD1_SCRIPT)

#: argparse's test for "this dash-token is a negative number, not an option".
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

#: Real options that reduce memory (REF §6), quoted by the fixes below.
MEMORY_REDUCERS = (
    "--gradient_checkpointing, --cache_latents (--cache_latents_to_disk), "
    "--cache_text_encoder_outputs with --network_train_unet_only (SDXL), "
    "--fp8_base / --fp8_base_unet, --full_bf16 / --full_fp16, --xformers / --sdpa / --mem_eff_attn, "
    "and a smaller batch_size in the dataset TOML"
)

_TE_LR_12 = (
    "--text_encoder_lr1/--text_encoder_lr2 appear in docs/sdxl_train_network.md but do not "
    "exist; with networks.lora one --text_encoder_lr value is used for both text encoders"
)

#: Options people reach for that sd-scripts does not have: the message says what to do instead.
KNOWN_CONFUSIONS: Mapping[str, tuple[str, str]] = {
    "--batch_size": (
        "--train_batch_size",
        (
            "there is no --batch_size; set `batch_size = N` in the dataset TOML ([general] or "
            "[[datasets]]), or use --train_batch_size N, which with --dataset_config is only a "
            "fallback for a TOML without batch_size"
        ),
    ),
    "--lowvram": (
        "--lowram",
        (
            "--lowvram is a Stable Diffusion web UI option, not an sd-scripts one; the nearest real "
            "options are --lowram (load models to VRAM instead of main RAM) and --highvram; memory "
            "reducers that exist: " + MEMORY_REDUCERS
        ),
    ),
    "--medvram": (
        "--highvram",
        (
            "--medvram is a Stable Diffusion web UI option, not an sd-scripts one; memory reducers "
            "that exist: " + MEMORY_REDUCERS
        ),
    ),
    "--text_encoder_lr1": (
        "--text_encoder_lr",
        _TE_LR_12,
    ),
    "--text_encoder_lr2": (
        "--text_encoder_lr",
        _TE_LR_12,
    ),
    "--epochs": ("--max_train_epochs", "the number of epochs is --max_train_epochs"),
    "--lr": ("--learning_rate", "use --unet_lr / --text_encoder_lr (or --learning_rate)"),
    "--precision": ("--mixed_precision", "use --mixed_precision {no,fp16,bf16}"),
    "--model": (
        "--pretrained_model_name_or_path",
        "the base model is --pretrained_model_name_or_path",
    ),
    "--num_repeats": (
        "--dataset_repeats",
        "set num_repeats per subset in the dataset TOML (--dataset_repeats is only a fallback)",
    ),
}


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One argparse option of an sd-scripts trainer."""

    options: tuple[str, ...]  # option strings, e.g. ("--network_dim",)
    dest: str
    kind: str  # "flag" (store_true) | "value"
    type: str | None = None  # "str" | "int" | "float" | "int_or_float" | "Path" | None
    choices: tuple[Any, ...] | None = None
    nargs: str | None = None  # None (one value) | "*" | "+" | "?"
    default: Any = None

    @property
    def name(self) -> str:
        """The canonical spelling, ``--dest`` as users write it."""
        return self.options[0]


@dataclass(frozen=True)
class OptionTable:
    """The options one trainer script accepts."""

    script: str
    options: tuple[OptionSpec, ...]
    allow_abbrev: bool = True
    source: str = "packaged"  # where the table came from (shown in reports)

    def __post_init__(self) -> None:
        by_string: dict[str, OptionSpec] = {}
        by_dest: dict[str, OptionSpec] = {}
        for spec in self.options:
            for s in spec.options:
                by_string[s] = spec
            by_dest.setdefault(spec.dest, spec)
        object.__setattr__(self, "_by_string", by_string)
        object.__setattr__(self, "_by_dest", by_dest)

    @property
    def option_strings(self) -> tuple[str, ...]:
        return tuple(self._by_string)  # type: ignore[attr-defined]

    def by_string(self, option: str) -> OptionSpec | None:
        return self._by_string.get(option)  # type: ignore[attr-defined, no-any-return]

    def by_dest(self, dest: str) -> OptionSpec | None:
        return self._by_dest.get(dest)  # type: ignore[attr-defined, no-any-return]

    @property
    def dests(self) -> frozenset[str]:
        return frozenset(self._by_dest)  # type: ignore[attr-defined]

    def defaults(self) -> dict[str, Any]:
        return {spec.dest: spec.default for spec in self.options}

    def suggest(self, option: str) -> tuple[str | None, str | None]:
        """(closest real option, explanation) for an option this table lacks."""
        known = KNOWN_CONFUSIONS.get(option)
        if known is not None:
            target, why = known
            return (target if self.by_string(target) else None), why
        matches = difflib.get_close_matches(option, self.option_strings, n=1, cutoff=0.6)
        return (matches[0] if matches else None), None

    def suggest_dest(self, key: str) -> str | None:
        """Closest real dest name for a misspelt ``--config_file`` key."""
        known = KNOWN_CONFUSIONS.get("--" + key)
        if known is not None and self.by_string(known[0]):
            return self.by_string(known[0]).dest  # type: ignore[union-attr]
        matches = difflib.get_close_matches(key, sorted(self.dests), n=1, cutoff=0.6)
        return matches[0] if matches else None


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


# --------------------------------------------------------------------------- loading


def _spec_from_json(entry: Mapping[str, Any]) -> OptionSpec:
    choices = entry.get("choices")
    return OptionSpec(
        options=tuple(entry["options"]),
        dest=str(entry["dest"]),
        kind=str(entry.get("kind", "value")),
        type=entry.get("type"),
        choices=tuple(choices) if choices is not None else None,
        nargs=entry.get("nargs"),
        default=entry.get("default"),
    )


_PACKAGED: dict[str, Any] | None = None


def packaged_data() -> dict[str, Any]:
    """The packaged option dump (cached); ``{"source": ..., "scripts": {...}}``."""
    global _PACKAGED
    if _PACKAGED is None:
        text = resources.files("sdxl_tui").joinpath("data/sd_scripts_options.json").read_text("utf-8")
        _PACKAGED = json.loads(text)
    return _PACKAGED


def load_packaged_table(script: str = SDXL_SCRIPT) -> OptionTable:
    """The packaged v0.10.1 table for ``script`` (by base name).

    Raises:
        KeyError: the script is not in the packaged dump.
    """
    data = packaged_data()
    entry = data["scripts"][os.path.basename(script)]
    return OptionTable(
        script=os.path.basename(script),
        options=tuple(_spec_from_json(o) for o in entry["options"]),
        allow_abbrev=bool(entry.get("allow_abbrev", True)),
        source=f"packaged option list ({data.get('source', 'sd-scripts')})",
    )


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


def interpreter_from_prefix(prefix: Sequence[str]) -> str | None:
    """The interpreter of a launch prefix when it is a plain ``python`` (no wrapper)."""
    if len(prefix) == 1 and re.search(r"python[\d.]*(\.exe)?$", os.path.basename(prefix[0])):
        return prefix[0]
    return None


def python_command_from_prefix(prefix: Sequence[str]) -> list[str] | None:
    """The command that runs Python in the trainer's environment, from a launch prefix.

    A plain interpreter, or a wrapper that ends in one (``conda run -n env python``, ``nohup
    python``): the whole prefix. ``accelerate launch`` and anything else: None.
    """
    parts = [p for p in prefix if p not in ("nohup", "exec")]
    if parts and re.search(r"python[\d.]*(\.exe)?$", os.path.basename(parts[-1])):
        return parts
    return None


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


def _table_to_json(table: OptionTable) -> dict[str, Any]:
    return {
        "script": table.script,
        "source": table.source,
        "options": [
            {"options": list(s.options), "dest": s.dest, "kind": s.kind, "type": s.type,
             "choices": list(s.choices) if s.choices is not None else None, "nargs": s.nargs, "default": s.default}
            for s in table.options
        ],
    }


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
                options=tuple(_spec_from_json(o) for o in data["options"]),
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
            tmp.write_text(json.dumps(_table_to_json(table)), "utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return table, None


def suggest(option: str, script: str = SDXL_SCRIPT) -> str | None:
    """Did-you-mean text for an option ``script`` does not have (None when nothing is close).

    Used by the log alerts for ``unrecognized arguments`` as well as by the checks.
    """
    try:
        table = load_packaged_table(script)
    except KeyError:
        table = load_packaged_table(SDXL_SCRIPT)
    name = option.split("=", 1)[0]
    if table.by_string(name) is not None:
        return None
    target, why = table.suggest(name)
    parts = [f"did you mean {target}?"] if target else []
    if why:
        parts.append(why)
    return " ".join(parts) or None


# ------------------------------------------------------------------------ resolving


def int_or_float(text: str) -> int | float:
    """sd-scripts' ``int_or_float``: ``"10%"`` -> 0.1, a value below 1 -> float, else int.

    Raises:
        ValueError: not a number.
    """
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    value = float(text)
    if value >= 1 and value.is_integer():
        return int(value)
    return value


def convert(spec: OptionSpec, text: str) -> Any:
    """Convert one command-line string the way the option's ``type`` does.

    Raises:
        ValueError: argparse would say ``invalid <type> value``.
    """
    if spec.type == "int":
        return int(text)
    if spec.type == "float":
        return float(text)
    if spec.type == "int_or_float":
        return int_or_float(text)
    return text


def _looks_like_option(token: str, table: OptionTable) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    return not _NEGATIVE_NUMBER.match(token)


def _match(table: OptionTable, name: str) -> tuple[OptionSpec | None, list[str]]:
    """Exact match, else unique prefix (allow_abbrev); returns (spec, ambiguous candidates)."""
    spec = table.by_string(name)
    if spec is not None:
        return spec, []
    if not table.allow_abbrev or not name.startswith("--"):
        return None, []
    cands = [s for s in table.option_strings if s.startswith(name)]
    if len(cands) == 1:
        return table.by_string(cands[0]), []
    return None, cands


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
        spec, ambiguous = _match(table, name)
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
    "KNOWN_CONFUSIONS",
    "KNOWN_SCRIPTS",
    "MEMORY_REDUCERS",
    "SD1_SCRIPT",
    "SDXL_SCRIPT",
    "OptionProblem",
    "OptionSpec",
    "OptionTable",
    "ParsedArgs",
    "check_config_value",
    "convert",
    "default_cache_dir",
    "int_or_float",
    "interpreter_from_prefix",
    "load_packaged_table",
    "load_table_from_checkout",
    "packaged_data",
    "python_command_from_prefix",
    "resolve_argv",
    "suggest",
    "table_from_help",
]
