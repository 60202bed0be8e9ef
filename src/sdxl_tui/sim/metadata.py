"""The metadata sd-scripts writes into every LoRA it saves (``ss_*`` and ``modelspec.*``).

``train_network.py:NetworkTrainer.train`` builds the ``ss_*`` training metadata once (hashes of
the base model and VAE, the datasets) and adds ``ss_training_finished_at``, ``ss_steps`` and
``ss_epoch`` at each save; ``library/sai_model_spec.py:build_metadata`` adds the
``modelspec.*`` keys. ``--no_metadata`` keeps only the keys a loader needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from argparse import Namespace

from sdxl_tui.sim.dataset import DatasetGroup, datasets_metadata
from sdxl_tui.sim.schedule import optimizer_kwargs, optimizer_name

SD_SCRIPTS_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"

#: the keys ``--no_metadata`` keeps
MINIMAL_KEYS = (
    "ss_v2",
    "ss_base_model_version",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_network_args",
)

#: the ``--metadata_*`` options that become ``modelspec.*`` keys when given
MODELSPEC_OPTIONS = (
    "author",
    "description",
    "license",
    "tags",
    "usage_hint",
    "merged_from",
    "trigger_phrase",
    "preprocessor",
)


def base_metadata(
    a: Namespace, group: DatasetGroup, *, session_id: int, started_at: float, batches: int, epochs: int, max_steps: int,
    sd1: bool = False,
) -> dict[str, str]:
    """The ``ss_*`` metadata of a run, before the per-save keys (``sd1``: ``train_network.py``
    on an SD1.5 base: ``ss_base_model_version`` ``sd_v1``)."""
    values = _training_values(
        a, group, session_id=session_id, started_at=started_at, batches=batches, epochs=epochs, max_steps=max_steps
    )
    if sd1:
        values["ss_base_model_version"] = "sd_v1"
    md = {k: str(v) for k, v in values.items()}
    md.update(datasets_metadata(group))
    if a.network_args:
        net_args: dict[str, str] = {}
        for item in a.network_args:
            k, _, v = item.partition("=")
            net_args[k] = v
        md["ss_network_args"] = json.dumps(net_args)
    default_base = "v1-5-pruned-emaonly.safetensors" if sd1 else "sd_xl_base_1.0.safetensors"
    md.update(_model_hashes("model", a.pretrained_model_name_or_path or default_base))
    if a.vae:
        md.update(_model_hashes("vae", a.vae))
    if a.no_metadata:
        md = {k: md[k] for k in MINIMAL_KEYS if k in md}
    return md


def _model_hashes(kind: str, path: str) -> dict[str, str]:
    """``ss_sd_model_*`` / ``ss_vae_*``: the name and (stand-in) hashes of the base model or VAE."""
    digest = hashlib.sha256(f"{kind}:{path}".encode()).hexdigest()
    key = "sd_model" if kind == "model" else "vae"
    return {f"ss_{key}_name": os.path.basename(path), f"ss_{key}_hash": digest[:8], f"ss_new_{key}_hash": digest}


def _training_values(
    a: Namespace, group: DatasetGroup, *, session_id: int, started_at: float, batches: int, epochs: int, max_steps: int
) -> dict[str, object]:
    """The table of ``ss_*`` values, in sd-scripts' order."""
    _, optimizer = optimizer_name(a)
    kw = optimizer_kwargs(a)
    if kw:
        optimizer += "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"
    te_lr = a.text_encoder_lr[0] if a.text_encoder_lr else None
    values: dict[str, object] = {
        "ss_session_id": session_id,
        "ss_training_started_at": started_at,
        "ss_output_name": a.output_name,
        "ss_learning_rate": a.learning_rate,
        "ss_text_encoder_lr": te_lr,
        "ss_unet_lr": a.unet_lr,
        "ss_num_train_images": group.num_train_images,
        "ss_num_validation_images": group.num_validation_images,
        "ss_num_reg_images": group.num_reg_images,
        "ss_num_batches_per_epoch": batches,
        "ss_num_epochs": epochs,
        "ss_gradient_checkpointing": a.gradient_checkpointing,
        "ss_gradient_accumulation_steps": a.gradient_accumulation_steps,
        "ss_max_train_steps": max_steps,
        "ss_lr_warmup_steps": a.lr_warmup_steps,
        "ss_lr_scheduler": a.lr_scheduler,
        "ss_network_module": a.network_module,
        "ss_network_dim": a.network_dim,
        "ss_network_alpha": a.network_alpha,
        "ss_network_dropout": a.network_dropout,
        "ss_mixed_precision": a.mixed_precision,
        "ss_full_fp16": bool(a.full_fp16),
        "ss_v2": bool(a.v2),
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_clip_skip": a.clip_skip,
        "ss_max_token_length": a.max_token_length,
        "ss_cache_latents": bool(a.cache_latents),
        "ss_seed": a.seed,
        "ss_lowram": a.lowram,
        "ss_noise_offset": a.noise_offset,
        "ss_multires_noise_iterations": a.multires_noise_iterations,
        "ss_multires_noise_discount": a.multires_noise_discount,
        "ss_adaptive_noise_scale": a.adaptive_noise_scale,
        "ss_zero_terminal_snr": a.zero_terminal_snr,
        "ss_training_comment": a.training_comment,
        "ss_sd_scripts_commit_hash": SD_SCRIPTS_COMMIT,
        "ss_optimizer": optimizer,
        "ss_max_grad_norm": a.max_grad_norm,
        "ss_caption_dropout_rate": a.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": a.caption_dropout_every_n_epochs,
        "ss_caption_tag_dropout_rate": a.caption_tag_dropout_rate,
        "ss_face_crop_aug_range": a.face_crop_aug_range,
        "ss_prior_loss_weight": a.prior_loss_weight,
        "ss_min_snr_gamma": a.min_snr_gamma,
        "ss_scale_weight_norms": a.scale_weight_norms,
        "ss_ip_noise_gamma": a.ip_noise_gamma,
        "ss_debiased_estimation": bool(a.debiased_estimation_loss),
        "ss_noise_offset_random_strength": a.noise_offset_random_strength,
        "ss_ip_noise_gamma_random_strength": a.ip_noise_gamma_random_strength,
        "ss_loss_type": a.loss_type,
        "ss_huber_schedule": a.huber_schedule,
        "ss_huber_scale": a.huber_scale,
        "ss_huber_c": a.huber_c,
        "ss_fp8_base": bool(a.fp8_base),
        "ss_fp8_base_unet": bool(a.fp8_base_unet),
        "ss_validation_seed": a.validation_seed,
        "ss_validation_split": a.validation_split,
        "ss_max_validation_steps": a.max_validation_steps,
        "ss_validate_every_n_epochs": a.validate_every_n_epochs,
        "ss_validate_every_n_steps": a.validate_every_n_steps,
        "ss_resize_interpolation": a.resize_interpolation,
    }
    return values


