"""Rules about what the run will need: data, modules, steps and time, disk, VRAM.

Each rule reads and extends a :class:`~sdxl_tui.planning.checkctx.Check`; the table of rules
(and the codes each can report) is :data:`sdxl_tui.planning.rules.RULES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sdxl_tui.humanize import format_bytes, format_duration_words
from sdxl_tui.planning import estimate as est
from sdxl_tui.planning.checkctx import (
    BUCKET_OPTIONS,
    Check,
    gpu_status,
    nearest_existing,
    required_modules,
    resolve_path,
)
from sdxl_tui.planning.dataset import DatasetCheck, validate_dataset_config
from sdxl_tui.planning.environment import environment_for_prefix
from sdxl_tui.planning.findings import Finding


def check_dataset(ctx: Check) -> None:
    """The dataset: the dataset TOML checked as sd-scripts reads it, or the training folder."""
    values = ctx.values
    dataset_config = values.get("dataset_config")
    if dataset_config:
        ctx.ds = _check_dataset_toml(ctx, str(dataset_config))
        ctx.bucketing = any(d.enable_bucket for d in ctx.ds.datasets)
    elif values.get("train_data_dir"):
        ctx.ds = None
        _check_data_dir(ctx)
    else:
        ctx.ds = None
        ctx.add(
            Finding(
                "error",
                "no-dataset",
                "neither --dataset_config nor --train_data_dir: no training data",
                "add --dataset_config DATASET.toml",
                None,
            )
        )


def _check_dataset_toml(ctx: Check, dataset_config: str) -> DatasetCheck:
    """``--dataset_config``: the TOML's own findings, and the options it makes useless."""
    add, given = ctx.add, ctx.given
    ds = validate_dataset_config(dataset_config, sdxl=ctx.sdxl, args=dict(ctx.values.items()), cwd=ctx.inp.cwd)
    ctx.findings.extend(ds.findings)
    for dest in ("train_data_dir", "reg_data_dir", "in_json"):
        if given(dest):
            add(
                Finding(
                    "warning",
                    "option-ignored",
                    f"--{dest} is ignored because --dataset_config is given",
                    f"drop --{dest} or put that folder in the dataset TOML",
                    f"--{dest}",
                )
            )
    for dest, key in (
        ("train_batch_size", "batch_size"),
        ("resolution", "resolution"),
        ("dataset_repeats", "num_repeats"),
        *((b, b) for b in BUCKET_OPTIONS),
        ("enable_bucket", "enable_bucket"),
        ("caption_extension", "caption_extension"),
    ):
        if given(dest) and key in ds.explicit_keys and ds.datasets:
            add(
                Finding(
                    "note",
                    "cli-fallback-ignored",
                    f"--{dest} is only a fallback: the dataset TOML sets {key}, which wins",
                    f"set {key} in the dataset TOML and drop --{dest}",
                    f"--{dest}",
                )
            )
    used = [b for b in BUCKET_OPTIONS if given(b)]
    if used and ds.datasets and not any(d.enable_bucket for d in ds.datasets):
        add(
            Finding(
                "warning",
                "bucket-without-bucketing",
                f"{', '.join('--' + b for b in used)} do nothing: bucketing is off (no enable_bucket = true "
                "in the dataset TOML and no --enable_bucket); images are cropped to the resolution",
                "set enable_bucket = true in the dataset TOML ([general] or [[datasets]])",
                "enable_bucket",
            )
        )
    return ds


def _check_data_dir(ctx: Check) -> None:
    """``--train_data_dir`` without a dataset TOML: the folder, the resolution, bucketing."""
    values, add = ctx.values, ctx.add
    tdd = resolve_path(values.get("train_data_dir"), ctx.inp.cwd)
    if tdd is not None and not tdd.is_dir():
        what = f"--train_data_dir {tdd} is not a folder"
        add(Finding("error", "dataset-folder-missing", what, "fix the path", str(tdd)))
    if not values.get("resolution"):
        add(
            Finding(
                "error",
                "dataset-no-resolution",
                "no --resolution (and no dataset TOML)",
                f"add --resolution {1024 if ctx.sdxl else 512}",
                "--resolution",
            )
        )
    used = [b for b in BUCKET_OPTIONS if ctx.given(b)]
    if used and not values.get("enable_bucket"):
        add(
            Finding(
                "warning",
                "bucket-without-bucketing",
                f"{', '.join('--' + b for b in used)} do nothing without --enable_bucket",
                "add --enable_bucket",
                "--enable_bucket",
            )
        )


