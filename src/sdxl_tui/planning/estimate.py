"""Estimates for a planned SDXL LoRA run: checkpoint sizes, disk, VRAM, steps and time.

Why: the expensive failures of an overnight run are the late ones: the disk filling at the
fifth checkpoint, an OOM after caching, a run that cannot finish by morning. Sizes are
computed from the real SDXL module shapes; VRAM and time are rough models, and every report
says so.

Module shapes (networks.lora on the SDXL base, original SGM names): the U-Net has 722 LoRA
modules whose (in + out) features sum to 2,659,840; text encoder 1 (CLIP-L, 12 layers x 6
Linear) and 2 (OpenCLIP-G, 32 layers x 6 Linear) have 264 modules summing to 903,168. A module
stores ``lora_down`` (dim x in), ``lora_up`` (out x dim) and a scalar ``alpha``. Check: the
real run's dim-4 U-Net-only fp16 file is 8 + 305,008 (header) + 2*4*2,659,840 + 2*722 =
21,585,180 bytes, exactly its size on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxl_tui.formats.lora import TE_IN_OUT, TE_MODULES, UNET_IN_OUT, UNET_MODULES

#: header bytes per tensor, measured on the real run (305,008 bytes / 2,166 tensors, metadata included)
HEADER_BYTES_PER_TENSOR = 305_008 / 2_166

GIB = 1024**3


def lora_params(dim: int, *, unet: bool = True, text_encoders: bool = True) -> int:
    """Number of trainable LoRA parameters for an SDXL networks.lora network of rank ``dim``."""
    total = 0
    if unet:
        total += dim * UNET_IN_OUT + UNET_MODULES
    if text_encoders:
        total += dim * TE_IN_OUT + TE_MODULES
    return total


def lora_file_bytes(dim: int, *, unet: bool = True, text_encoders: bool = True, bytes_per_value: int = 2) -> int:
    """Size of one saved LoRA file (safetensors) in bytes.

    ``bytes_per_value``: 2 for ``--save_precision fp16/bf16``, 4 for float (also what an
    unset ``--save_precision`` gives, the network being float32).
    """
    modules = (UNET_MODULES if unet else 0) + (TE_MODULES if text_encoders else 0)
    header = int(HEADER_BYTES_PER_TENSOR * 3 * modules)
    header += (-header) % 8
    return 8 + header + lora_params(dim, unet=unet, text_encoders=text_encoders) * bytes_per_value


def state_dir_bytes(dim: int, *, unet: bool = True, text_encoders: bool = True, eight_bit: bool = False) -> int:
    """Size of one ``--save_state`` folder: float32 weights + optimizer moments (+ small files)."""
    p = lora_params(dim, unet=unet, text_encoders=text_encoders)
    optimizer = p * (2 if eight_bit else 8)
    return p * 4 + optimizer + 64 * 1024


def saved_epochs(epochs: int, every: int | None) -> list[int]:
    """Epoch numbers that get an epoch-named file (the last epoch never does:
    ``train_network.py:NetworkTrainer.train``)."""
    if not every or every <= 0:
        return []
    return [e for e in range(1, epochs) if e % every == 0]


def kept_count(saves: int, keep_last: int | None) -> int:
    """How many of ``saves`` files stay when ``--save_last_n_*`` removes older ones."""
    if keep_last is None or keep_last <= 0:
        return saves
    return min(saves, keep_last)


@dataclass(frozen=True, slots=True)
class VramEstimate:
    """A rough peak-VRAM model for SDXL LoRA training (GiB)."""

    total_gb: float
    parts: tuple[tuple[str, float], ...]


def estimate_vram(
    *,
    batch_size: int,
    resolution: tuple[int, int] = (1024, 1024),
    dim: int = 32,
    train_text_encoders: bool = True,
    gradient_checkpointing: bool = False,
    attention: str | None = None,  # "xformers" | "sdpa" | "mem_eff_attn" | None
    mixed_precision: str = "no",
    eight_bit_optimizer: bool = False,
    cache_latents: bool = False,
    cache_text_encoder_outputs: bool = False,
    fp8_base: bool = False,
    full_half: bool = False,
) -> VramEstimate:
    """Peak VRAM of an SDXL LoRA run, from weights, LoRA/optimizer state and activations.

    Calibrated on commonly reported figures (batch 1, 1024, gradient checkpointing, xformers,
    fp16, AdamW8bit, dim 32: about 10 GB); expect +-20 %.
    """
    wbytes = 2 if mixed_precision in ("fp16", "bf16") else 4
    unet = 2.57e9 * (1 if fp8_base else wbytes) / GIB
    te = 0.0 if (cache_text_encoder_outputs and not train_text_encoders) else 0.82e9 * wbytes / GIB
    vae = 0.0 if cache_latents else 0.08e9 * 4 / GIB + 0.6 * batch_size
    p = lora_params(dim, unet=True, text_encoders=train_text_encoders)
    per_param = 4 + (2 if full_half else 4) + (2 if eight_bit_optimizer else 8)
    lora = p * per_param / GIB
    area = resolution[0] * resolution[1] / (1024 * 1024)
    act = (1.2 if gradient_checkpointing else 7.0) * (1.0 if attention else 1.6) * area * batch_size
    if train_text_encoders:
        act += 0.15 * batch_size
    context = 1.0
    parts = (
        ("CUDA context", context),
        ("U-Net weights", unet),
        ("text encoders", te),
        ("VAE (latents not cached)", vae),
        ("LoRA weights, grads, optimizer", lora),
        ("activations", act),
    )
    return VramEstimate(round(sum(v for _, v in parts), 1), tuple((k, round(v, 2)) for k, v in parts if v))


def seconds_per_step(
    *,
    batch_size: int,
    gradient_accumulation_steps: int = 1,
    resolution: tuple[int, int] = (1024, 1024),
    gradient_checkpointing: bool = True,
    attention: str | None = "sdpa",
    train_text_encoders: bool = True,
) -> float:
    """Seconds per optimizer step for SDXL LoRA on an RTX 3090/4090-class GPU (an estimate).

    About 1 s for one 1024x1024 image with gradient checkpointing, ~0.75 s per extra image in
    the batch; the dashboard replaces this with the measured rate once the run starts.
    """
    area = resolution[0] * resolution[1] / (1024 * 1024)
    micro = (0.25 + 0.75 * batch_size) * area
    if not gradient_checkpointing:
        micro *= 0.8
    if not attention:
        micro *= 1.3
    if train_text_encoders:
        micro *= 1.1
    return micro * max(1, gradient_accumulation_steps)


def steps_per_epoch(batches: int, gradient_accumulation_steps: int) -> int:
    """Optimizer steps per epoch: ceil(batches / accumulation)
    (``train_network.py:NetworkTrainer.train``, one process)."""
    return math.ceil(batches / max(1, gradient_accumulation_steps)) if batches else 0
