"""Validate an sd-scripts dataset TOML (``--dataset_config``) the way sd-scripts will.

Why: sd-scripts validates the TOML with a strict voluptuous schema (unknown keys are rejected with
``extra keys not allowed``) and only after the process has started; missing folders, images and
captions show up later still, or never (empty captions train silently). This module applies the same
schema (``library/config_util.py:ConfigSanitizer``), resolves each value through sd-scripts' lookup
order (subset -> dataset -> [general] -> command line -> default) and looks at the folders.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.formats.dataset import (
    ARGPARSE_TO_CONFIG,
    DATASET_LEVEL,
    DEFAULT_CAPTION_EXTENSION,
    DREAMBOOTH_SUBSET,
    FINETUNE_SUBSET,
    GENERAL_KEYS,
    IMAGE_EXTENSIONS,
    SUBSET_COMMON,
    SUBSET_ONLY,
    TYPE_WORDS,
    as_resolution,
    count_images,
    has_kind,
    load_dataset_file,
    lookup,
)
from sdxl_tui.planning.findings import Finding

_RESOLUTION_SDXL = 1024


@dataclass(frozen=True, slots=True)
class SubsetInfo:
    """One subset after value lookup, with what its folder holds."""

    image_dir: str | None
    num_repeats: int
    is_reg: bool
    caption_extension: str
    class_tokens: str | None
    images: int | None  # None: folder missing or unreadable
    captioned: int | None


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One ``[[datasets]]`` entry after value lookup."""

    resolution: tuple[int, int] | None
    batch_size: int
    enable_bucket: bool
    bucket_reso_steps: int
    bucket_no_upscale: bool
    min_bucket_reso: int
    max_bucket_reso: int
    subsets: tuple[SubsetInfo, ...]
    keys: frozenset[str]  # keys written at dataset or [general] level (explicit, not fallbacks)

    @property
    def train_images_with_repeats(self) -> int:
        return sum((s.images or 0) * s.num_repeats for s in self.subsets if not s.is_reg)

    @property
    def reg_images_with_repeats(self) -> int:
        return sum((s.images or 0) * s.num_repeats for s in self.subsets if s.is_reg)

    @property
    def batches(self) -> int:
        """Batches per epoch, before bucketing splits them (a lower bound with buckets).

        With regularisation images sd-scripts pairs each train image with a reg image, so
        an epoch holds twice the train images.
        """
        n = self.train_images_with_repeats
        if self.reg_images_with_repeats:
            n *= 2
        return math.ceil(n / max(1, self.batch_size)) if n else 0


@dataclass(frozen=True)
class DatasetCheck:
    """Result of :func:`validate_dataset_config`."""

    path: str | None
    datasets: tuple[DatasetInfo, ...]
    findings: tuple[Finding, ...]
    explicit_keys: frozenset[str]  # every key the TOML sets anywhere

    @property
    def batches(self) -> int:
        return sum(d.batches for d in self.datasets)

    @property
    def train_images_with_repeats(self) -> int:
        return sum(d.train_images_with_repeats for d in self.datasets)


def validate_dataset_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    sdxl: bool,
    args: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> DatasetCheck:
    """Check a dataset TOML against sd-scripts' schema, its folders and the SDXL rules.

    Args:
        source: path of the TOML (or JSON) file, or the already-loaded mapping.
        sdxl: the run trains SDXL (bucket steps must be a multiple of 32, resolution 1024).
        args: effective command-line values by argparse dest (defaults included); they are the
            fallbacks for keys the TOML lacks, as in sd-scripts.
        cwd: the trainer's working directory, against which relative folders resolve.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    if isinstance(source, Mapping):
        config: Mapping[str, Any] = source
        path_text: str | None = None
    else:
        path = Path(source)
        if not path.is_absolute():
            path = base / path
        path_text = str(path)
        loaded = _load(path)
        if isinstance(loaded, Finding):
            return DatasetCheck(path_text, (), (loaded,), frozenset())
        config = loaded
    where = os.path.basename(path_text) if path_text else "dataset config"
    checker = _Checker(where, base, sdxl)
    infos = checker.check(config, args or {})
    return DatasetCheck(path_text, tuple(infos), tuple(checker.findings), frozenset(checker.explicit))


def _load(path: Path) -> Mapping[str, Any] | Finding:
    """The TOML's top table, or the finding that says why there is none."""
    try:
        loaded = load_dataset_file(path)
    except FileNotFoundError:
        return Finding(
            "error",
            "dataset-config-missing",
            f"dataset config {path} does not exist",
            "fix the --dataset_config path",
            str(path),
        )
    except OSError as exc:
        return Finding(
            "error", "dataset-config-missing", f"cannot read {path}: {exc}", "check the file's permissions", str(path)
        )
    except ValueError as exc:
        return Finding(
            "error", "dataset-config-invalid", f"{path} does not parse: {exc}", "fix the TOML syntax", str(path)
        )
    if not isinstance(loaded, Mapping):
        return Finding(
            "error",
            "dataset-config-invalid",
            f"{path} is not a table",
            "write [general] and [[datasets]] tables",
            str(path),
        )
    return loaded


