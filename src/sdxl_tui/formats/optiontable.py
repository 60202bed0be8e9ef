"""The sd-scripts option table: every option of the trainer scripts, loaded once.

Why one table: the checks, the simulator's parser, the log alerts (did-you-mean for
``unrecognized arguments``) and the run reader (which option a command-line prefix names)
all ask the same question, "what options does ``sdxl_train_network.py`` have?". The answer
is the packaged dump of sd-scripts v0.10.1's argparse parsers
(``data/sd_scripts_options.json``, built by ``train_network.py:setup_parser`` and
``sdxl_train_network.py:setup_parser``), read once per process.

Prefix resolution follows CPython's argparse (``allow_abbrev``): an unambiguous prefix of a
long option names it, an ambiguous one names nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

__all__ = [
    "KNOWN_CONFUSIONS",
    "KNOWN_SCRIPTS",
    "MEMORY_REDUCERS",
    "SD1_SCRIPT",
    "SDXL_SCRIPT",
    "OptionSpec",
    "OptionTable",
    "convert",
    "dest_of",
    "int_or_float",
    "load_packaged_table",
    "packaged_source",
    "spec_from_json",
    "suggest",
    "table_to_json",
]

SDXL_SCRIPT = "sdxl_train_network.py"
SD1_SCRIPT = "train_network.py"
KNOWN_SCRIPTS = (SDXL_SCRIPT, SD1_SCRIPT)

#: Real options that reduce memory (sd-scripts' README "SDXL training" and
#: ``library/train_util.py:add_training_arguments``), quoted by the fixes.
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

#: Options people reach for that sd-scripts does not have: (nearest real option, what to do).
KNOWN_CONFUSIONS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "--batch_size": (
        "--train_batch_size",
        "there is no --batch_size; set `batch_size = N` in the dataset TOML ([general] or "
        "[[datasets]]), or use --train_batch_size N, which with --dataset_config is only a "
        "fallback for a TOML without batch_size",
    ),
    "--lowvram": (
        "--lowram",
        "--lowvram is a Stable Diffusion web UI option, not an sd-scripts one; the nearest real "
        "options are --lowram (load models to VRAM instead of main RAM) and --highvram; memory "
        "reducers that exist: " + MEMORY_REDUCERS,
    ),
    "--medvram": (
        "--highvram",
        "--medvram is a Stable Diffusion web UI option, not an sd-scripts one; memory reducers "
        "that exist: " + MEMORY_REDUCERS,
    ),
    "--text_encoder_lr1": ("--text_encoder_lr", _TE_LR_12),
    "--text_encoder_lr2": ("--text_encoder_lr", _TE_LR_12),
    "--epochs": ("--max_train_epochs", "the number of epochs is --max_train_epochs"),
    "--lr": ("--learning_rate", "use --unet_lr / --text_encoder_lr (or --learning_rate)"),
    "--precision": ("--mixed_precision", "use --mixed_precision {no,fp16,bf16}"),
    "--model": ("--pretrained_model_name_or_path", "the base model is --pretrained_model_name_or_path"),
    "--num_repeats": (
        "--dataset_repeats",
        "set num_repeats per subset in the dataset TOML (--dataset_repeats is only a fallback)",
    ),
})


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
    """The options one trainer script accepts, indexed by option string and by dest."""

    script: str
    options: tuple[OptionSpec, ...]
    allow_abbrev: bool = True
    source: str = "packaged"  # where the table came from (shown in reports)
    _by_string: Mapping[str, OptionSpec] = field(init=False, repr=False, compare=False)
    _by_dest: Mapping[str, OptionSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_string: dict[str, OptionSpec] = {}
        by_dest: dict[str, OptionSpec] = {}
        for spec in self.options:
            for s in spec.options:
                by_string[s] = spec
            by_dest.setdefault(spec.dest, spec)
        object.__setattr__(self, "_by_string", MappingProxyType(by_string))
        object.__setattr__(self, "_by_dest", MappingProxyType(by_dest))

    @property
    def option_strings(self) -> tuple[str, ...]:
        return tuple(self._by_string)

    def by_string(self, option: str) -> OptionSpec | None:
        return self._by_string.get(option)

    def by_dest(self, dest: str) -> OptionSpec | None:
        return self._by_dest.get(dest)

    @property
    def dests(self) -> frozenset[str]:
        return frozenset(self._by_dest)

    def defaults(self) -> dict[str, Any]:
        return {spec.dest: spec.default for spec in self.options}

    def match(self, name: str) -> tuple[OptionSpec | None, tuple[str, ...]]:
        """argparse's lookup: exact, else a unique prefix of a long option (``allow_abbrev``).

        Returns:
            (spec or None, the candidates when the prefix is ambiguous).
        """
        spec = self._by_string.get(name)
        if spec is not None:
            return spec, ()
        if not self.allow_abbrev or not name.startswith("--"):
            return None, ()
        cands = tuple(s for s in self._by_string if s.startswith(name))
        if len(cands) == 1:
            return self._by_string[cands[0]], ()
        return None, cands

    def suggest(self, option: str) -> tuple[str | None, str | None]:
        """(closest real option, explanation) for an option this table lacks."""
        known = KNOWN_CONFUSIONS.get(option)
        if known is not None:
            target, why = known
            return (target if self.by_string(target) else None), why
        import difflib  # only for a "did you mean" (not on every start)

        matches = difflib.get_close_matches(option, self.option_strings, n=1, cutoff=0.6)
        return (matches[0] if matches else None), None

    def suggest_dest(self, key: str) -> str | None:
        """Closest real dest name for a misspelt ``--config_file`` key."""
        known = KNOWN_CONFUSIONS.get("--" + key)
        if known is not None:
            spec = self.by_string(known[0])
            if spec is not None:
                return spec.dest
        import difflib

        matches = difflib.get_close_matches(key, sorted(self.dests), n=1, cutoff=0.6)
        return matches[0] if matches else None


def spec_from_json(entry: Mapping[str, Any]) -> OptionSpec:
    """One option of the packaged dump (or of a cached ``--help`` table)."""
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


def table_to_json(table: OptionTable) -> dict[str, Any]:
    """The JSON form :func:`spec_from_json` reads back (the checkout-table cache)."""
    return {
        "script": table.script,
        "source": table.source,
        "options": [
            {"options": list(s.options), "dest": s.dest, "kind": s.kind, "type": s.type,
             "choices": list(s.choices) if s.choices is not None else None, "nargs": s.nargs,
             "default": s.default}
            for s in table.options
        ],
    }


_DATA = "sd_scripts_options.json"


@cache
def _packaged() -> Mapping[str, Any]:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", _DATA)
    try:  # the installed file, read directly (importlib.resources costs a few ms of imports)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:  # pragma: no cover - a zipped install
        from importlib import resources

        text = resources.files("sdxl_tui").joinpath(f"data/{_DATA}").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return MappingProxyType(data)


def packaged_source() -> str:
    """Where the packaged dump came from (``kohya-ss/sd-scripts <commit> (v0.10.1)``)."""
    return str(_packaged().get("source", "sd-scripts"))


@cache
def load_packaged_table(script: str = SDXL_SCRIPT) -> OptionTable:
    """The packaged v0.10.1 table for ``script`` (by base name), built once per process.

    Raises:
        KeyError: the script is not in the packaged dump.
    """
    base = os.path.basename(script)
    entry = _packaged()["scripts"][base]
    return OptionTable(
        script=base,
        options=tuple(spec_from_json(o) for o in entry["options"]),
        allow_abbrev=bool(entry.get("allow_abbrev", True)),
        source=f"packaged option list ({packaged_source()})",
    )


def _table_for(script: str | None) -> OptionTable:
    try:
        return load_packaged_table(script or SDXL_SCRIPT)
    except KeyError:
        return load_packaged_table(SDXL_SCRIPT)


def dest_of(option: str, script: str | None = None) -> str:
    """The dest an ``--option`` (or an unambiguous prefix of one) stores to.

    An option the table does not know keeps its own name (dashes as underscores), so a
    command line of a newer sd-scripts still yields its options by name.
    """
    spec, _ = _table_for(script).match(option)
    if spec is not None:
        return spec.dest
    return option.lstrip("-").replace("-", "_")


def suggest(option: str, script: str | None = None) -> str | None:
    """Did-you-mean text for an option ``script`` does not have (None when nothing is close).

    The one wording of it: the checks, and the alert for ``unrecognized arguments``.
    """
    table = _table_for(script)
    name = option.split("=", 1)[0]
    if table.by_string(name) is not None:
        return None
    target, why = table.suggest(name)
    parts = [f"did you mean {target}?"] if target else []
    if why:
        parts.append(why)
    return " ".join(parts) or None


def int_or_float(text: str) -> int | float:
    """``library/train_util.py:int_or_float``: ``"10%"`` -> 0.1, below 1 -> float, else int.

    Raises:
        ValueError: not a number (argparse says ``invalid int_or_float value``).
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

