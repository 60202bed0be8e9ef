"""SD1.5 against SDXL, same prompts and seeds: the card's last check, side by side.

Why: "SD1.5 512x512 faster, fair quality; SDXL 1024x1024 slower, excellent quality" is
something to look at, not to remember. Each side is one ordinary evaluation (the configured
template or the built-in evaluator, planned by :func:`~sdxl_tui.control.evaluate.plan.plan_eval`)
with its own ``{base_model}`` and ``{resolution}``; both get one shared prompts file, so image
``i`` of each side has the same prompt and seed. The sides run one after the other (one
GPU), in the foreground, and the grid (rows = prompts, columns SD1.5 | SDXL) is written next
to them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdxl_tui.config import Settings
from sdxl_tui.control.evaluate.plan import EVAL_LOG, EvalError, EvalPlan, plan_eval
from sdxl_tui.control.evaluate.store import read_manifest, result_images

__all__ = ["Side", "VersusResult", "plan_versus", "resolve_sd15_checkpoint", "run_versus"]

SD15_RESOLUTION = 512
SDXL_RESOLUTION = 1024


@dataclass(frozen=True)
class Side:
    label: str  # "SD1.5 trial_0025 (512)"
    plan: EvalPlan


@dataclass(frozen=True)
class VersusResult:
    sides: tuple[Side, Side]
    grid: str
    exit_codes: tuple[int, int]


def resolve_sd15_checkpoint(spec: str) -> str:
    """A LoRA file, or a trial folder (its newest ``*.safetensors``).

    Raises:
        EvalError: nothing to evaluate there.
    """
    from sdxl_tui.sources.trials import load_trial

    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        trial = load_trial(path)
        ckpt = trial.checkpoint if trial is not None else None
        if ckpt is None:
            found = sorted(Path(path).glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
            ckpt = str(found[-1]) if found else None
        if ckpt:
            return ckpt
        raise EvalError(f"{spec}: no *.safetensors LoRA in this trial folder")
    raise EvalError(f"--versus {spec}: no such file or trial folder")


def _shared_prompts(folder: str, checkpoint: str, num_samples: int, prompts: str | None, write: bool) -> str:
    """The prompts both sides render (the given file, else the SDXL LoRA's own tags, written
    to ``FOLDER/prompts.txt`` unless ``write`` is false: a dry run writes nothing)."""
    if prompts:
        return os.path.abspath(os.path.expanduser(prompts))
    path = os.path.join(folder, "prompts.txt")
    if not write:
        return path
    from sdxl_tui.evaluator.prompts import quote_prompt, resolve_prompts

    specs, _ = resolve_prompts(checkpoint, prompts_file=None, config_prompts_file=None, num_samples=num_samples)
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# prompts shared by both sides (same seeds: image i uses SEED+i)\n")
        fh.writelines(quote_prompt(s) + "\n" for s in specs)
    return path


def plan_versus(
    run_dir: str,
    sdxl_checkpoint: str,
    sd15_spec: str,
    *,
    sd15_base: str | None,
    settings: Settings | None = None,
    command: str | Sequence[str] | None = None,
    builtin: bool | None = None,
    base_model: str | None = None,
    num_samples: int | None = None,
    device: str | None = None,
    prompts: str | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
) -> tuple[Side, Side, str]:
    """The two evaluations (SD1.5 first) and the grid's path; nothing runs yet.

    Raises:
        EvalError: no SD1.5 base, no LoRA on a side, or a side's template cannot be filled.
    """
    if not sd15_base:
        raise EvalError("--versus needs the SD1.5 base model: --sd15-base PATH (v1-5-pruned.safetensors or a "
                        "diffusers folder)")
    sd15_ckpt = resolve_sd15_checkpoint(sd15_spec)
    n = num_samples if num_samples is not None else (settings or Settings()).eval.num_samples
    label = f"versus_{Path(sd15_ckpt).stem}_{Path(sdxl_checkpoint).stem}"
    folder = os.path.join(os.path.abspath(run_dir), label)
    shared = _shared_prompts(folder, sdxl_checkpoint, n, prompts, write=not dry_run)

    def side(ckpt: str, base: str | None, resolution: int, arch: str) -> EvalPlan:
        return plan_eval(run_dir, ckpt, settings=settings, command=command, builtin=builtin, base_model=base,
                         num_samples=n, resolution=resolution, device=device, prompts=shared,
                         output_dir=os.path.join(folder, arch), extra_args=(*extra_args, "--arch", arch),
                         check_training=False)

    left = side(sd15_ckpt, sd15_base, SD15_RESOLUTION, "sd15")
    right = side(sdxl_checkpoint, base_model, SDXL_RESOLUTION, "sdxl")
    sides = (Side(f"SD1.5 {Path(sd15_ckpt).stem} ({SD15_RESOLUTION})", left),
             Side(f"SDXL {Path(sdxl_checkpoint).stem} ({SDXL_RESOLUTION})", right))
    return sides[0], sides[1], folder + ".png"


def _run_side(side: Side) -> int:
    os.makedirs(side.plan.output_dir, exist_ok=True)
    with open(os.path.join(side.plan.output_dir, EVAL_LOG), "wb") as log:
        try:
            return subprocess.run(list(side.plan.argv), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=side.plan.cwd or None, check=False).returncode
        except OSError as exc:
            log.write(f"cannot start {side.plan.argv[0]}: {exc}\n".encode())
            return 127


def build_grid(sides: tuple[Side, Side], grid_path: str) -> str:
    """Rows = prompts (image i of each side), columns = the two sides; missing images as red tiles."""
    from sdxl_tui.render.sheet import comparison_grid

    images = [list(result_images(s.plan.output_dir)) for s in sides]
    manifest = read_manifest(sides[1].plan.output_dir) or read_manifest(sides[0].plan.output_dir) or {}
    prompts = [f"{p.get('index', i):02d} seed {p.get('seed')}: {p.get('prompt', '')}"
               for i, p in enumerate(manifest.get("prompts") or [])]
    count = max(len(images[0]), len(images[1]), len(prompts))
    rows = []
    for i in range(count):
        label = prompts[i] if i < len(prompts) else f"image {i}"
        rows.append((label, [images[0][i] if i < len(images[0]) else None,
                             images[1][i] if i < len(images[1]) else None]))
    grid = comparison_grid(rows, [s.label for s in sides], cell=256,
                           title="same prompts and seeds: SD1.5 (512) | SDXL (1024)")
    grid.save(grid_path)
    return grid_path


def run_versus(sides: tuple[Side, Side], grid_path: str) -> VersusResult:
    """Run both sides (SD1.5, then SDXL) and build the grid even when one side failed."""
    codes = (_run_side(sides[0]), _run_side(sides[1]))
    return VersusResult(sides, build_grid(sides, grid_path), codes)
