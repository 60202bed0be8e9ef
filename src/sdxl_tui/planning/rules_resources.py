"""Rules about what the run will need: data, modules, steps and time, disk, VRAM.

Each rule reads and extends a :class:`~sdxl_tui.planning.checkctx.Check`; the table of rules
(and the codes each can report) is :data:`sdxl_tui.planning.rules.RULES`.
"""

from __future__ import annotations

import math

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
from sdxl_tui.planning.dataset import validate_dataset_config
from sdxl_tui.planning.environment import environment_for_prefix
from sdxl_tui.planning.findings import Finding


def check_dataset(ctx: Check) -> None:
    """The dataset: the dataset TOML checked as sd-scripts reads it, or the training folder."""
    add = ctx.add
    given = ctx.given
    values, findings, inp, sdxl, ds, bucketing = ctx.values, ctx.findings, ctx.inp, ctx.sdxl, ctx.ds, ctx.bucketing
    ds = None
    dataset_config = values.get("dataset_config")
    if dataset_config:
        ds_args = dict(values.items())
        ds = validate_dataset_config(str(dataset_config), sdxl=sdxl, args=ds_args, cwd=inp.cwd)
        findings.extend(ds.findings)
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
        toml_keys = ds.explicit_keys
        for dest, key in (
            ("train_batch_size", "batch_size"),
            ("resolution", "resolution"),
            ("dataset_repeats", "num_repeats"),
            *((b, b) for b in BUCKET_OPTIONS),
            ("enable_bucket", "enable_bucket"),
            ("caption_extension", "caption_extension"),
        ):
            if given(dest) and key in toml_keys and ds.datasets:
                add(
                    Finding(
                        "note",
                        "cli-fallback-ignored",
                        f"--{dest} is only a fallback: the dataset TOML sets {key}, which wins",
                        f"set {key} in the dataset TOML and drop --{dest}",
                        f"--{dest}",
                    )
                )
        bucketing = any(d.enable_bucket for d in ds.datasets)
        used = [b for b in BUCKET_OPTIONS if given(b)]
        if used and ds.datasets and not bucketing:
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
    elif values.get("train_data_dir"):
        tdd = resolve_path(values.get("train_data_dir"), inp.cwd)
        if tdd is not None and not tdd.is_dir():
            add(
                Finding(
                    "error",
                    "dataset-folder-missing",
                    f"--train_data_dir {tdd} is not a folder",
                    "fix the path",
                    str(tdd),
                )
            )
        if not values.get("resolution"):
            add(
                Finding(
                    "error",
                    "dataset-no-resolution",
                    "no --resolution (and no dataset TOML)",
                    f"add --resolution {1024 if sdxl else 512}",
                    "--resolution",
                )
            )
        used = [b for b in BUCKET_OPTIONS if given(b)]
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
    else:
        add(
            Finding(
                "error",
                "no-dataset",
                "neither --dataset_config nor --train_data_dir: no training data",
                "add --dataset_config DATASET.toml",
                None,
            )
        )
    ctx.ds = ds
    ctx.bucketing = bucketing


