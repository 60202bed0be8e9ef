"""Options and preflight checks of the built-in evaluator (light: no torch import here).

The options are those of the card's ``evaluate_single_checkpoint.py`` (``--checkpoint
--base-model --output-dir --num-samples --device --resolution``) plus a few more, so a
template written for that script works with the built-in one. Every foreseeable failure
(missing file, wrong LoRA, no GPU, extra not installed) ends with one clear line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sdxl_tui.evaluator.errors import EvaluatorError

EXIT_USAGE = 2
INSTALL_HINT = (
    "install the evaluator with: pip install 'sdxl-tui[eval]'  "
    "(CPU-only torch: pip install 'torch==<version>' from your local wheel first)"
)

DESCRIPTION = """\
Render a kohya-ss LoRA checkpoint (SDXL, or SD1.5 from train_network.py) with fixed prompts
and seeds: loads the base model (a single .safetensors file or a diffusers folder), applies
the LoRA, writes <i>_<seed>.png per image, contact_sheet.png and manifest.json into
--output-dir. The architecture comes from the LoRA (lora_te1_/lora_te2_: SDXL; lora_te_:
SD1.5; else its ss_base_model_version) unless --arch says; the default resolution is 1024
for SDXL and 512 for SD1.5.
"""

EPILOG = """\
prompts (first that applies): --prompts FILE (one per line; sd-scripts' --n/--d/--s/--l
line options work), the eval.prompts setting, the LoRA's own ss_tag_frequency top tags,
a fixed default list. Image i uses prompt i (cycled) and seed SEED+i.

single-file base models: diffusers needs the SDXL config and tokenizer files. Without
network access give --config-dir, a local diffusers folder of SDXL with configs and
tokenizers (weights not needed), e.g. a download of stabilityai/stable-diffusion-xl-base-1.0
without the *.safetensors files.

exit status: 0 all images written; 2 bad input or environment (message on stderr); 1 other failures.
"""


def build_parser() -> argparse.ArgumentParser:
    """The evaluator's parser (also used by ``sdxl-tui eval --builtin``'s documentation)."""
    p = argparse.ArgumentParser(
        prog="python -m sdxl_tui.evaluator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="kohya-format LoRA .safetensors to evaluate")
    p.add_argument("--base-model", required=True,
                   help="base model (SDXL or SD1.5): single .safetensors/.ckpt file or diffusers folder")
    p.add_argument("--arch", choices=("auto", "sdxl", "sd15"), default="auto",
                   help="model family (default auto: from the LoRA's keys and metadata)")
    p.add_argument("--output-dir", required=True, help="folder for the images, contact sheet and manifest")
    p.add_argument("--num-samples", type=int, default=4, help="number of images (default 4)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, mps or cpu (default cuda)")
    p.add_argument("--resolution", default=None, help="R or WxH (default 1024 for SDXL, 512 for SD1.5)")
    p.add_argument("--steps", type=int, default=30, help="sampling steps (default 30)")
    p.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance scale (default 7.0)")
    p.add_argument("--seed", type=int, default=42, help="seed of image 0; image i uses SEED+i (default 42)")
    p.add_argument("--prompts", help="prompts file, one prompt per line")
    p.add_argument("--negative", default="", help="negative prompt for every image")
    p.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength (default 1.0)")
    p.add_argument("--config-dir",
                   help="local diffusers folder (of the same family) with configs/tokenizers, for single-file bases")
    p.add_argument(
        "--with-base", action="store_true", help="also render each image without the LoRA (base_<i>_<seed>.png)"
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float16", "bfloat16", "float32"),
        default="auto",
        help="weights dtype (auto: float16 on GPU, float32 on CPU)",
    )
    return p


def parse_resolution(text: str) -> tuple[int, int]:
    """``1024`` or ``832x1216`` -> (width, height), multiples of 8."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x", 1))
        else:
            w = h = int(text)
    except ValueError:
        raise EvaluatorError(f"bad --resolution {text!r}: expected R or WxH, e.g. 1024 or 832x1216") from None
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise EvaluatorError(f"bad --resolution {text!r}: width and height must be multiples of 8")
    return w, h