def check_environment(ctx: Check) -> None:
    """Modules the options need, imported in the trainer's own environment."""
    need = required_modules(ctx.values)
    if need and ctx.inspect_environment:
        env = ctx.environment
        if env is None:
            env = environment_for_prefix(ctx.inp.prefix, cwd=str(ctx.inp.cwd))
        answer = env.has_modules(list(need))
        unknown = [m for m, ok in answer.items() if ok is None]
        for mod, ok in answer.items():
            if ok is False:
                ctx.add(
                    Finding(
                        "error",
                        "missing-module",
                        f"{need[mod]} needs the `{mod}` module, which the trainer's environment "
                        f"({env.description}) cannot import; the run fails after loading the models",
                        (
                            "use --sdpa instead of --xformers (built into torch), or install xformers"
                            if mod == "xformers"
                            else f"install {mod} in that environment"
                        ),
                        mod,
                    )
                )
        if unknown:
            why = env.error or env.description
            ctx.add(
                Finding(
                    "note",
                    "environment-unknown",
                    f"could not check that {', '.join(unknown)} import in the trainer's environment ({why})",
                    f"make sure {', '.join(unknown)} are installed there",
                    None,
                )
            )
    ctx.facts["needs_modules"] = sorted(need)
    ctx.need = need


def _attention(values: Mapping[str, Any]) -> str | None:
    """The attention the options choose (``--xformers``, ``--sdpa``, ``--mem_eff_attn``), or None."""
    if values.get("xformers"):
        return "xformers"
    if values.get("sdpa"):
        return "sdpa"
    return "mem_eff_attn" if values.get("mem_eff_attn") else None


def check_steps(ctx: Check) -> None:
    """Steps per epoch, total steps and about how long they take."""
    values, facts = ctx.values, ctx.facts
    _batch_shape(ctx)
    facts.update(
        batch_size=ctx.batch_size,
        gradient_accumulation_steps=ctx.accum,
        effective_batch=ctx.batch_size * ctx.accum,
        train_images_with_repeats=ctx.images,
        resolution=list(ctx.resolution),
    )
    epochs_opt = values.get("max_train_epochs")
    spe = est.steps_per_epoch(ctx.batches, ctx.accum) if ctx.batches else None
    if not spe:
        ctx.epochs = int(epochs_opt or 0)
        return
    facts["batches_per_epoch"] = ctx.batches
    facts["steps_per_epoch"] = spe
    if epochs_opt:
        total = int(epochs_opt) * spe
        ctx.epochs = int(epochs_opt)
    else:
        total = int(values.get("max_train_steps") or 1600)
        ctx.epochs = math.ceil(total / spe)
        ctx.add(
            Finding(
                "note",
                "steps-by-max-train-steps",
                f"no --max_train_epochs: training stops after --max_train_steps {total} steps "
                f"(about {ctx.epochs} epochs)",
                "set --max_train_epochs to train by epochs",
                "--max_train_epochs",
            )
        )
    facts["epochs"] = ctx.epochs
    facts["total_steps"] = total
    if ctx.bucketing:
        facts["steps_note"] = "with bucketing, batches per epoch can be a little higher (one partial batch per bucket)"
    if ctx.sdxl:
        _time_estimate(ctx, total)
    warm = values.get("lr_warmup_steps") or 0
    if isinstance(warm, (int, float)) and warm >= 1 and warm >= total:
        ctx.add(
            Finding(
                "warning",
                "warmup-too-long",
                f"--lr_warmup_steps {warm} is not below the {total} optimizer steps: the learning rate "
                "never leaves warm-up",
                "lower --lr_warmup_steps (it counts optimizer steps)",
                "--lr_warmup_steps",
            )
        )