def check_environment(ctx: Check) -> None:
    """Modules the options need, imported in the trainer's own environment."""
    add = ctx.add
    values, facts, inp, need, environment, inspect_environment = (
        ctx.values,
        ctx.facts,
        ctx.inp,
        ctx.need,
        ctx.environment,
        ctx.inspect_environment,
    )
    need = required_modules(values)
    if need and inspect_environment:
        env = environment if environment is not None else environment_for_prefix(inp.prefix, cwd=str(inp.cwd))
        answer = env.has_modules(list(need))
        unknown = [m for m, ok in answer.items() if ok is None]
        for mod, ok in answer.items():
            if ok is False:
                add(
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
            add(
                Finding(
                    "note",
                    "environment-unknown",
                    f"could not check that {', '.join(unknown)} import in the trainer's environment ({why})",
                    f"make sure {', '.join(unknown)} are installed there",
                    None,
                )
            )
    facts["needs_modules"] = sorted(need)
    ctx.need = need


def check_steps(ctx: Check) -> None:
    """Steps per epoch, total steps and about how long they take."""
    add = ctx.add
    values, facts, sdxl, ds, batch_size, accum, resolution, bucketing, batches, images, epochs = (
        ctx.values,
        ctx.facts,
        ctx.sdxl,
        ctx.ds,
        ctx.batch_size,
        ctx.accum,
        ctx.resolution,
        ctx.bucketing,
        ctx.batches,
        ctx.images,
        ctx.epochs,
    )
    accum = int(values.get("gradient_accumulation_steps") or 1)
    if ds is not None and ds.datasets:
        batches = ds.batches
        batch_size = max(d.batch_size for d in ds.datasets)
        images = ds.train_images_with_repeats
        resolution = next((d.resolution for d in ds.datasets if d.resolution), None) or (1024, 1024)
        bucketing = any(d.enable_bucket for d in ds.datasets)
    else:
        batches = 0
        batch_size = int(values.get("train_batch_size") or 1)
        images = 0
        resolution = (1024, 1024) if sdxl else (512, 512)
        bucketing = bool(values.get("enable_bucket"))
    facts.update(
        batch_size=batch_size,
        gradient_accumulation_steps=accum,
        effective_batch=batch_size * accum,
        train_images_with_repeats=images,
        resolution=list(resolution),
    )
    epochs_opt = values.get("max_train_epochs")
    spe = est.steps_per_epoch(batches, accum) if batches else None
    if spe:
        facts["batches_per_epoch"] = batches
        facts["steps_per_epoch"] = spe
        if epochs_opt:
            total = int(epochs_opt) * spe
            epochs = int(epochs_opt)
        else:
            total = int(values.get("max_train_steps") or 1600)
            epochs = math.ceil(total / spe)
            add(
                Finding(
                    "note",
                    "steps-by-max-train-steps",
                    f"no --max_train_epochs: training stops after --max_train_steps {total} steps "
                    f"(about {epochs} epochs)",
                    "set --max_train_epochs to train by epochs",
                    "--max_train_epochs",
                )
            )
        facts["epochs"] = epochs
        facts["total_steps"] = total
        if bucketing:
            facts["steps_note"] = (
                "with bucketing, batches per epoch can be a little higher (one partial batch per bucket)"
            )
        attention = (
            "xformers"
            if values.get("xformers")
            else "sdpa"
            if values.get("sdpa")
            else ("mem_eff_attn" if values.get("mem_eff_attn") else None)
        )
        train_te = not values.get("network_train_unet_only")
        sps = est.seconds_per_step(
            batch_size=batch_size,
            gradient_accumulation_steps=accum,
            resolution=resolution,
            gradient_checkpointing=bool(values.get("gradient_checkpointing")),
            attention=attention,
            train_text_encoders=train_te,
        )
        if sdxl:
            facts["seconds_per_step_estimate"] = round(sps, 2)
            facts["time_estimate_seconds"] = round(sps * total)
            facts["time_estimate"] = (
                f"about {format_duration_words(sps * total)} (estimate for an RTX 3090/4090-class "
                "GPU; the dashboard shows the measured rate once it runs)"
            )
        warm = values.get("lr_warmup_steps") or 0
        if isinstance(warm, (int, float)) and warm >= 1 and warm >= total:
            add(
                Finding(
                    "warning",
                    "warmup-too-long",
                    f"--lr_warmup_steps {warm} is not below the {total} optimizer steps: the learning rate "
                    "never leaves warm-up",
                    "lower --lr_warmup_steps (it counts optimizer steps)",
                    "--lr_warmup_steps",
                )
            )
    else:
        epochs = int(epochs_opt or 0)
    ctx.batch_size = batch_size
    ctx.accum = accum
    ctx.resolution = resolution
    ctx.bucketing = bucketing
    ctx.batches = batches
    ctx.images = images
    ctx.epochs = epochs


def check_disk(ctx: Check) -> None:
    """The checkpoints (and states) the run writes, against the free disk space."""
    add = ctx.add
    values, facts, sdxl, out_dir, need, epochs, dim, unet_only, te_only, disk_usage = (
        ctx.values,
        ctx.facts,
        ctx.sdxl,
        ctx.out_dir,
        ctx.need,
        ctx.epochs,
        ctx.dim,
        ctx.unet_only,
        ctx.te_only,
        ctx.disk_usage,
    )
    dim = int(values.get("network_dim") or 4)
    unet_only = bool(values.get("network_train_unet_only"))
    te_only = bool(values.get("network_train_text_encoder_only"))
    prec = values.get("save_precision")
    bpv = (
        2 if prec in ("fp16", "bf16") or (prec is None and (values.get("full_fp16") or values.get("full_bf16"))) else 4
    )
    file_bytes = est.lora_file_bytes(dim, unet=not te_only, text_encoders=not unet_only, bytes_per_value=bpv)
    if sdxl and epochs:
        every = values.get("save_every_n_epochs")
        ratio = values.get("save_n_epoch_ratio")
        if ratio:
            every = max(1, math.floor(epochs / int(ratio)))
        epoch_files = est.kept_count(len(est.saved_epochs(epochs, every)), values.get("save_last_n_epochs"))
        step_files = 0
        n_steps = values.get("save_every_n_steps")
        if n_steps and facts.get("total_steps"):
            step_files = int(facts["total_steps"]) // int(n_steps)
            keep = values.get("save_last_n_steps")
            if keep:
                step_files = min(step_files, int(keep) // int(n_steps) + 1)
        files = epoch_files + step_files + 1
        need_bytes = files * file_bytes
        states = 0
        if values.get("save_state") or values.get("save_state_on_train_end"):
            per_state = est.state_dir_bytes(
                dim, unet=not te_only, text_encoders=not unet_only, eight_bit="bitsandbytes" in need
            )
            if values.get("save_state"):
                keep_s = values.get("save_last_n_epochs_state") or values.get("save_last_n_epochs")
                states = est.kept_count(len(est.saved_epochs(epochs, every)), keep_s) + step_files
            states += 1
            need_bytes += states * per_state
        facts.update(
            checkpoint_bytes=file_bytes, checkpoint_files=files, state_dirs=states, disk_needed_bytes=need_bytes
        )
        if out_dir is not None:
            where = nearest_existing(out_dir)
            try:
                free = int(disk_usage(str(where)).free)
            except OSError:
                free = None
            if free is not None:
                facts["disk_free_bytes"] = free
                what = f"{files} LoRA files of {format_bytes(file_bytes)}" + (
                    f" and {states} state folders" if states else ""
                )
                if need_bytes > free:
                    add(
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
                    add(
                        Finding(
                            "warning",
                            "disk-space",
                            f"the run writes {format_bytes(need_bytes)} ({what}), {need_bytes * 100 // free}% "
                            f"of the {format_bytes(free)} free under {where}",
                            "free space or keep fewer checkpoints (--save_last_n_epochs)",
                            str(where),
                        )
                    )
    ctx.dim = dim
    ctx.unet_only = unet_only
    ctx.te_only = te_only


def check_vram(ctx: Check) -> None:
    """The estimated peak VRAM, against what the GPU has free."""
    add = ctx.add
    values, facts, inp, sdxl, need, batch_size, resolution, dim, unet_only, gpu = (
        ctx.values,
        ctx.facts,
        ctx.inp,
        ctx.sdxl,
        ctx.need,
        ctx.batch_size,
        ctx.resolution,
        ctx.dim,
        ctx.unet_only,
        ctx.gpu,
    )
    if sdxl:
        attention = (
            "xformers"
            if values.get("xformers")
            else "sdpa"
            if values.get("sdpa")
            else ("mem_eff_attn" if values.get("mem_eff_attn") else None)
        )
        vram = est.estimate_vram(
            batch_size=batch_size,
            resolution=resolution,
            dim=dim,
            train_text_encoders=not unet_only,
            gradient_checkpointing=bool(values.get("gradient_checkpointing")),
            attention=attention,
            mixed_precision=str(values.get("mixed_precision") or "no"),
            eight_bit_optimizer="bitsandbytes" in need,
            cache_latents=bool(values.get("cache_latents") or values.get("cache_latents_to_disk")),
            cache_text_encoder_outputs=bool(values.get("cache_text_encoder_outputs")),
            fp8_base=bool(values.get("fp8_base") or values.get("fp8_base_unet")),
            full_half=bool(values.get("full_fp16") or values.get("full_bf16")),
        )
        facts["vram_estimate_gb"] = vram.total_gb
        status = gpu_status(gpu)
        gpus = status.gpus if status is not None else ()
        visible = inp.env.get("CUDA_VISIBLE_DEVICES") if inp.env else None
        index = 0
        if visible and visible.split(",")[0].strip().isdigit():
            index = int(visible.split(",")[0])
        gpu_sample = next((g for g in gpus if g.index == index), gpus[0] if gpus else None)
        total_b = gpu_sample.memory_total if gpu_sample is not None else None
        used_b = gpu_sample.memory_used if gpu_sample is not None else None
        if gpu_sample is not None and total_b:
            free_gb = (total_b - (used_b or 0)) / est.GIB
            facts["gpu"] = gpu_sample.name
            facts["gpu_free_gb"] = round(free_gb, 1)
            if vram.total_gb > free_gb:
                add(
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
        else:
            reason = status.reason if status is not None else None
            add(
                Finding(
                    "note",
                    "gpu-unknown",
                    f"no GPU information ({reason or 'NVML not available'}); estimated peak VRAM "
                    f"{vram.total_gb:.1f} GiB",
                    "make sure the GPU has that much free",
                    None,
                )
            )