def preflight(args: argparse.Namespace) -> None:
    """Checks that need no torch: files exist, numbers make sense, the LoRA looks like SDXL.

    Raises:
        EvaluatorError: with the one-line explanation.
    """
    from sdxl_tui.formats.safetensors import read_header

    if not os.path.isfile(args.checkpoint):
        raise EvaluatorError(f"LoRA checkpoint not found: {args.checkpoint}")
    if not os.path.exists(args.base_model):
        raise EvaluatorError(
            f"base model not found: {args.base_model} "
            "(download sd_xl_base_1.0.safetensors or give a diffusers folder; setting eval.base_model)"
        )
    if os.path.isdir(args.base_model) and not os.path.isfile(os.path.join(args.base_model, "model_index.json")):
        raise EvaluatorError(f"base model folder {args.base_model} is not a diffusers pipeline (no model_index.json)")
    if args.config_dir and not os.path.isdir(args.config_dir):
        raise EvaluatorError(f"--config-dir not found: {args.config_dir}")
    if args.num_samples < 1:
        raise EvaluatorError("--num-samples must be at least 1")
    if args.steps < 1:
        raise EvaluatorError("--steps must be at least 1")
    if args.prompts and not os.path.isfile(args.prompts):
        raise EvaluatorError(f"prompts file not found: {args.prompts}")
    try:
        header = read_header(args.checkpoint, names=True)
    except OSError as exc:
        raise EvaluatorError(f"cannot read {args.checkpoint}: {exc.strerror or exc}") from None
    if not header.complete:
        raise EvaluatorError(
            f"{args.checkpoint} is not a complete safetensors file ({header.problem}): still being written, or corrupt?"
        )
    keys = header.tensor_names
    if not any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        raise EvaluatorError(
            f"{os.path.basename(args.checkpoint)} has no kohya LoRA keys (lora_unet_*/lora_te*_*): "
            "not an sd-scripts LoRA"
        )
    found = lora_arch(keys, header.metadata.get("ss_base_model_version", ""))
    if args.arch == "auto":
        args.arch = found or "sdxl"
    elif found and found != args.arch:
        raise EvaluatorError(f"{os.path.basename(args.checkpoint)} is {_NAMES[found]} LoRA, not {_NAMES[args.arch]}")
    base = base_arch(args.base_model)
    if base and base != args.arch:
        raise EvaluatorError(
            f"{os.path.basename(args.checkpoint)} is {_NAMES[args.arch]} LoRA but the base model "
            f"{os.path.basename(args.base_model.rstrip('/'))} is {_NAMES[base]}: give a base of the same family"
        )


_NAMES = {"sdxl": "an SDXL", "sd15": "an SD1.5"}


def lora_arch(keys: Sequence[str], version: str) -> str | None:
    """``sdxl`` / ``sd15`` from kohya key names (two text encoders: SDXL) or the metadata."""
    if any(k.startswith(("lora_te1_", "lora_te2_")) for k in keys):
        return "sdxl"
    if any(k.startswith("lora_te_") for k in keys):
        return "sd15"
    v = version.lower()
    if v.startswith("sdxl"):
        return "sdxl"
    if v.startswith(("sd_v1", "sd_v2")):
        return "sd15"
    return None


def base_arch(path: str) -> str | None:
    """A diffusers folder's family from its ``model_index.json`` (None: a file, or unknown)."""
    import json

    try:
        with open(os.path.join(path, "model_index.json"), encoding="utf-8") as fh:
            name = str(json.load(fh).get("_class_name", ""))
    except (OSError, ValueError, AttributeError):
        return None
    if "XL" in name:
        return "sdxl"
    return "sd15" if name.startswith("StableDiffusion") else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluator; returns the exit status (0 ok, 2 user-fixable problem, 1 failure)."""
    args = build_parser().parse_args(argv)
    prog = "sdxl-tui evaluator"
    try:
        preflight(args)
        args.size = parse_resolution(str(args.resolution or (512 if args.arch == "sd15" else 1024)))
        try:
            from sdxl_tui.evaluator import pipeline
        except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
            raise EvaluatorError(f"the [eval] extra is not installed ({exc}); {INSTALL_HINT}") from None
        pipeline.evaluate(args)
    except EvaluatorError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
