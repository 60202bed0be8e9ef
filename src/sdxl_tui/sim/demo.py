"""Inputs for the demo run: a small captioned dataset, its TOML and a prompt file."""

from __future__ import annotations

from pathlib import Path

from sdxl_tui.sim.png import png_bytes

_CAPTIONS = [
    "luca, a boy with dark hair, smiling, outdoors",
    "luca, close-up portrait, looking at viewer",
    "luca, sitting on a wall, sea in the background",
    "luca, running, summer, village street",
    "luca, holding a vespa poster, indoors",
]
_SIZES = [(64, 64), (48, 80), (80, 48), (64, 64), (56, 72)]


def write_demo_inputs(inputs: Path) -> tuple[Path, Path]:
    """Write (once) 20 PNGs with captions, ``luca_sdxl_dataset.toml`` and ``sample_prompts.txt``."""
    img_dir = inputs / "train" / "10_luca"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        stem = img_dir / f"luca_{i:03d}"
        png = stem.with_suffix(".png")
        if not png.exists():
            w, h = _SIZES[i % len(_SIZES)]
            png.write_bytes(png_bytes(w, h, i))
            stem.with_suffix(".txt").write_text(_CAPTIONS[i % len(_CAPTIONS)] + "\n", encoding="utf-8")
    dataset = inputs / "luca_sdxl_dataset.toml"
    dataset.write_text(
        "[general]\n"
        "enable_bucket = true\n"
        "min_bucket_reso = 32\n"
        "max_bucket_reso = 128\n"
        "bucket_reso_steps = 16\n"
        'caption_extension = ".txt"\n'
        "shuffle_caption = true\n"
        "keep_tokens = 1\n"
        "\n"
        "[[datasets]]\n"
        "resolution = 64\n"
        "batch_size = 2\n"
        "\n"
        "  [[datasets.subsets]]\n"
        f'  image_dir = "{img_dir}"\n'
        "  num_repeats = 10\n"
        '  class_tokens = "luca"\n',
        encoding="utf-8",
    )
    prompts = inputs / "sample_prompts.txt"
    prompts.write_text(
        "luca, a boy with dark hair, smiling, outdoors --n lowres, bad anatomy --w 1024 --h 1024 --d 42 --l 7 --s 20\n"
        "luca, riding a vespa along the coast --n lowres --w 832 --h 1216 --d 7 --l 7 --s 20\n",
        encoding="utf-8",
    )
    return dataset, prompts