class _Checker:
    """One validation: the findings and explicit keys it gathers, table by table."""

    def __init__(self, where: str, base: Path, sdxl: bool) -> None:
        self.where = where
        self.base = base
        self.sdxl = sdxl
        self.findings: list[Finding] = []
        self.explicit: set[str] = set()

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def not_a_table(self, place: str, fix: str, subject: str | None = None) -> None:
        self.add(Finding("error", "dataset-key-type", f"{self.where}: {place}", fix, subject))

    def reject(self, key: str, place: str, allowed: Mapping[str, str] | set[str]) -> None:
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else f"remove `{key}`"
        self.add(
            Finding(
                "error",
                "dataset-key-rejected",
                f"{self.where}: `{key}` is not allowed in {place}; sd-scripts stops with "
                f"`extra keys not allowed @ data[...]['{key}']` (Invalid user config)",
                fix,
                key,
            )
        )

    def check_types(self, table: Mapping[str, Any], allowed: Mapping[str, str], place: str) -> dict[str, Any]:
        """The keys of ``table`` sd-scripts' schema accepts, with the right kind of value."""
        good: dict[str, Any] = {}
        for key, value in table.items():
            if key == "subsets":
                continue
            if key not in allowed:
                self.reject(key, place, allowed)
                continue
            self.explicit.add(key)
            if not has_kind(allowed[key], value):
                words = TYPE_WORDS[allowed[key]]
                self.add(
                    Finding(
                        "error",
                        "dataset-key-type",
                        f"{self.where}: `{key}` in {place} must be {words}, got {value!r}",
                        f"write `{key}` as {words}",
                        key,
                    )
                )
                continue
            good[key] = value
        return good

    def check(self, config: Mapping[str, Any], args: Mapping[str, Any]) -> list[DatasetInfo]:
        for key in config:
            if key not in ("general", "datasets"):
                self.reject(key, "the top level (only [general] and [[datasets]])", {"general", "datasets"})
        general_raw = config.get("general", {})
        if not isinstance(general_raw, Mapping):
            self.not_a_table("`general` must be a table", "write it as [general]", "general")
            general_raw = {}
        general = self.check_types(general_raw, GENERAL_KEYS, "[general]")
        cli: dict[str, Any] = {}
        for dest, value in args.items():
            cli[ARGPARSE_TO_CONFIG.get(dest, dest)] = value
        if "resolution" in cli:
            cli["resolution"] = as_resolution(cli["resolution"])
        datasets_raw = config.get("datasets", [])
        if not isinstance(datasets_raw, list) or not datasets_raw:
            self.add(
                Finding(
                    "error",
                    "dataset-empty",
                    f"{self.where} has no [[datasets]] entry; sd-scripts finds no data",
                    "add a [[datasets]] table with at least one [[datasets.subsets]] image_dir",
                    None,
                )
            )
            datasets_raw = [] if not isinstance(datasets_raw, list) else datasets_raw
        infos: list[DatasetInfo] = []
        for place, ds_raw in self.tables(datasets_raw, "[[datasets]]", "write [[datasets]] tables"):
            infos.append(self.dataset(place, ds_raw, general, cli))
        return infos

    def tables(self, items: list[Any], place: str, fix: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The tables of an array of tables, each with its place (``PLACE #n``); a non-table is a finding."""
        for i, item in enumerate(items):
            where = f"{place} #{i + 1}"
            if isinstance(item, Mapping):
                yield where, item
            else:
                self.not_a_table(f"{where} is not a table", fix)

    def dataset(
        self, place: str, ds_raw: Mapping[str, Any], general: dict[str, Any], cli: dict[str, Any]
    ) -> DatasetInfo:
        """One ``[[datasets]]`` table: its keys, its subsets, resolution and bucket rules."""
        subsets_raw = ds_raw.get("subsets", [])
        if not isinstance(subsets_raw, list):
            subsets_raw = []
        with_meta = [isinstance(s, Mapping) and "metadata_file" in s for s in subsets_raw]
        finetune = bool(subsets_raw) and all(with_meta)
        if any(with_meta) and not all(with_meta):
            self.add(
                Finding(
                    "error",
                    "dataset-mixed-modes",
                    f"{self.where}: {place} mixes DreamBooth subsets (image_dir) and fine-tuning subsets "
                    "(metadata_file); sd-scripts rejects that",
                    "split them into separate [[datasets]]",
                    None,
                )
            )
        ds_allowed = dict(DATASET_LEVEL, **SUBSET_COMMON)
        if not finetune:
            ds_allowed.update({k: v for k, v in DREAMBOOTH_SUBSET.items() if k not in SUBSET_ONLY})
        ds = self.check_types(ds_raw, ds_allowed, place)
        levels_ds = [ds, general, cli]
        if not subsets_raw:
            self.add(
                Finding(
                    "error",
                    "dataset-empty",
                    f"{self.where}: {place} has no [[datasets.subsets]]",
                    "add a [[datasets.subsets]] table with image_dir",
                    None,
                )
            )
        info_subsets = self.subsets(place, subsets_raw, [ds, general, cli], finetune=finetune)
        info = DatasetInfo(
            resolution=as_resolution(lookup("resolution", levels_ds, None)),
            batch_size=int(lookup("batch_size", levels_ds, 1) or 1),
            enable_bucket=bool(lookup("enable_bucket", levels_ds, False)),
            bucket_reso_steps=int(lookup("bucket_reso_steps", levels_ds, 64)),
            bucket_no_upscale=bool(lookup("bucket_no_upscale", levels_ds, False)),
            min_bucket_reso=int(lookup("min_bucket_reso", levels_ds, 256)),
            max_bucket_reso=int(lookup("max_bucket_reso", levels_ds, 1024)),
            subsets=tuple(info_subsets),
            keys=frozenset(set(ds) | set(general)),
        )
        self.resolution_rules(place, info)
        return info

    def subsets(
        self, place: str, subsets_raw: list[Any], levels_ds: list[dict[str, Any]], *, finetune: bool
    ) -> list[SubsetInfo]:
        """A dataset's ``[[datasets.subsets]]``: their keys (DreamBooth or fine-tuning schema) and folders."""
        sub_allowed = dict(SUBSET_COMMON, **(FINETUNE_SUBSET if finetune else DREAMBOOTH_SUBSET))
        info_subsets: list[SubsetInfo] = []
        for splace, sub_raw in self.tables(subsets_raw, f"{place} subset", "write [[datasets.subsets]] tables"):
            sub = self.check_types(sub_raw, sub_allowed, splace)
            if not finetune and "image_dir" not in sub_raw:
                self.add(
                    Finding(
                        "error",
                        "dataset-no-image-dir",
                        f"{self.where}: {splace} has no image_dir (`required key not provided`)",
                        'add image_dir = "/path/to/images"',
                        "image_dir",
                    )
                )
            info_subsets.append(self.subset(splace, sub, [sub, *levels_ds], finetune=finetune))
        return info_subsets

    def subset(self, splace: str, sub: dict[str, Any], levels: list[dict[str, Any]], *, finetune: bool) -> SubsetInfo:
        """One ``[[datasets.subsets]]`` table after value lookup, with what its folder holds."""
        image_dir = sub.get("image_dir")
        caption_ext = str(lookup("caption_extension", levels, DEFAULT_CAPTION_EXTENSION))
        class_tokens = lookup("class_tokens", levels[:3], None)
        images: int | None = None
        captioned: int | None = None
        if isinstance(image_dir, str):
            folder = Path(os.path.expanduser(image_dir))
            if not folder.is_absolute():
                folder = self.base / folder
            images, captioned = self.folder(splace, folder, caption_ext, class_tokens, finetune=finetune)
        return SubsetInfo(
            image_dir=image_dir if isinstance(image_dir, str) else None,
            num_repeats=int(lookup("num_repeats", levels, 1) or 1),
            is_reg=bool(sub.get("is_reg", False)),
            caption_extension=caption_ext,
            class_tokens=class_tokens if isinstance(class_tokens, str) else None,
            images=images,
            captioned=captioned,
        )

    def folder(
        self, splace: str, folder: Path, caption_ext: str, class_tokens: object, *, finetune: bool
    ) -> tuple[int | None, int | None]:
        """(images, captioned) in a subset's folder; findings for a missing, empty or uncaptioned one."""
        if not folder.is_dir():
            self.add(
                Finding(
                    "error",
                    "dataset-folder-missing",
                    f"{splace}: image_dir {folder} is not a folder; sd-scripts skips it "
                    "(`not directory`) and may find no data at all",
                    "fix image_dir (relative paths resolve against the trainer's "
                    "working directory, the sd-scripts folder)",
                    str(folder),
                )
            )
            return None, None
        try:
            images, captioned, others = count_images(folder, caption_ext)
        except OSError as exc:
            self.add(
                Finding(
                    "error",
                    "dataset-folder-missing",
                    f"{splace}: cannot list {folder}: {exc}",
                    "check the folder's permissions",
                    str(folder),
                )
            )
            return None, None
        if images == 0:
            self.add(
                Finding(
                    "error",
                    "dataset-no-images",
                    f"{splace}: {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})",
                    "point image_dir at the folder that holds the images (subfolders are not read)",
                    str(folder),
                )
            )
        elif captioned is not None and captioned < images and not finetune:
            self.captions_missing(splace, folder, images - captioned, images, caption_ext, others, class_tokens)
        return images, captioned

    def captions_missing(
        self,
        splace: str,
        folder: Path,
        missing: int,
        images: int,
        caption_ext: str,
        others: Mapping[str, int],
        class_tokens: object,
    ) -> None:
        hint = ""
        other = max(others.items(), key=lambda kv: kv[1], default=None)
        if other and other[0] != caption_ext and other[1] >= missing:
            hint = f'; the folder has {other[1]} {other[0]} files: set caption_extension = "{other[0]}"'
        head = f"{splace}: {missing} of {images} images in {folder} have no {caption_ext} caption"
        if class_tokens:
            self.findings.append(
                Finding(
                    "note",
                    "dataset-captions-missing",
                    f"{head}; they train with class_tokens {class_tokens!r} only",
                    "add the caption files" + hint,
                    str(folder),
                )
            )
        else:
            self.findings.append(
                Finding(
                    "warning",
                    "dataset-captions-missing",
                    f'{head} file (caption_extension defaults to ".caption"); '
                    "sd-scripts trains them with an empty caption",
                    ("add the caption files" + hint) if hint else "add caption files, or set class_tokens",
                    str(folder),
                )
            )

    def resolution_rules(self, place: str, info: DatasetInfo) -> None:
        """Resolution given and near SDXL's area; bucket steps and range as sd-scripts asserts them."""
        resolution, where, sdxl = info.resolution, self.where, self.sdxl
        if resolution is None:
            self.add(
                Finding(
                    "error",
                    "dataset-no-resolution",
                    f"{where}: {place} has no resolution and the command line has no --resolution; "
                    "sd-scripts stops with `resolution is required`",
                    f"set resolution = {_RESOLUTION_SDXL if sdxl else 512} in [general] or [[datasets]]",
                    "resolution",
                )
            )
        elif sdxl and resolution != (_RESOLUTION_SDXL, _RESOLUTION_SDXL):
            area = resolution[0] * resolution[1]
            if abs(area - _RESOLUTION_SDXL**2) > 0.1 * _RESOLUTION_SDXL**2:
                self.findings.append(
                    Finding(
                        "warning",
                        "dataset-resolution",
                        f"{where}: {place} trains at {resolution[0]}x{resolution[1]}; SDXL is trained "
                        "at 1024x1024 and learns poorly far from that area",
                        "set resolution = 1024",
                        "resolution",
                    )
                )
        multiple = 32 if sdxl else 64
        steps = info.bucket_reso_steps
        if info.enable_bucket and steps % multiple:
            self.add(
                Finding(
                    "error",
                    "bucket-steps",
                    f"{where}: {place} bucket_reso_steps = {steps} is not a multiple of {multiple}; "
                    f"{'sdxl_train_network.py' if sdxl else 'train_network.py'} asserts that at start",
                    "use bucket_reso_steps = 64",
                    "bucket_reso_steps",
                )
            )
        min_b, max_b = info.min_bucket_reso, info.max_bucket_reso
        if (
            info.enable_bucket
            and resolution is not None
            and not info.bucket_no_upscale
            and (min(resolution) < min_b or max(resolution) > max_b)
        ):
            self.add(
                Finding(
                    "error",
                    "bucket-range",
                    f"{where}: {place} resolution {resolution[0]}x{resolution[1]} is outside "
                    f"min_bucket_reso..max_bucket_reso ({min_b}..{max_b}); sd-scripts asserts that",
                    f"set max_bucket_reso >= {max(resolution)} (e.g. 2048) and min_bucket_reso <= {min(resolution)}",
                    "max_bucket_reso",
                )
            )
