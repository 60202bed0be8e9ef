"""The heavy half of the built-in evaluator: torch, diffusers, rendering.

Imported only by :func:`sdxl_tui.evaluator.cli.main` after the light preflight checks, so
an ImportError here means the ``[eval]`` extra is missing. Facts this relies on (measured,
see eval-notes): ``load_lora_weights`` needs peft; a loaded state dict avoids diffusers'
offline "you must specify a weight_name" refusal; ``from_single_file`` needs a local config
folder to work offline; a LoRA key for a module the model lacks raises "Target modules ...
not found".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

import diffusers  # noqa: F401  (ImportError -> "install the [eval] extra")
import torch

from sdxl_tui.evaluator.errors import EvaluatorError
from sdxl_tui.evaluator.prompts import PromptSpec, resolve_prompts
from sdxl_tui.formats.statedir import write_json_atomic

MANIFEST = "manifest.json"
CONTACT_SHEET = "contact_sheet.png"
ADAPTER = "sdxl_tui_lora"  # not "eval": adapters become module attributes


def _log(message: str) -> None:
    print(message, flush=True)


def versions() -> dict[str, str]:
    """Installed versions of the stack, for the manifest (results depend on them)."""
    out = {}
    for name in ("sdxl-tui", "torch", "diffusers", "transformers", "peft", "safetensors", "pillow"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def pick_device(requested: str) -> Any:
    """A torch device for ``requested``; a clear error when it is not there."""
    name = requested.strip().lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EvaluatorError(
                f"--device {requested}: no CUDA GPU is available to torch {torch.__version__}"
                " (CPU-only build, no driver, or CUDA_VISIBLE_DEVICES empty); use --device cpu (slow) or a GPU machine"
            )
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise EvaluatorError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise EvaluatorError("--device mps: Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise EvaluatorError(f"unknown --device {requested!r}: use cuda, cuda:N, mps or cpu")


def pick_dtype(choice: str, device: Any) -> Any:
    if choice == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    return getattr(torch, choice)


def load_pipeline(base_model: str, *, config_dir: str | None, dtype: Any, arch: str = "sdxl") -> Any:
    """The SDXL (or, ``arch="sd15"``, SD1.5) pipeline from a diffusers folder or a single
    checkpoint file, offline first. SD1.5 loads without its safety checker (an evaluation of
    one's own LoRA; the checker would black out images at random on a tiny test model too)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    family = "SD1.5" if arch == "sd15" else "SDXL"
    cls: Any = StableDiffusionPipeline if arch == "sd15" else StableDiffusionXLPipeline
    extra: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False} if arch == "sd15" else {}
    if os.path.isdir(base_model):
        try:
            return cls.from_pretrained(base_model, torch_dtype=dtype, local_files_only=True, **extra)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EvaluatorError(
                f"cannot load the diffusers folder {base_model} as {family}: {_first_line(exc)}") from None
    kwargs: dict[str, Any] = {"torch_dtype": dtype, **extra}
    if config_dir:
        kwargs.update(config=config_dir, local_files_only=True)
    try:
        return cls.from_single_file(base_model, **kwargs)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types here; the user needs one line
        text = _first_line(exc)
        if not config_dir and any(
            word in text.lower()
            for word in ("connect", "offline", "hub", "resolve", "local_files_only", "internet", "huggingface")
        ):
            raise EvaluatorError(
                f"loading {os.path.basename(base_model)} needs the {family} config files from the Hugging Face hub, "
                "which is not"
                f" reachable: pass --config-dir DIR, a local diffusers {family} folder with configs and tokenizers"
                f" (weights not needed) [{text}]"
            ) from None
        raise EvaluatorError(f"cannot load {base_model} as an {family} base model: {text}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]


def load_lora(pipe: Any, checkpoint: str, scale: float) -> None:
    """Apply a kohya-format LoRA; a LoRA that does not fit the base gets a clear message."""
    from safetensors.torch import load_file

    try:
        state = load_file(checkpoint)
    except Exception as exc:  # noqa: BLE001
        raise EvaluatorError(f"cannot read {checkpoint}: {_first_line(exc)}") from None
    seen = _CapturedWarnings()
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft")]
    for lg in loggers:
        lg.addHandler(seen)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.load_lora_weights(state, adapter_name=ADAPTER)
        seen.messages.extend(str(w.message) for w in caught)
    except Exception as exc:  # noqa: BLE001
        text = _first_line(exc)
        if "peft" in text.lower() and "required" in text.lower():
            raise EvaluatorError(f"diffusers needs the peft package to load LoRAs: pip install peft ({text})") from None
        if "target modules" in text.lower() or "size mismatch" in text.lower() or "shape" in text.lower():
            raise EvaluatorError(
                f"the LoRA {os.path.basename(checkpoint)} does not match the base model: it names layers or shapes the"
                f" base lacks (a LoRA for another architecture, or a different/modified base?) [{text}]"
            ) from None
        raise EvaluatorError(f"cannot apply the LoRA {os.path.basename(checkpoint)}: {text}") from None
    finally:
        for lg in loggers:
            lg.removeHandler(seen)
    unexpected = [m for m in seen.messages if "unexpected keys" in m.lower()]
    if unexpected:
        raise EvaluatorError(
            f"the LoRA {os.path.basename(checkpoint)} does not match the base model: some of its layers do not exist"
            f" in the base, so it would be evaluated only in part [{_first_line(Exception(unexpected[0]))}]"
        )
    if scale != 1.0:
        pipe.set_adapters([ADAPTER], adapter_weights=[scale])


class _CapturedWarnings(logging.Handler):
    """Collects diffusers/peft log records: "unexpected keys" means a LoRA that does not fit."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except (TypeError, ValueError):  # a bad %-format in someone's log call
            self.messages.append(str(record.msg))


def render(
    pipe: Any, spec: PromptSpec, *, seed: int, steps: int, guidance: float, size: tuple[int, int], negative: str
) -> Any:
    """One image; the generator lives on the CPU so a seed gives the same noise on any device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    width, height = size
    result = pipe(
        prompt=spec.prompt,
        negative_prompt=spec.negative if spec.negative is not None else (negative or None),
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=width,
        height=height,
        generator=generator,
        output_type="pil",
    )
    return result.images[0]


@dataclass(frozen=True, slots=True)
class Sample:
    """One image to render: its prompt and the settings it is rendered with."""

    index: int
    spec: PromptSpec
    seed: int
    steps: int
    guidance: float


def plan_samples(args: argparse.Namespace, specs: Sequence[PromptSpec]) -> list[Sample]:
    """``args.num_samples`` samples cycling through the prompts; a prompt's own settings win."""
    samples = []
    for i in range(args.num_samples):
        spec = specs[i % len(specs)]
        samples.append(Sample(
            index=i,
            spec=spec,
            seed=spec.seed if spec.seed is not None else args.seed + i,
            steps=spec.steps or args.steps,
            guidance=spec.guidance if spec.guidance is not None else args.guidance,
        ))
    return samples


def _config_prompts() -> str | None:
    try:
        from sdxl_tui.config import load_settings

        return load_settings().eval.prompts
    except Exception:  # noqa: BLE001 - a broken config must not stop an evaluation given explicit options
        return None


def _new_manifest(args: argparse.Namespace, origin: str, device: Any, dtype: Any) -> dict[str, Any]:
    return {
        "checkpoint": os.path.abspath(args.checkpoint),
        "base_model": os.path.abspath(args.base_model),
        "lora_scale": args.lora_scale,
        "prompts_source": origin,
        "resolution": [args.size[0], args.size[1]],
        "arch": getattr(args, "arch", "sdxl"),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "num_samples": args.num_samples,
        "status": "running",
        "started_at": time.time(),
        "ended_at": None,
        "versions": versions(),
        "prompts": [],
        "base_images": [],
        "contact_sheet": None,
    }


def _render_sample(pipe: Any, args: argparse.Namespace, sample: Sample) -> Any:
    return render(pipe, sample.spec, seed=sample.seed, steps=sample.steps, guidance=sample.guidance,
                  size=args.size, negative=args.negative)


def _render_base_images(pipe: Any, args: argparse.Namespace, samples: Sequence[Sample],
                        manifest: dict[str, Any]) -> None:
    """The same samples without the LoRA, for a before/after look."""
    for sample in samples:
        name = f"base_{sample.index:02d}_{sample.seed}.png"
        _render_sample(pipe, args, sample).save(os.path.join(args.output_dir, name))
        manifest["base_images"].append(name)
    _log(f"base images (no LoRA) written: {len(samples)}")


def _render_lora_images(pipe: Any, args: argparse.Namespace, samples: Sequence[Sample],
                        manifest: dict[str, Any], manifest_path: str) -> list[str]:
    """Each sample with the LoRA; the manifest is rewritten after every image (it shows progress)."""
    files = []
    with torch.inference_mode():
        for sample in samples:
            t0 = time.perf_counter()
            image = _render_sample(pipe, args, sample)
            seconds = time.perf_counter() - t0
            name = f"{sample.index:02d}_{sample.seed}.png"
            image.save(os.path.join(args.output_dir, name))
            files.append(os.path.join(args.output_dir, name))
            spec = sample.spec
            manifest["prompts"].append({
                "index": sample.index,
                "prompt": spec.prompt,
                "negative_prompt": spec.negative if spec.negative is not None else args.negative,
                "seed": sample.seed,
                "steps": sample.steps,
                "guidance": sample.guidance,
                "seconds": round(seconds, 3),
                "file": name,
            })
            write_json_atomic(manifest_path, manifest)
            _log(f"image {sample.index + 1}/{len(samples)}: {name} in {seconds:.1f} s  {spec.prompt}")
    return files


def evaluate(args: argparse.Namespace) -> None:
    """Render ``args.num_samples`` images and write PNGs, contact sheet and manifest.

    Raises:
        EvaluatorError: device, base model or LoRA problems, as one explained line.
    """
    from diffusers.utils import logging as diffusers_logging

    from sdxl_tui.render.sheet import contact_sheet

    diffusers_logging.disable_progress_bar()
    # diffusers >= 0.36 renamed torch_dtype to dtype; 0.32 knows only torch_dtype.
    warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated.*")
    specs, origin = resolve_prompts(
        args.checkpoint, prompts_file=args.prompts, config_prompts_file=_config_prompts(), num_samples=args.num_samples
    )
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    os.makedirs(args.output_dir, exist_ok=True)
    _log(
        f"prompts from {origin}: {len(specs)}; device {device}, {dtype}; "
        f"{args.size[0]}x{args.size[1]}, {args.steps} steps"
    )
    manifest = _new_manifest(args, origin, device, dtype)
    manifest_path = os.path.join(args.output_dir, MANIFEST)

    t0 = time.perf_counter()
    pipe = load_pipeline(args.base_model, config_dir=args.config_dir, dtype=dtype,
                         arch=getattr(args, "arch", "sdxl"))
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    _log(f"base model loaded in {time.perf_counter() - t0:.1f} s: {args.base_model}")

    samples = plan_samples(args, specs)
    if args.with_base:
        _render_base_images(pipe, args, samples, manifest)
    t0 = time.perf_counter()
    load_lora(pipe, args.checkpoint, args.lora_scale)
    _log(f"LoRA applied in {time.perf_counter() - t0:.1f} s: {args.checkpoint}")
    files = _render_lora_images(pipe, args, samples, manifest, manifest_path)

    labels = [f"{e['index']:02d} seed {e['seed']}: {e['prompt']}" for e in manifest["prompts"]]
    contact_sheet(files, labels=labels, cell=min(256, max(args.size))).save(
        os.path.join(args.output_dir, CONTACT_SHEET)
    )
    manifest["contact_sheet"] = CONTACT_SHEET
    manifest["status"] = "done"
    manifest["ended_at"] = time.time()
    write_json_atomic(manifest_path, manifest)
    _log(f"done: {len(files)} images, {CONTACT_SHEET} and {MANIFEST} in {args.output_dir}")
    sys.stdout.flush()
