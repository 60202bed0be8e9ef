"""A simulated evaluator, as the simulated trainer stands for sd-scripts: the built-in
evaluator's command line and outputs (``<i>_<seed>.png``, ``contact_sheet.png`` and
``manifest.json`` in ``--output-dir``), with pictures drawn by Pillow instead of sampled, so
``e``, ``g`` and ``i`` work in ``sdxl-tui demo`` without a GPU, a base model or torch.

    python -m sdxl_tui.sim.evaluator --checkpoint C --output-dir O [--num-samples N]

The drawing depends on the checkpoint's epoch and the seed: a comparison grid of epochs 2-6
shows rows that differ, as a real one would. ``--base-model`` is accepted and ignored.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from sdxl_tui.formats.prompts import parse_prompt_line
from sdxl_tui.formats.statedir import write_json_atomic

MANIFEST = "manifest.json"
CONTACT_SHEET = "contact_sheet.png"
PROMPTS = (
    "a portrait photo of luca, studio light",
    "luca riding a bicycle in a park, summer",
    "an oil painting of luca, impressionist",
    "luca in a spacesuit on the moon",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdxl_tui.sim.evaluator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the LoRA file to 'evaluate'")
    p.add_argument("--output-dir", required=True, help="folder for the images, contact sheet and manifest")
    p.add_argument("--base-model", default="(simulated)", help="accepted for template compatibility; unused")
    p.add_argument("--num-samples", type=int, default=4, help="number of images (default 4)")
    p.add_argument("--resolution", default="256", help="R or WxH of each drawn image (default 256)")
    p.add_argument("--device", default="cpu", help="accepted for template compatibility; unused")
    p.add_argument("--seed", type=int, default=42, help="seed of image 0; image i uses SEED+i (default 42)")
    p.add_argument("--prompts", help="prompts file, one per line (default: four demo prompts)")
    p.add_argument("--seconds-per-image", type=float, default=0.2, help="pause per image, to look real (default 0.2)")
    return p


def _epoch(path: str) -> int:
    m = re.search(r"-(\d{6})\.safetensors$", path)
    return int(m.group(1)) if m else 99


def _size(text: str) -> tuple[int, int]:
    try:
        w, _, h = text.lower().partition("x")
        width = int(w)
        return (width, int(h)) if h else (width, width)
    except ValueError:
        raise SystemExit(f"sim evaluator: bad --resolution {text!r}") from None


def draw(prompt: str, seed: int, epoch: int, size: tuple[int, int]) -> Any:
    """A picture that changes with the epoch (hue, sharpness) and the seed (layout)."""
    from PIL import Image, ImageDraw

    w, h = min(size[0], 512), min(size[1], 512)
    hue = (epoch * 23 + seed * 7) % 256
    img = Image.new("RGB", (w, h), ((hue * 3) % 256, (hue * 5 + 60) % 256, (200 - hue) % 256))
    pen = ImageDraw.Draw(img)
    rings = 3 + seed % 5
    for i in range(rings):
        r = (rings - i) * min(w, h) // (2 * rings + 1)
        cx, cy = w // 2 + (seed * 13 % 40) - 20, h // 2 + (epoch * 7 % 40) - 20
        shade = ((hue + 40 * i) % 256, (120 + 25 * i) % 256, (60 + epoch * 11) % 256)
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), outline=shade, width=max(1, 6 - i))
    pen.text((6, h - 16), f"e{epoch} s{seed} {prompt[:28]}", fill=(250, 250, 250))
    return img


def _prompts(path: str | None) -> list[str]:
    if path:
        with open(path, encoding="utf-8") as fh:
            lines = [fields["prompt"] for fields in map(parse_prompt_line, fh) if fields is not None]
        if lines:
            return lines
    return list(PROMPTS)


def evaluate(args: argparse.Namespace) -> int:
    from sdxl_tui.render.sheet import contact_sheet

    if not os.path.isfile(args.checkpoint):
        print(f"sim evaluator: LoRA checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    os.makedirs(args.output_dir, exist_ok=True)
    size, epoch, prompts = _size(args.resolution), _epoch(args.checkpoint), _prompts(args.prompts)
    manifest: dict[str, Any] = {
        "checkpoint": os.path.abspath(args.checkpoint), "base_model": args.base_model, "lora_scale": 1.0,
        "prompts_source": "file" if args.prompts else "default", "resolution": list(size), "device": "simulated",
        "dtype": "none", "num_samples": args.num_samples, "status": "running", "started_at": time.time(),
        "ended_at": None, "versions": {"simulator": "sdxl_tui.sim.evaluator"}, "prompts": [], "base_images": [],
        "contact_sheet": None,
    }
    path = os.path.join(args.output_dir, MANIFEST)
    files = []
    for i in range(args.num_samples):
        prompt, seed = prompts[i % len(prompts)], args.seed + i
        time.sleep(max(0.0, args.seconds_per_image))
        name = f"{i:02d}_{seed}.png"
        draw(prompt, seed, epoch, size).save(os.path.join(args.output_dir, name))
        files.append(os.path.join(args.output_dir, name))
        manifest["prompts"].append({"index": i, "prompt": prompt, "negative_prompt": "", "seed": seed, "steps": 0,
                                    "guidance": 0.0, "seconds": args.seconds_per_image, "file": name})
        write_json_atomic(path, manifest)
        print(f"image {i + 1}/{args.num_samples}: {name}  {prompt}", flush=True)
    labels = [f"{e['index']:02d} seed {e['seed']}: {e['prompt']}" for e in manifest["prompts"]]
    contact_sheet(files, labels=labels, cell=min(256, max(size))).save(os.path.join(args.output_dir, CONTACT_SHEET))
    manifest.update(contact_sheet=CONTACT_SHEET, status="done", ended_at=time.time())
    write_json_atomic(path, manifest)
    print(f"done: {len(files)} images, {CONTACT_SHEET} and {MANIFEST} in {args.output_dir}", flush=True)
    return 0


def template() -> list[str]:
    """The ``eval.command`` the demo uses (placeholders as in any evaluation template)."""
    return [sys.executable, "-m", "sdxl_tui.sim.evaluator", "--checkpoint", "{checkpoint}",
            "--output-dir", "{output_dir}", "--num-samples", "{num_samples}", "--seed", "42"]


def main(argv: Sequence[str] | None = None) -> int:
    return evaluate(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
