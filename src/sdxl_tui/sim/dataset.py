"""What sd-scripts learns about the dataset: image counts, repeats, buckets, captions.

Reads ``--dataset_config`` (TOML/JSON, same lookup order: subset -> dataset -> [general] ->
command line -> default) or ``--train_data_dir`` (``<repeats>_<name>`` folders). Images are
counted on disk when the folders exist; a missing folder counts as ``DEFAULT_IMAGES`` images
so a launch line from another machine still simulates. Only what the log lines, the
"running training" block and the ``ss_*`` dataset metadata need is computed.
"""

from __future__ import annotations

import json
import math
import os
import struct
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any

from sdxl_tui.formats.dataset import (
    as_resolution,
    is_image,
    load_dataset_file,
    lookup,
    repeats_folder,
)

DEFAULT_IMAGES = 8


@dataclass
class Subset:
    image_dir: str
    num_repeats: int = 1
    img_count: int = 0
    is_reg: bool = False
    class_tokens: str | None = None
    caption_extension: str = ".caption"
    shuffle_caption: bool = False
    keep_tokens: int = 0
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    color_aug: bool = False
    flip_aug: bool = False
    face_crop_aug_range: Any = None
    random_crop: bool = False
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    token_warmup_min: int = 1
    token_warmup_step: float = 0
    alpha_mask: bool = False
    resize_interpolation: str | None = None
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    tag_frequency: dict[str, int] = field(default_factory=dict)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    val_count: int = 0  # images split off for validation (validation_split)


@dataclass
class Dataset:
    batch_size: int
    resolution: tuple[int, int]
    enable_bucket: bool
    min_bucket_reso: int
    max_bucket_reso: int
    bucket_reso_steps: int
    bucket_no_upscale: bool
    resize_interpolation: str | None
    subsets: list[Subset]
    validation_split: float = 0.0
    buckets: list[tuple[tuple[int, int], int]] = field(default_factory=list)
    mean_ar_error: float = 0.0

    @property
    def num_train_images(self) -> int:
        return sum(s.img_count * s.num_repeats for s in self.subsets if not s.is_reg)

    @property
    def num_reg_images(self) -> int:
        return sum(s.img_count * s.num_repeats for s in self.subsets if s.is_reg)

    @property
    def num_validation_images(self) -> int:
        return sum(s.val_count * s.num_repeats for s in self.subsets if not s.is_reg)

    @property
    def num_validation_batches(self) -> int:
        n = self.num_validation_images
        return math.ceil(n / self.batch_size) if n else 0

    def split_validation(self) -> None:
        """``split_train_val``: the first ceil(n * (1 - split)) images train, the rest validate."""
        if self.validation_split <= 0:
            return
        for s in self.subsets:
            if s.is_reg:
                continue
            train = math.ceil(s.img_count * (1 - self.validation_split))
            s.val_count = s.img_count - train
            s.img_count = train
            s.sizes = s.sizes[:train]

    @property
    def num_batches(self) -> int:
        if not self.buckets:
            return math.ceil(max(1, self.num_train_images) / self.batch_size)
        return sum(math.ceil(c / self.batch_size) for _, c in self.buckets)


@dataclass
class DatasetGroup:
    datasets: list[Dataset]
    from_config: bool

    @property
    def num_train_images(self) -> int:
        return sum(d.num_train_images for d in self.datasets)

    @property
    def num_reg_images(self) -> int:
        return sum(d.num_reg_images for d in self.datasets)

    @property
    def num_batches(self) -> int:
        return sum(d.num_batches for d in self.datasets)

    @property
    def num_validation_images(self) -> int:
        return sum(d.num_validation_images for d in self.datasets)

    @property
    def num_validation_batches(self) -> int:
        return sum(d.num_validation_batches for d in self.datasets)


def _png_size(path: str) -> tuple[int, int] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return int(w), int(h)
    return None


def _scan(subset: Subset) -> None:
    d = subset.image_dir
    if not os.path.isdir(d):
        subset.img_count = DEFAULT_IMAGES
        return
    names = sorted(n for n in os.listdir(d) if is_image(n))
    subset.img_count = len(names)
    freq: dict[str, int] = {}
    for n in names:
        stem = os.path.splitext(n)[0]
        size = _png_size(os.path.join(d, n))
        if size:
            subset.sizes.append(size)
        cap = os.path.join(d, stem + subset.caption_extension)
        try:
            with open(cap, encoding="utf-8", errors="replace") as f:
                text = f.readline().strip()
        except OSError:
            continue
        for tag in (t.strip() for t in text.split(",")):
            if tag:
                freq[tag] = freq.get(tag, 0) + 1
    subset.tag_frequency = freq


