"""kohya-format SDXL LoRA ``.safetensors`` files: real module names, real header layout.

Module names are generated from the SDXL architecture (original SGM U-Net naming, CLIP
ViT-L and OpenCLIP bigG text encoders), which yields the 722 U-Net modules and the 264
text-encoder modules sd-scripts reports. The header is serialised like safetensors 0.4.5:
8-byte little-endian length, compact JSON with ``__metadata__`` first, tensors ordered by
dtype (descending) then name, padded with spaces to a multiple of 8. Tensors are F16, BF16 or F32
(``--save_precision``); by
default their feature sizes are divided by 64 (ranks are real) so files stay small; the
real shapes are available for realism. Files are written in place, in chunks, like
``serialize_to_file`` (no temp file), so a reader can meet a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import struct
import time
from collections.abc import Callable, Iterator, Mapping

# (block name, channels, transformer depth) of SDXL's SpatialTransformer blocks
_UNET_TRANSFORMERS = (
    ("input_blocks_4_1", 640, 2),
    ("input_blocks_5_1", 640, 2),
    ("input_blocks_7_1", 1280, 10),
    ("input_blocks_8_1", 1280, 10),
    ("middle_block_1", 1280, 10),
    ("output_blocks_0_1", 1280, 10),
    ("output_blocks_1_1", 1280, 10),
    ("output_blocks_2_1", 1280, 10),
    ("output_blocks_3_1", 640, 2),
    ("output_blocks_4_1", 640, 2),
    ("output_blocks_5_1", 640, 2),
)
_CONTEXT_DIM = 2048

# SD1.5's U-Net as sd-scripts' train_network.py names it (diffusers module paths):
# (block, channels, attention blocks); one transformer block each, context width 768 (CLIP-L)
_SD1_UNET = (
    ("down_blocks_0", 320, 2), ("down_blocks_1", 640, 2), ("down_blocks_2", 1280, 2),
    ("up_blocks_1", 1280, 3), ("up_blocks_2", 640, 3), ("up_blocks_3", 320, 3),
)
_SD1_CONTEXT_DIM = 768


def _transformer_block(t: str, c: int, context: int) -> list[tuple[str, int, int]]:
    """The Linear modules of one transformer block ``t`` of width ``c`` (self- and cross-attention, FF)."""
    mods: list[tuple[str, int, int]] = []
    for attn, kv_in in (("attn1", c), ("attn2", context)):
        mods.append((f"{t}_{attn}_to_q", c, c))
        mods.append((f"{t}_{attn}_to_k", kv_in, c))
        mods.append((f"{t}_{attn}_to_v", kv_in, c))
        mods.append((f"{t}_{attn}_to_out_0", c, c))
    mods.append((f"{t}_ff_net_0_proj", c, 8 * c))
    mods.append((f"{t}_ff_net_2", 4 * c, c))
    return mods


def unet_modules() -> list[tuple[str, int, int]]:
    """``(name, in_features, out_features)`` of every U-Net Linear LoRA targets (722)."""
    mods: list[tuple[str, int, int]] = []
    for block, c, depth in _UNET_TRANSFORMERS:
        p = f"lora_unet_{block}"
        mods.append((f"{p}_proj_in", c, c))
        mods.append((f"{p}_proj_out", c, c))
        for i in range(depth):
            mods += _transformer_block(f"{p}_transformer_blocks_{i}", c, _CONTEXT_DIM)
    return mods


def sd1_unet_modules() -> list[tuple[str, int, int]]:
    """SD1.5 U-Net Linear modules as ``train_network.py`` names them (``lora_unet_down_blocks_...``);
    ``proj_in``/``proj_out`` are 1x1 convolutions there and are left out."""
    mods: list[tuple[str, int, int]] = []
    blocks = [(f"{b}_attentions_{j}", c) for b, c, n in _SD1_UNET for j in range(n)]
    blocks.append(("mid_block_attentions_0", 1280))
    for block, c in blocks:
        mods += _transformer_block(f"lora_unet_{block}_transformer_blocks_0", c, _SD1_CONTEXT_DIM)
    return mods


def text_encoder_modules(sd1: bool = False) -> list[tuple[str, int, int]]:
    """Modules of both SDXL text encoders (72 in TE1 + 192 in TE2 = 264), or SD1.5's one
    CLIP-L (``lora_te_``, 72)."""
    mods: list[tuple[str, int, int]] = []
    encoders = (("lora_te", 12, 768, 3072),) if sd1 else (("lora_te1", 12, 768, 3072), ("lora_te2", 32, 1280, 5120))
    for prefix, layers, d, mlp in encoders:
        for i in range(layers):
            p = f"{prefix}_text_model_encoder_layers_{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                mods.append((f"{p}_self_attn_{proj}", d, d))
            mods.append((f"{p}_mlp_fc1", d, mlp))
            mods.append((f"{p}_mlp_fc2", mlp, d))
    return mods


@functools.lru_cache(maxsize=16)
def _specs_cached(
    rank: int, unet: bool, text_encoders: bool, real_size: bool, sd1: bool = False
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((n, tuple(s)) for n, s in _tensor_specs(rank, unet, text_encoders, real_size, sd1))


def tensor_specs(
    *, rank: int, unet: bool = True, text_encoders: bool = False, real_size: bool = False, sd1: bool = False
) -> list[tuple[str, list[int]]]:
    """``(tensor name, shape)`` for every tensor of the LoRA (alpha, lora_down, lora_up);
    ``sd1``: SD1.5's module names (``train_network.py``)."""
    return [(n, list(s)) for n, s in _specs_cached(rank, unet, text_encoders, real_size, sd1)]