def modelspec(a: Namespace, now: float, started_at: float, *, sd1: bool = False) -> dict[str, str]:
    """The ``modelspec.*`` keys of a save at ``now``."""
    res = "512x512" if sd1 else "1024x1024"
    if a.resolution:
        parts = [p.strip() for p in str(a.resolution).split(",")]
        res = f"{parts[0]}x{parts[-1]}"
    spec = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": "stable-diffusion-v1/lora" if sd1 else "stable-diffusion-xl-v1-base/lora",
        "modelspec.implementation": "diffusers" if sd1 else "https://github.com/Stability-AI/generative-models",
        "modelspec.title": a.metadata_title or a.output_name or f"LoRA@{started_at}",
        "modelspec.resolution": res,
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
        "modelspec.prediction_type": "v" if a.v_parameterization else "epsilon",
        "modelspec.implementation_version": f"sd-scripts/{SD_SCRIPTS_COMMIT}",
    }
    if a.clip_skip is not None:
        spec["modelspec.encoder_layer"] = str(a.clip_skip)
    for opt in MODELSPEC_OPTIONS:
        v = getattr(a, f"metadata_{opt}")  # every one is in the option table
        if v:
            spec[f"modelspec.{opt}"] = v
    if a.min_timestep is not None or a.max_timestep is not None:
        spec["modelspec.timestep_range"] = f"{a.min_timestep or 0},{a.max_timestep or 1000}"
    return spec
