"""The sd-scripts dataset config (``--dataset_config`` TOML): schema, lookup order, folders.

Why one home: the preflight check validates these files, the planner writes them and the
simulator reads them to decide how many images an epoch holds; all three must agree with
sd-scripts' own reading (``library/config_util.py``): a strict voluptuous schema (unknown
keys are rejected), each value looked up subset -> dataset -> ``[general]`` -> command line
-> default, and DreamBooth-style folders (``<repeats>_<class tokens>``) counted without
recursion (``library/train_util.py:DreamBoothDataset``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sdxl_tui.formats import toml

__all__ = [
    "ARGPARSE_TO_CONFIG",
    "DATASET_LEVEL",
    "DEFAULT_CAPTION_EXTENSION",
    "DREAMBOOTH_SUBSET",
    "FINETUNE_SUBSET",
    "GENERAL_KEYS",
    "IMAGE_EXTENSIONS",
    "SUBSET_COMMON",
    "SUBSET_ONLY",
    "TYPE_WORDS",
    "as_resolution",
    "count_images",
    "folder_dataset",
    "has_kind",
    "is_image",
    "load_dataset_file",
    "lookup",
    "repeats_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_CAPTION_EXTENSION = ".caption"  # sd-scripts' default (argparse and dataclass)

_BOOL = "bool"
_INT = "int"
_FLOAT = "float"  # voluptuous `float`: an int is rejected
_NUM = "number"  # Any(float, int)
_STR = "str"
_PAIR_FLOAT = "pair_float"
_RES = "resolution"  # int or [int, int]
_TABLE = "table"

#: keys of every subset (and, ascending, of datasets and [general]) -> value type
SUBSET_COMMON: dict[str, str] = {
    "color_aug": _BOOL,
    "face_crop_aug_range": _PAIR_FLOAT,
    "flip_aug": _BOOL,
    "num_repeats": _INT,
    "random_crop": _BOOL,
    "shuffle_caption": _BOOL,
    "keep_tokens": _INT,
    "keep_tokens_separator": _STR,
    "secondary_separator": _STR,
    "caption_separator": _STR,
    "enable_wildcard": _BOOL,
    "token_warmup_min": _INT,
    "token_warmup_step": _NUM,
    "caption_prefix": _STR,
    "caption_suffix": _STR,
    "custom_attributes": _TABLE,
    "resize_interpolation": _STR,
    "caption_dropout_every_n_epochs": _INT,
    "caption_dropout_rate": _NUM,
    "caption_tag_dropout_rate": _NUM,
}
DREAMBOOTH_SUBSET: dict[str, str] = {
    "image_dir": _STR,
    "is_reg": _BOOL,
    "alpha_mask": _BOOL,
    "caption_extension": _STR,
    "class_tokens": _STR,
    "cache_info": _BOOL,
}
FINETUNE_SUBSET: dict[str, str] = {"metadata_file": _STR, "image_dir": _STR, "alpha_mask": _BOOL}
DATASET_LEVEL: dict[str, str] = {
    "batch_size": _INT,
    "bucket_no_upscale": _BOOL,
    "bucket_reso_steps": _INT,
    "enable_bucket": _BOOL,
    "max_bucket_reso": _INT,
    "min_bucket_reso": _INT,
    "validation_seed": _INT,
    "validation_split": _NUM,
    "resolution": _RES,
    "network_multiplier": _FLOAT,
    "resize_interpolation": _STR,
}
SUBSET_ONLY = {"image_dir", "is_reg", "alpha_mask", "metadata_file", "conditioning_data_dir"}
#: [general] and [[datasets]] accept dataset keys plus the ascending subset keys
GENERAL_KEYS: dict[str, str] = {
    **DATASET_LEVEL,
    **SUBSET_COMMON,
    **{k: v for k, v in DREAMBOOTH_SUBSET.items() if k not in SUBSET_ONLY},
}
#: command-line dest -> dataset key, where the names differ (sd-scripts' own mapping)
ARGPARSE_TO_CONFIG = {"train_batch_size": "batch_size", "dataset_repeats": "num_repeats"}

_REPEATS_DIR = re.compile(r"^(\d+)_(.*)$")


def has_kind(kind: str, value: Any) -> bool:
    """Does ``value`` pass sd-scripts' voluptuous validator for a key of this kind?"""
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _FLOAT:
        return isinstance(value, float)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _TABLE:
        return isinstance(value, dict)
    if kind == _PAIR_FLOAT:
        return isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value)
    if kind == _RES:
        if isinstance(value, int) and not isinstance(value, bool):
            return True
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        )
    return True


TYPE_WORDS = {
    _BOOL: "true or false",
    _INT: "an integer",
    _FLOAT: "a float (write 1.0, not 1)",
    _NUM: "a number",
    _STR: "a string",
    _TABLE: "a table",
    _PAIR_FLOAT: "two floats, e.g. [0.4, 0.6]",
    _RES: "an integer or [width, height]",
}