def _tensor_specs(rank: int, unet: bool, text_encoders: bool, real_size: bool,
                  sd1: bool = False) -> list[tuple[str, list[int]]]:
    scale = 1 if real_size else 64
    mods: list[tuple[str, int, int]] = []
    if text_encoders:
        mods += text_encoder_modules(sd1)
    if unet:
        mods += sd1_unet_modules() if sd1 else unet_modules()
    specs: list[tuple[str, list[int]]] = []
    for name, fin, fout in mods:
        fin_s, fout_s = max(1, fin // scale), max(1, fout // scale)
        specs.append((f"{name}.alpha", []))
        specs.append((f"{name}.lora_down.weight", [rank, fin_s]))
        specs.append((f"{name}.lora_up.weight", [fout_s, rank]))
    return specs


_ITEMSIZE = {"F16": 2, "BF16": 2, "F32": 4}


def dtype_for(save_precision: str | None, full_fp16: bool = False, full_bf16: bool = False) -> str:
    """Tensor dtype of a saved LoRA: ``--save_precision``, else the network's own dtype."""
    if save_precision == "fp16":
        return "F16"
    if save_precision == "bf16":
        return "BF16"
    if save_precision == "float":
        return "F32"
    if full_fp16:
        return "F16"
    if full_bf16:
        return "BF16"
    return "F32"  # LoRA parameters are float32 under mixed precision


def _nbytes(shape: list[int], dtype: str = "F16") -> int:
    n = _ITEMSIZE[dtype]
    for d in shape:
        n *= d
    return n


def build_header(specs: list[tuple[str, list[int]]], metadata: Mapping[str, str] | None, dtype: str = "F16") -> bytes:
    """The JSON header exactly as safetensors serialises it (padded to a multiple of 8)."""
    parts: list[str] = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False))
    parts.append(_tensor_json(tuple((n, tuple(s)) for n, s in specs), dtype))
    raw = ("{" + ",".join(p for p in parts if p) + "}").encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return raw


@functools.lru_cache(maxsize=8)
def _tensor_json(specs: tuple[tuple[str, tuple[int, ...]], ...], dtype: str = "F16") -> str:
    """The tensor entries of the header (one dtype for all: ordered by name)."""
    parts = []
    offset = 0
    for name, shape in sorted(specs, key=lambda s: s[0]):
        end = offset + _nbytes(list(shape), dtype)
        dims = ",".join(str(d) for d in shape)
        parts.append(f'{json.dumps(name)}:{{"dtype":"{dtype}","shape":[{dims}],"data_offsets":[{offset},{end}]}}')
        offset = end
    return ",".join(parts)