def _reso(value: Any) -> tuple[int, int]:
    return as_resolution(value) or (1024, 1024)


def bucket_resolutions(
    max_reso: tuple[int, int], min_size: int, max_size: int, divisible: int
) -> list[tuple[int, int]]:
    """sd-scripts' ``make_bucket_resolutions``: area-preserving resolutions, sorted."""
    max_area = max_reso[0] * max_reso[1]
    resos: set[tuple[int, int]] = set()
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((side, side))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def _make_buckets(ds: Dataset) -> None:
    """Bucket assignment like sd-scripts' BucketManager (nearest predefined aspect ratio)."""
    counts: dict[tuple[int, int], int] = {}
    errors: list[float] = []
    w0, h0 = ds.resolution
    step = ds.bucket_reso_steps
    resos = bucket_resolutions(ds.resolution, ds.min_bucket_reso, ds.max_bucket_reso, step)
    ratios = [w / h for w, h in resos]
    for s in ds.subsets:
        sizes = list(s.sizes) + [(w0, h0)] * max(0, s.img_count - len(s.sizes))
        for w, h in sizes:
            ar = w / h
            if not ds.enable_bucket:
                key = (w0, h0)
            elif ds.bucket_no_upscale:
                max_area = w0 * h0
                if w * h > max_area:
                    rw = math.sqrt(max_area * ar)
                    rh = max_area / rw
                    w, h = int(rw + 0.5), int(rh + 0.5)
                key = (max(step, w // step * step), max(step, h // step * step))
                errors.append(abs(key[0] / key[1] - ar))
            else:
                i = min(range(len(ratios)), key=lambda k: abs(ratios[k] - ar))
                key = resos[i]
                errors.append(abs(ratios[i] - ar))
            counts[key] = counts.get(key, 0) + s.num_repeats * (0 if s.is_reg else 1)
    ds.buckets = sorted((k, v) for k, v in counts.items() if v)
    ds.mean_ar_error = sum(errors) / len(errors) if errors else 0.0


_SUBSET_KEYS = set(Subset.__dataclass_fields__) - {"img_count", "tag_frequency", "sizes", "val_count"}


def load_dataset_group(args: Namespace) -> DatasetGroup:
    """The dataset group sd-scripts would build from these arguments."""
    if args.dataset_config:
        try:
            cfg = load_dataset_file(str(args.dataset_config))
        except (OSError, ValueError):
            cfg = {"datasets": [{"subsets": [{"image_dir": "img"}]}]}
        return _from_config(cfg, args)
    if args.train_data_dir:
        return _from_dirs(args)
    return _from_config({"datasets": [{"subsets": [{"image_dir": "img"}]}]}, args)


def _pick(key: str, *tables: dict[str, Any], default: Any = None) -> Any:
    return lookup(key, tables, default)


def _from_config(cfg: dict[str, Any], args: Namespace) -> DatasetGroup:
    general = cfg.get("general", {}) or {}
    datasets: list[Dataset] = []
    cli = {
        "batch_size": args.train_batch_size,
        "resolution": args.resolution,
        "enable_bucket": args.enable_bucket,
        "min_bucket_reso": args.min_bucket_reso,
        "max_bucket_reso": args.max_bucket_reso,
        "bucket_reso_steps": args.bucket_reso_steps,
        "bucket_no_upscale": args.bucket_no_upscale,
        "num_repeats": args.dataset_repeats,
        "caption_extension": args.caption_extension,
        "shuffle_caption": args.shuffle_caption,
        "keep_tokens": args.keep_tokens,
        "color_aug": args.color_aug,
        "flip_aug": args.flip_aug,
        "random_crop": args.random_crop,
        "validation_split": args.validation_split,
    }
    cli = {k: v for k, v in cli.items() if v is not None}
    for dcfg in cfg.get("datasets", []) or [{}]:
        subsets: list[Subset] = []
        for scfg in dcfg.get("subsets", []) or [{"image_dir": "img"}]:
            values = {k: _pick(k, scfg, dcfg, general, cli) for k in _SUBSET_KEYS}
            values = {k: v for k, v in values.items() if v is not None}
            values.setdefault("image_dir", "img")
            sub = Subset(**values)
            _scan(sub)
            subsets.append(sub)
        res = _pick("resolution", dcfg, general, cli, default=1024)
        ds = Dataset(
            batch_size=int(_pick("batch_size", dcfg, general, cli, default=1)),
            resolution=_reso(res),
            enable_bucket=bool(_pick("enable_bucket", dcfg, general, cli, default=False)),
            min_bucket_reso=int(_pick("min_bucket_reso", dcfg, general, cli, default=256)),
            max_bucket_reso=int(_pick("max_bucket_reso", dcfg, general, cli, default=1024)),
            bucket_reso_steps=int(_pick("bucket_reso_steps", dcfg, general, cli, default=64)),
            bucket_no_upscale=bool(_pick("bucket_no_upscale", dcfg, general, cli, default=False)),
            resize_interpolation=_pick("resize_interpolation", dcfg, general),
            subsets=subsets,
            validation_split=float(_pick("validation_split", dcfg, general, cli, default=0.0) or 0.0),
        )
        ds.split_validation()
        _make_buckets(ds)
        datasets.append(ds)
    return DatasetGroup(datasets, from_config=True)


def _from_dirs(args: Namespace) -> DatasetGroup:
    subsets: list[Subset] = []
    for root, is_reg in ((args.train_data_dir, False), (args.reg_data_dir, True)):
        if not root or not os.path.isdir(root):
            if root and not is_reg:
                sub = Subset(image_dir=os.path.join(root, "10_img"), num_repeats=10, is_reg=is_reg)
                _scan(sub)
                subsets.append(sub)
            continue
        for name in sorted(os.listdir(root)):
            folder = repeats_folder(name)
            if folder is None or not os.path.isdir(os.path.join(root, name)):
                continue
            sub = Subset(
                image_dir=os.path.join(root, name),
                num_repeats=folder[0],
                class_tokens=folder[1],
                is_reg=is_reg,
                caption_extension=args.caption_extension or ".caption",
            )
            _scan(sub)
            subsets.append(sub)
    ds = Dataset(
        batch_size=args.train_batch_size,
        resolution=_reso(args.resolution or 1024),
        enable_bucket=args.enable_bucket,
        min_bucket_reso=args.min_bucket_reso,
        max_bucket_reso=args.max_bucket_reso,
        bucket_reso_steps=args.bucket_reso_steps,
        bucket_no_upscale=args.bucket_no_upscale,
        resize_interpolation=args.resize_interpolation,
        subsets=subsets or [Subset(image_dir="img", img_count=DEFAULT_IMAGES)],
        validation_split=float(args.validation_split or 0.0),
    )
    ds.split_validation()
    _make_buckets(ds)
    return DatasetGroup([ds], from_config=False)


def dataset_info_text(ds: Dataset, index: int) -> str:
    """The ``[Dataset i]`` summary block logged by ``config_util`` (one multi-line record)."""
    lines = [
        f"[Dataset {index}]",
        f"  batch_size: {ds.batch_size}",
        f"  resolution: {ds.resolution}",
        f"  resize_interpolation: {ds.resize_interpolation}",
        f"  enable_bucket: {ds.enable_bucket}",
    ]
    if ds.enable_bucket:
        lines += [
            f"  min_bucket_reso: {ds.min_bucket_reso}",
            f"  max_bucket_reso: {ds.max_bucket_reso}",
            f"  bucket_reso_steps: {ds.bucket_reso_steps}",
            f"  bucket_no_upscale: {ds.bucket_no_upscale}",
        ]
    lines.append("")
    for j, s in enumerate(ds.subsets):
        lines += [
            f"  [Subset {j} of Dataset {index}]",
            f'    image_dir: "{s.image_dir}"',
            f"    image_count: {s.img_count}",
            f"    num_repeats: {s.num_repeats}",
            f"    shuffle_caption: {s.shuffle_caption}",
            f"    keep_tokens: {s.keep_tokens}",
            f"    caption_dropout_rate: {float(s.caption_dropout_rate)}",
            f"    caption_dropout_every_n_epochs: {s.caption_dropout_every_n_epochs}",
            f"    caption_tag_dropout_rate: {float(s.caption_tag_dropout_rate)}",
            f"    caption_prefix: {s.caption_prefix}",
            f"    caption_suffix: {s.caption_suffix}",
            f"    color_aug: {s.color_aug}",
            f"    flip_aug: {s.flip_aug}",
            f"    face_crop_aug_range: {s.face_crop_aug_range}",
            f"    random_crop: {s.random_crop}",
            f"    token_warmup_min: {s.token_warmup_min},",
            f"    token_warmup_step: {s.token_warmup_step},",
            f"    alpha_mask: {s.alpha_mask}",
            f"    resize_interpolation: {s.resize_interpolation}",
            f"    custom_attributes: {s.custom_attributes}",
            f"    is_reg: {s.is_reg}",
            f"    class_tokens: {s.class_tokens}",
            f"    caption_extension: {s.caption_extension}",
            "",
        ]
    lines.append("")
    return "\n".join(lines)


def datasets_metadata(group: DatasetGroup) -> dict[str, str]:
    """The dataset ``ss_*`` keys (``ss_datasets``, ``ss_tag_frequency``, ``ss_dataset_dirs``...)."""
    md: dict[str, str] = {}
    tag_frequency: dict[str, dict[str, int]] = {}
    dataset_dirs: dict[str, dict[str, int]] = {}
    reg_dirs: dict[str, dict[str, int]] = {}
    entries = []
    for ds in group.datasets:
        ds_tags: dict[str, dict[str, int]] = {}
        subsets_md = []
        for s in ds.subsets:
            base = os.path.basename(os.path.normpath(s.image_dir))
            ds_tags[base] = dict(s.tag_frequency)
            (reg_dirs if s.is_reg else dataset_dirs)[base] = {"n_repeats": s.num_repeats, "img_count": s.img_count}
            subsets_md.append(_subset_metadata(s, base))
        tag_frequency.update(ds_tags)
        entries.append(_dataset_metadata(ds, ds_tags, subsets_md))
    if group.from_config:
        md["ss_datasets"] = json.dumps(entries)
    else:
        md.update(_single_dataset_metadata(group.datasets[0], reg_dirs))
    md["ss_tag_frequency"] = json.dumps(tag_frequency)
    md["ss_dataset_dirs"] = json.dumps(dataset_dirs)
    return md


def _subset_metadata(s: Subset, base: str) -> dict[str, Any]:
    """One subset's entry in ``ss_datasets``."""
    return {
        "img_count": s.img_count,
        "num_repeats": s.num_repeats,
        "color_aug": s.color_aug,
        "flip_aug": s.flip_aug,
        "random_crop": s.random_crop,
        "shuffle_caption": s.shuffle_caption,
        "keep_tokens": s.keep_tokens,
        "keep_tokens_separator": s.keep_tokens_separator,
        "secondary_separator": s.secondary_separator,
        "enable_wildcard": s.enable_wildcard,
        "caption_prefix": s.caption_prefix,
        "caption_suffix": s.caption_suffix,
        "resize_interpolation": s.resize_interpolation,
        "image_dir": base,
        "class_tokens": s.class_tokens,
        "is_reg": s.is_reg,
    }


def _dataset_metadata(
    ds: Dataset, ds_tags: dict[str, dict[str, int]], subsets_md: list[dict[str, Any]]
) -> dict[str, Any]:
    """One dataset's entry in ``ss_datasets`` (a dataset TOML's run)."""
    return {
        "is_dreambooth": True,
        "batch_size_per_device": ds.batch_size,
        "num_train_images": ds.num_train_images,
        "num_reg_images": ds.num_reg_images,
        "resolution": list(ds.resolution),
        "enable_bucket": ds.enable_bucket,
        "min_bucket_reso": ds.min_bucket_reso,
        "max_bucket_reso": ds.max_bucket_reso,
        "tag_frequency": ds_tags,
        "bucket_info": _bucket_info(ds),
        "resize_interpolation": ds.resize_interpolation,
        "subsets": subsets_md,
    }


def _single_dataset_metadata(ds: Dataset, reg_dirs: dict[str, dict[str, int]]) -> dict[str, str]:
    """The flat ``ss_*`` keys of a run without a dataset TOML (``--train_data_dir``)."""
    s0 = ds.subsets[0]
    return {
        "ss_batch_size_per_device": str(ds.batch_size),
        "ss_total_batch_size": str(ds.batch_size),
        "ss_resolution": str(ds.resolution),
        "ss_color_aug": str(s0.color_aug),
        "ss_flip_aug": str(s0.flip_aug),
        "ss_random_crop": str(s0.random_crop),
        "ss_shuffle_caption": str(s0.shuffle_caption),
        "ss_enable_bucket": str(ds.enable_bucket),
        "ss_bucket_no_upscale": str(ds.bucket_no_upscale),
        "ss_min_bucket_reso": str(ds.min_bucket_reso),
        "ss_max_bucket_reso": str(ds.max_bucket_reso),
        "ss_keep_tokens": str(s0.keep_tokens),
        "ss_reg_dataset_dirs": json.dumps(reg_dirs),
        "ss_bucket_info": json.dumps(_bucket_info(ds)),
    }


def _bucket_info(ds: Dataset) -> dict[str, Any] | None:
    if not ds.enable_bucket:
        return None
    return {
        "buckets": {str(i): {"resolution": list(r), "count": c} for i, (r, c) in enumerate(ds.buckets)},
        "mean_img_ar_error": ds.mean_ar_error,
    }