def _batch_shape(ctx: Check) -> None:
    """Batch size, accumulation, batches, images, resolution and bucketing, from the dataset TOML
    when there is one (else from the options)."""
    values, ds = ctx.values, ctx.ds
    ctx.accum = int(values.get("gradient_accumulation_steps") or 1)
    if ds is not None and ds.datasets:
        ctx.batches = ds.batches
        ctx.batch_size = max(d.batch_size for d in ds.datasets)
        ctx.images = ds.train_images_with_repeats
        ctx.resolution = next((d.resolution for d in ds.datasets if d.resolution), None) or (1024, 1024)
        ctx.bucketing = any(d.enable_bucket for d in ds.datasets)
    else:
        ctx.batches = 0
        ctx.batch_size = int(values.get("train_batch_size") or 1)
        ctx.images = 0
        ctx.resolution = (1024, 1024) if ctx.sdxl else (512, 512)
        ctx.bucketing = bool(values.get("enable_bucket"))


def _time_estimate(ctx: Check, total: int) -> None:
    values = ctx.values
    sps = est.seconds_per_step(
        batch_size=ctx.batch_size,
        gradient_accumulation_steps=ctx.accum,
        resolution=ctx.resolution,
        gradient_checkpointing=bool(values.get("gradient_checkpointing")),
        attention=_attention(values),
        train_text_encoders=not values.get("network_train_unet_only"),
    )
    ctx.facts["seconds_per_step_estimate"] = round(sps, 2)
    ctx.facts["time_estimate_seconds"] = round(sps * total)
    ctx.facts["time_estimate"] = (
        f"about {format_duration_words(sps * total)} (estimate for an RTX 3090/4090-class "
        "GPU; the dashboard shows the measured rate once it runs)"
    )


def check_disk(ctx: Check) -> None:
    """The checkpoints (and states) the run writes, against the free disk space."""
    values = ctx.values
    ctx.dim = int(values.get("network_dim") or 4)
    ctx.unet_only = bool(values.get("network_train_unet_only"))
    ctx.te_only = bool(values.get("network_train_text_encoder_only"))
    if not (ctx.sdxl and ctx.epochs):
        return
    prec = values.get("save_precision")
    bpv = (
        2 if prec in ("fp16", "bf16") or (prec is None and (values.get("full_fp16") or values.get("full_bf16"))) else 4
    )
    file_bytes = est.lora_file_bytes(
        ctx.dim, unet=not ctx.te_only, text_encoders=not ctx.unet_only, bytes_per_value=bpv
    )
    files, states, need_bytes = _disk_needed(ctx, file_bytes)
    ctx.facts.update(
        checkpoint_bytes=file_bytes, checkpoint_files=files, state_dirs=states, disk_needed_bytes=need_bytes
    )
    if ctx.out_dir is None:
        return
    where = nearest_existing(ctx.out_dir)
    try:
        free = int(ctx.disk_usage(str(where)).free)
    except OSError:
        return
    ctx.facts["disk_free_bytes"] = free
    what = f"{files} LoRA files of {format_bytes(file_bytes)}" + (f" and {states} state folders" if states else "")
    if need_bytes > free:
        ctx.add(
            Finding(
                "error",
                "disk-space",
                f"the run writes {format_bytes(need_bytes)} ({what}) but only "
                f"{format_bytes(free)} is free under {where}; a save fails mid-run",
                "free space, use --save_last_n_epochs N, or save less often",
                str(where),
            )
        )
    elif need_bytes > 0.8 * free:
        ctx.add(
            Finding(
                "warning",
                "disk-space",
                f"the run writes {format_bytes(need_bytes)} ({what}), {need_bytes * 100 // free}% "
                f"of the {format_bytes(free)} free under {where}",
                "free space or keep fewer checkpoints (--save_last_n_epochs)",
                str(where),
            )
        )