@functools.lru_cache(maxsize=1)
def _pool_bytes(dtype: str = "F16", size: int = 1 << 14) -> bytes:
    rng = random.Random(1234)
    vals = [rng.gauss(0.0, 0.02) for _ in range(size)]
    return _pack(vals, dtype)


def _pack(vals: list[float], dtype: str) -> bytes:
    if dtype == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    f32 = struct.pack(f"<{len(vals)}f", *vals)
    if dtype == "F32":
        return f32
    return b"".join(f32[i + 2 : i + 4] for i in range(0, len(f32), 4))  # BF16: upper half


class _Pool:
    """Plausible F16 weights (small values) from a seed, produced fast by slicing one pool."""

    def __init__(self, seed: int, dtype: str = "F16") -> None:
        self.data = _pool_bytes(dtype)
        self.step = _ITEMSIZE[dtype]

    def take(self, nbytes: int, start: int) -> bytes:
        d = self.data
        start %= len(d) - 1
        start -= start % self.step
        out = bytearray()
        while len(out) < nbytes:
            chunk = d[start : start + nbytes - len(out)]
            out += chunk
            start = 0
        return bytes(out)


def tensor_data(specs: list[tuple[str, list[int]]], alpha: float, seed: int, dtype: str = "F16") -> Iterator[bytes]:
    """Tensor bytes in header order."""
    pool = _Pool(seed, dtype)
    alpha_b = _pack([alpha], dtype)
    pos = seed * 7919
    for name, shape in sorted(specs, key=lambda s: s[0]):
        if name.endswith(".alpha"):
            yield alpha_b
        else:
            n = _nbytes(shape, dtype)
            yield pool.take(n, pos)
            pos += n * 3 + 2


def sshs_hashes(
    specs: list[tuple[str, list[int]]], metadata: Mapping[str, str], alpha: float, seed: int, dtype: str = "F16"
) -> tuple[str, str]:
    """``(sshs_model_hash, sshs_legacy_hash)`` the way ``precalculate_safetensors_hashes`` does.

    Computed on an in-memory file holding only the ``ss_*`` metadata: SHA-256 of the bytes
    after the header, and the first 8 hex digits of SHA-256 over 64 KiB at offset 1 MiB.
    """
    ss = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    header = build_header(specs, ss, dtype)
    model = hashlib.sha256()
    prefix = bytearray(struct.pack("<Q", len(header)) + header)
    for chunk in tensor_data(specs, alpha, seed, dtype):
        model.update(chunk)
        if len(prefix) < 0x110000:
            prefix += chunk
    legacy = hashlib.sha256(bytes(prefix[0x100000:0x110000])).hexdigest()[:8]
    return model.hexdigest(), legacy


def write_lora(
    path: str | os.PathLike[str],
    specs: list[tuple[str, list[int]]],
    metadata: Mapping[str, str],
    *,
    alpha: float,
    seed: int,
    seconds: float = 0.0,
    chunk: int = 256 * 1024,
    sleep: Callable[[float], None] = time.sleep,
    dtype: str = "F16",
) -> int:
    """Write the file in place, in chunks spread over ``seconds``; returns its size."""
    header = build_header(specs, metadata, dtype)
    total = 8 + len(header) + sum(_nbytes(s, dtype) for _, s in specs)
    nchunks = max(1, total // chunk)
    pause = seconds / nchunks if seconds > 0 else 0.0
    written = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        f.flush()
        pending = bytearray()
        for data in tensor_data(specs, alpha, seed, dtype):
            pending += data
            if len(pending) >= chunk:
                f.write(pending)
                written += len(pending)
                pending.clear()
                if pause:
                    f.flush()
                    sleep(pause)
        f.write(pending)
    return total
