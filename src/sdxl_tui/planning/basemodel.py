"""Tell an SDXL checkpoint from an SD1.x/2.x one by its tensor names, without loading it.

Why: ``train_network.py`` given an SDXL checkpoint fails only after minutes of loading, with
``size mismatch`` errors (REF §6.1). A safetensors header is a few hundred KB of JSON in front
of gigabytes of weights, so reading only the header is instant and safe.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sdxl_tui.formats.safetensors import read_header


@dataclass(frozen=True, slots=True)
class ModelKind:
    """What a base model is, and how we know."""

    kind: str  # "sdxl" | "sdxl-refiner" | "sd1" | "sd2" | "lora" | "unknown" | "missing" | "hub"
    evidence: str

    @property
    def is_sdxl(self) -> bool:
        return self.kind in ("sdxl", "sdxl-refiner")

    @property
    def is_sd12(self) -> bool:
        return self.kind in ("sd1", "sd2")


def classify_keys(keys: list[str] | set[str] | tuple[str, ...]) -> ModelKind:
    """Classify a checkpoint from its tensor names (original SGM/LDM single-file layout)."""
    ks = set(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in ks)

    if has("lora_unet_") or has("lora_te"):
        return ModelKind("lora", "tensor names start with lora_unet_/lora_te (a LoRA, not a base model)")
    if has("conditioner.embedders.1.") or "model.diffusion_model.label_emb.0.0.weight" in ks and has(
        "conditioner.embedders.0.transformer."
    ):
        return ModelKind("sdxl", "has conditioner.embedders.1.* (OpenCLIP-G text encoder) and label_emb")
    if has("conditioner.embedders.0.model.") and has("model.diffusion_model.label_emb."):
        return ModelKind("sdxl-refiner", "has only conditioner.embedders.0 (OpenCLIP-G): the SDXL refiner")
    if has("model.diffusion_model.label_emb."):
        return ModelKind("sdxl", "has model.diffusion_model.label_emb.* (SDXL size conditioning)")
    if has("cond_stage_model.model.transformer.") or has("cond_stage_model.model.token_embedding"):
        return ModelKind("sd2", "has cond_stage_model.model.* (OpenCLIP-H: SD 2.x)")
    if has("cond_stage_model.transformer."):
        return ModelKind("sd1", "has cond_stage_model.transformer.* (CLIP-L: SD 1.x)")
    if has("text_encoder_2.") or has("add_embedding."):
        return ModelKind("sdxl", "has text_encoder_2.* / add_embedding.* (diffusers SDXL layout)")
    if has("model.diffusion_model."):
        return ModelKind("unknown", "a U-Net without recognisable text encoder keys")
    return ModelKind("unknown", "no known SD/SDXL tensor names")


def detect_model_kind(path: str | os.PathLike[str]) -> ModelKind:
    """Classify ``path`` (a .safetensors file, a diffusers folder, or a hub id)."""
    p = Path(path)
    text = str(path)
    if p.is_dir():
        index = p / "model_index.json"
        try:
            cls = str(json.loads(index.read_text("utf-8")).get("_class_name", ""))
        except (OSError, ValueError):
            return ModelKind("unknown", "a folder without a readable model_index.json")
        if "XL" in cls:
            return ModelKind("sdxl", f"diffusers folder, {cls}")
        return ModelKind("sd1" if cls else "unknown", f"diffusers folder, {cls or 'no pipeline class'}")
    if not p.exists():
        if looks_like_hub_id(text):
            return ModelKind("hub", "not a local path; looks like a Hugging Face model id")
        return ModelKind("missing", "file not found")
    if p.suffix.lower() != ".safetensors":
        return ModelKind("unknown", f"{p.suffix or 'no'} extension: only safetensors headers can be read without loading")
    try:
        header = read_header(p, names=True)
    except OSError as exc:
        return ModelKind("unknown", f"unreadable safetensors header ({exc.strerror or exc})")
    if not header.tensor_names:
        return ModelKind("unknown", f"unreadable safetensors header ({header.problem or 'no tensors'})")
    return classify_keys(header.tensor_names)


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` without a weights extension (sd-scripts would download it)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text)) and not text.lower().endswith(
        (".safetensors", ".ckpt", ".pt", ".bin")
    )


def name_suggests_sdxl(path: str) -> bool:
    """A last-resort guess from the file name (``sd_xl_base_1.0``, ``ponyDiffusionXL``…)."""
    name = os.path.basename(str(path)).lower().replace("-", "_")
    return "sd_xl" in name or "sdxl" in name or "_xl" in name or name.startswith("xl") or "xl_" in name