def _disk_needed(ctx: Check, file_bytes: int) -> tuple[int, int, int]:
    """(LoRA files kept, state folders kept, bytes they take) under the save and removal options."""
    values, epochs = ctx.values, ctx.epochs
    every = values.get("save_every_n_epochs")
    ratio = values.get("save_n_epoch_ratio")
    if ratio:
        every = max(1, math.floor(epochs / int(ratio)))
    epoch_files = est.kept_count(len(est.saved_epochs(epochs, every)), values.get("save_last_n_epochs"))
    step_files = 0
    n_steps = values.get("save_every_n_steps")
    if n_steps and ctx.facts.get("total_steps"):
        step_files = int(ctx.facts["total_steps"]) // int(n_steps)
        keep = values.get("save_last_n_steps")
        if keep:
            step_files = min(step_files, int(keep) // int(n_steps) + 1)
    files = epoch_files + step_files + 1
    need_bytes = files * file_bytes
    states = 0
    if values.get("save_state") or values.get("save_state_on_train_end"):
        per_state = est.state_dir_bytes(
            ctx.dim, unet=not ctx.te_only, text_encoders=not ctx.unet_only, eight_bit="bitsandbytes" in ctx.need
        )
        if values.get("save_state"):
            keep_s = values.get("save_last_n_epochs_state") or values.get("save_last_n_epochs")
            states = est.kept_count(len(est.saved_epochs(epochs, every)), keep_s) + step_files
        states += 1
        need_bytes += states * per_state
    return files, states, need_bytes


def check_vram(ctx: Check) -> None:
    """The estimated peak VRAM, against what the GPU has free."""
    if not ctx.sdxl:
        return
    values, facts = ctx.values, ctx.facts
    vram = est.estimate_vram(
        batch_size=ctx.batch_size,
        resolution=ctx.resolution,
        dim=ctx.dim,
        train_text_encoders=not ctx.unet_only,
        gradient_checkpointing=bool(values.get("gradient_checkpointing")),
        attention=_attention(values),
        mixed_precision=str(values.get("mixed_precision") or "no"),
        eight_bit_optimizer="bitsandbytes" in ctx.need,
        cache_latents=bool(values.get("cache_latents") or values.get("cache_latents_to_disk")),
        cache_text_encoder_outputs=bool(values.get("cache_text_encoder_outputs")),
        fp8_base=bool(values.get("fp8_base") or values.get("fp8_base_unet")),
        full_half=bool(values.get("full_fp16") or values.get("full_bf16")),
    )
    facts["vram_estimate_gb"] = vram.total_gb
    status = gpu_status(ctx.gpu)
    gpus = status.gpus if status is not None else ()
    visible = ctx.inp.env.get("CUDA_VISIBLE_DEVICES") if ctx.inp.env else None
    index = 0
    if visible and visible.split(",")[0].strip().isdigit():
        index = int(visible.split(",")[0])
    gpu_sample = next((g for g in gpus if g.index == index), gpus[0] if gpus else None)
    if gpu_sample is None or not gpu_sample.memory_total:
        reason = status.reason if status is not None else None
        ctx.add(
            Finding(
                "note",
                "gpu-unknown",
                f"no GPU information ({reason or 'NVML not available'}); estimated peak VRAM "
                f"{vram.total_gb:.1f} GiB",
                "make sure the GPU has that much free",
                None,
            )
        )
        return
    free_gb = (gpu_sample.memory_total - (gpu_sample.memory_used or 0)) / est.GIB
    facts["gpu"] = gpu_sample.name
    facts["gpu_free_gb"] = round(free_gb, 1)
    if vram.total_gb > free_gb:
        ctx.add(
            Finding(
                "warning",
                "vram",
                f"estimated peak VRAM {vram.total_gb:.1f} GiB (a rough estimate) is more than the "
                f"{free_gb:.1f} GiB free on {facts['gpu']}; expect CUDA out of memory",
                "lower batch_size in the dataset TOML (and raise --gradient_accumulation_steps), "
                "add --gradient_checkpointing, --cache_latents, --xformers/--sdpa, or --fp8_base",
                "vram",
            )
        )
