"""What the run says about its own configuration, from three places, merged field by field.

Why three: the trainer's log prints a ``running training`` block (the truth, when it is in
the part of the log that was read); every checkpoint header carries ``ss_*`` metadata
(``train_network.py:NetworkTrainer.train`` builds it); and the command line (live process,
run record or launch config) says what was asked for. :func:`merge_config` takes each field
from the first that knows it: log > metadata > options.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from sdxl_tui.formats.cmdline import OptionValues
from sdxl_tui.formats.names import classify_name
from sdxl_tui.model import Checkpoint, CheckpointKind, TrainConfig
from sdxl_tui.sources.logparse import SaveEvent

__all__ = [
    "config_from_metadata",
    "config_from_options",
    "infer_save_every",
    "logged_saves",
    "merge_config",
    "spacing_of_logged",
]


def _opt(options: OptionValues, name: str) -> str | None:
    v = options.get(name)
    return v[0] if isinstance(v, tuple) and v else None


def _float(text: str | None) -> float | None:
    """A number from a metadata or option string; None for "None", garbage or NaN."""
    if text is None:
        return None
    s = text.strip()
    if s in ("", "None", "none", "null"):
        return None
    try:
        value = float(s)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _int(text: str | None) -> int | None:
    value = _float(text)
    return None if value is None or math.isinf(value) else int(value)


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    return str(text).strip().lower() in ("true", "1", "yes")


def _resolution_from_metadata(md: Mapping[str, str]) -> str | None:
    if md.get("ss_resolution"):
        r = md["ss_resolution"].strip("()[] ").replace(" ", "").split(",")
        return "x".join(r)
    datasets = md.get("ss_datasets")
    if datasets:
        try:
            first = json.loads(datasets)[0]
            res = first.get("resolution")
            if isinstance(res, (list, tuple)) and len(res) == 2:
                return f"{res[0]}x{res[1]}"
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            pass
    return None


def _batch_from_metadata(md: Mapping[str, str]) -> int | None:
    if md.get("ss_batch_size_per_device"):
        return _int(md["ss_batch_size_per_device"])
    datasets = md.get("ss_datasets")
    if datasets:
        try:
            return int(json.loads(datasets)[0]["batch_size_per_device"])
        except (ValueError, IndexError, KeyError, TypeError):
            return None
    return None


def config_from_metadata(md: Mapping[str, str]) -> TrainConfig:
    """The ``ss_*`` keys of a checkpoint header as a TrainConfig (``train_network.py:NetworkTrainer.train`` writes them)."""
    if not md:
        return TrainConfig()
    return TrainConfig(
        output_name=md.get("ss_output_name") or None,
        num_train_images=_int(md.get("ss_num_train_images")),
        num_reg_images=_int(md.get("ss_num_reg_images")),
        num_batches_per_epoch=_int(md.get("ss_num_batches_per_epoch")),
        num_epochs=_int(md.get("ss_num_epochs")),
        batch_size=_batch_from_metadata(md),
        gradient_accumulation_steps=_int(md.get("ss_gradient_accumulation_steps")),
        total_steps=_int(md.get("ss_max_train_steps")),
        network_dim=_int(md.get("ss_network_dim")),
        network_alpha=_float(md.get("ss_network_alpha")),
        learning_rate=_float(md.get("ss_learning_rate")),
        unet_lr=_float(md.get("ss_unet_lr")),
        text_encoder_lr=_float(md.get("ss_text_encoder_lr")),
        optimizer=md.get("ss_optimizer") or None,
        scheduler=md.get("ss_lr_scheduler") or None,
        resolution=_resolution_from_metadata(md),
        base_model_version=md.get("ss_base_model_version") or None,
        mixed_precision=md.get("ss_mixed_precision") or None,
        gradient_checkpointing=_bool(md.get("ss_gradient_checkpointing")),
    )


def config_from_options(options: OptionValues, script: str | None = None) -> TrainConfig:
    """Trainer options as a TrainConfig (what the command line or launch config asks for)."""
    if not options:
        return TrainConfig()

    def flag(name: str) -> bool | None:
        return True if options.get(name) is True else None

    attention = next((a for a in ("xformers", "sdpa", "mem_eff_attn") if options.get(a) is True), None)
    base = None
    if script and "sdxl" in os.path.basename(script):
        base = "sdxl"
    res = _opt(options, "resolution")
    return TrainConfig(
        output_name=_opt(options, "output_name"),
        num_epochs=_int(_opt(options, "max_train_epochs")),
        batch_size=_int(_opt(options, "train_batch_size")) if "dataset_config" not in options else None,
        gradient_accumulation_steps=_int(_opt(options, "gradient_accumulation_steps")),
        total_steps=None if "max_train_epochs" in options else _int(_opt(options, "max_train_steps")),
        network_dim=_int(_opt(options, "network_dim")),
        network_alpha=_float(_opt(options, "network_alpha")),
        learning_rate=_float(_opt(options, "learning_rate")),
        unet_lr=_float(_opt(options, "unet_lr")),
        text_encoder_lr=_float(_opt(options, "text_encoder_lr")),
        optimizer=_opt(options, "optimizer_type"),
        scheduler=_opt(options, "lr_scheduler"),
        resolution=res.replace(",", "x") if res else None,
        base_model_version=base,
        mixed_precision=_opt(options, "mixed_precision"),
        save_every_n_epochs=_int(_opt(options, "save_every_n_epochs")),
        save_every_n_steps=_int(_opt(options, "save_every_n_steps")),
        save_state=bool(options.get("save_state") is True or options.get("save_state_on_train_end") is True),
        gradient_checkpointing=flag("gradient_checkpointing"),
        cache_text_encoder_outputs=flag("cache_text_encoder_outputs"),
        network_train_unet_only=flag("network_train_unet_only"),
        attention=attention,
        logging_dir=_opt(options, "logging_dir"),
    )


def merge_config(*layers: TrainConfig | None) -> TrainConfig:
    """Field by field, the first layer that knows a value wins (log > metadata > options)."""
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        for layer in layers:
            if layer is None:
                continue
            v = getattr(layer, f.name)
            if v is not None and not (f.name == "save_state" and v is False):
                values[f.name] = v
                break
    return TrainConfig(**values)


def infer_save_every(checkpoints: Sequence[Checkpoint]) -> tuple[int | None, int | None]:
    """(every_n_epochs, every_n_steps) from the spacing of existing checkpoints."""
    epochs = sorted({c.epoch for c in checkpoints if c.kind is CheckpointKind.EPOCH and c.epoch})
    steps = sorted({c.step for c in checkpoints if c.kind is CheckpointKind.STEP and c.step})

    def spacing(xs: list[int]) -> int | None:
        if not xs:
            return None
        if len(xs) == 1:
            return xs[0]
        gaps = [b - a for a, b in itertools.pairwise(xs) if b > a]
        return min(gaps) if gaps else None

    return spacing(epochs), spacing(steps)


def logged_saves(saves: Sequence[SaveEvent]) -> list[tuple[str, CheckpointKind, int]]:
    """(output name, kind, number) of the epoch/step checkpoints the log announced."""
    out: list[tuple[str, CheckpointKind, int]] = []
    for ev in saves:
        if ev.kind != "checkpoint" or not ev.path:
            continue
        stem = os.path.splitext(os.path.basename(ev.path))[0]
        kind, name, number = classify_name(stem)
        if kind is not None and number is not None:
            out.append((name, kind, number))
    return out


def spacing_of_logged(logged: Sequence[tuple[str, CheckpointKind, int]]) -> tuple[int | None, int | None]:
    def spacing(xs: list[int]) -> int | None:
        xs = sorted(set(xs))
        if not xs:
            return None
        gaps = [b - a for a, b in itertools.pairwise(xs)]
        return min(gaps) if gaps else xs[0]

    return (spacing([n for _, k, n in logged if k is CheckpointKind.EPOCH]),
            spacing([n for _, k, n in logged if k is CheckpointKind.STEP]))