def as_resolution(value: Any) -> tuple[int, int] | None:
    """(width, height) from ``1024``, ``[1024, 768]``, ``"1024"`` or ``"1024,768"``; None if not."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            return (int(value[0]), int(value[1]))
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):  # --resolution "1024" or "1024,1024"
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            return None
        if len(nums) == 1:
            return (nums[0], nums[0])
        if len(nums) == 2:
            return (nums[0], nums[1])
    return None


def count_images(folder: Path, caption_extension: str) -> tuple[int, int, dict[str, int]]:
    """(images, images with a caption file, caption-like extensions seen) in ``folder``.

    Not recursive, like sd-scripts' DreamBooth loader.

    Raises:
        OSError: the folder cannot be listed.
    """
    images: list[Path] = []
    others: dict[str, int] = {}
    names: set[str] = set()
    for entry in os.scandir(folder):
        if not entry.is_file():
            continue
        names.add(entry.name)
        p = Path(entry.name)
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            images.append(p)
        elif ext in (".txt", ".caption", ".cap", ".tags"):
            others[ext] = others.get(ext, 0) + 1
    captioned = sum(1 for p in images if (p.stem + caption_extension) in names)
    return len(images), captioned, others


def lookup(key: str, levels: Sequence[Mapping[str, Any]], default: Any) -> Any:
    """A value the way sd-scripts resolves it: the first level that sets it (subset, then
    dataset, then ``[general]``, then the command line), else ``default``
    (``library/config_util.py:ConfigSanitizer`` and ``generate_dataset_group_by_blueprint``)."""
    for level in levels:
        value = level.get(key)
        if value is not None:
            return value
    return default


def is_image(name: str) -> bool:
    """A file name sd-scripts loads as a training image (case-insensitive extension)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def repeats_folder(name: str) -> tuple[int, str] | None:
    """(num_repeats, class tokens) of a ``<repeats>_<class tokens>`` folder, else None."""
    m = _REPEATS_DIR.match(name)
    return (int(m.group(1)), m.group(2)) if m else None


def load_dataset_file(path: str | os.PathLike[str]) -> Any:
    """The parsed dataset config: JSON for ``.json``, TOML otherwise (as sd-scripts decides).

    Raises:
        OSError: the file cannot be read.
        ValueError: it does not parse (``toml.TOMLDecodeError`` is a ``ValueError``).
    """
    if os.fspath(path).lower().endswith(".json"):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return toml.load(path)


def folder_dataset(image_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A dataset mapping for a plain image folder, following kohya's folder convention.

    ``DIR/10_luca/*.png`` becomes a subset with ``num_repeats = 10`` and
    ``class_tokens = "luca"``; a folder that holds images itself becomes one subset.
    """
    root = Path(image_dir)
    subsets: list[dict[str, Any]] = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        children = []
    for child in children:
        repeats = repeats_folder(child.name)
        if repeats is not None and repeats[1]:
            subsets.append({"image_dir": str(child.resolve()), "num_repeats": repeats[0], "class_tokens": repeats[1]})
    if not subsets:
        subsets.append({"image_dir": str(root.resolve()), "num_repeats": 1})
    for sub in subsets:
        folder = Path(sub["image_dir"])
        try:
            _, captioned, others = count_images(folder, DEFAULT_CAPTION_EXTENSION)
        except OSError:
            continue
        if not captioned and others.get(".txt"):
            sub["caption_extension"] = ".txt"
    return {"datasets": [{"subsets": subsets}]}


#: voluptuous' messages (``voluptuous.error.MultipleInvalid``) for the dataset TOML schema of
#: ``library/config_util.py:ConfigSanitizer``: ``<what> @ data['datasets'][0]['resolution']``.
_VOLUPTUOUS_RE = re.compile(r"(?:MultipleInvalid|Invalid): (?P<what>.+?) @ data(?P<path>(?:\[[^\]]+\])+)")


def _toml_path(path: str) -> tuple[str, str]:
    """``['datasets'][0]['subsets'][1]['foo']`` -> (``datasets[0].subsets[1]``, ``foo``)."""
    parts = re.findall(r"\[(?:'([^']*)'|(\d+))\]", path)
    words: list[str] = []
    for name, index in parts:
        if name:
            words.append(name)
        elif words:
            words[-1] += f"[{index}]"
    if not words:
        return "", ""
    return ".".join(words[:-1]), words[-1].split("[")[0]


def dataset_config_fix(traceback: str) -> str | None:
    """The fix for a dataset TOML that sd-scripts' schema rejected, by the kind of error; None
    when ``traceback`` is not such an error."""
    m = _VOLUPTUOUS_RE.search(traceback)
    if m is None:
        return None
    what, (where, key) = m.group("what").strip(), _toml_path(m.group("path"))
    place = f" (in {where})" if where else ""
    if what.startswith("extra keys not allowed"):
        return f"fix the dataset TOML: {key!r}{place} is not an option sd-scripts knows there (misspelled or misplaced)"
    if what.startswith("required key not provided"):
        return f"fix the dataset TOML: add the required key {key!r}{place}"
    wanted = re.match(r"expected (\w+)", what)
    if wanted is not None:
        return f"fix the dataset TOML: {key!r}{place} must be of type {wanted.group(1)} ({what})"
    return f"fix the dataset TOML: {key!r}{place}: {what}"
