"""File names sd-scripts writes into a run directory (and the few sdxl-tui adds beside them).

Why one home: the scanner recognises these names, the progress maths predicts the next one,
the simulator writes them and the evaluation queue finds epochs by them. The patterns are
sd-scripts' own (``library/train_util.py``: ``EPOCH_FILE_NAME = "{}-{:06d}"``,
``STEP_FILE_NAME = "{}-step{:08d}"``, ``EPOCH_STATE_NAME = "{}-{:06d}-state"``,
``STEP_STATE_NAME = "{}-step{:08d}-state"``, ``LAST_STATE_NAME = "{}-state"``, the default
names ``epoch``/``at``/``last`` when there is no ``--output_name``; sample images from
``library/train_util.py:sample_image_inference``).
"""

from __future__ import annotations

import re

from sdxl_tui.model import CheckpointKind

__all__ = [
    "IMAGE_SUFFIXES",
    "LOG_NAME",
    "SAMPLE_DIR",
    "STATE_SUFFIX",
    "WEIGHT_SUFFIXES",
    "classify_name",
    "epoch_file_name",
    "epoch_from_name",
    "eval_dir_epoch",
    "eval_dir_name",
    "final_file_name",
    "parse_sample_name",
    "sample_file_name",
    "state_dir_name",
    "step_file_name",
]

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".ckpt", ".pt")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
STATE_SUFFIX = "-state"
SAMPLE_DIR = "sample"
#: The console log ``sdxl-tui start`` sends the trainer's stdout and stderr to.
LOG_NAME = "training.log"
#: Names sd-scripts uses without ``--output_name`` (epoch saves, step saves, the final file).
DEFAULT_EPOCH_NAME = "epoch"
DEFAULT_STEP_NAME = "at"
DEFAULT_LAST_NAME = "last"

_STEP_RE = re.compile(r"(?P<name>.+)-step(?P<num>\d{8,})")
_EPOCH_RE = re.compile(r"(?P<name>.+)-(?P<num>\d{6,})")
_SAMPLE_RE = re.compile(
    r"(?:(?P<prefix>.*)_)?(?:e(?P<epoch>\d{6,})|(?P<step>\d{6,}))_(?P<idx>\d{2,})"
    r"_(?P<ts>\d{14})(?:_(?P<seed>-?\d+))?"
)
_EVAL_EPOCH_RE = re.compile(r"eval_epoch(?P<num>\d+)")


def epoch_file_name(output_name: str | None, epoch: int, ext: str = ".safetensors") -> str:
    """``{output_name}-{epoch:06d}{ext}`` (``train_util.py:get_epoch_ckpt_name``)."""
    return f"{output_name or DEFAULT_EPOCH_NAME}-{epoch:06d}{ext}"


def step_file_name(output_name: str | None, step: int, ext: str = ".safetensors") -> str:
    """``{output_name}-step{step:08d}{ext}`` (``train_util.py:get_step_ckpt_name``)."""
    return f"{output_name or DEFAULT_STEP_NAME}-step{step:08d}{ext}"


def final_file_name(output_name: str | None, ext: str = ".safetensors") -> str:
    """``{output_name}{ext}`` (``train_util.py:get_last_ckpt_name``)."""
    return f"{output_name or DEFAULT_LAST_NAME}{ext}"


def state_dir_name(weights_stem: str) -> str:
    """The ``--save_state`` folder saved with a weights file: ``{stem}-state``."""
    return weights_stem + STATE_SUFFIX


def sample_file_name(output_name: str | None, *, epoch: int | None, step: int, index: int,
                     timestamp: str, seed: int | None = None) -> str:
    """``[{output_name}_]{e{epoch:06d}|{step:06d}}_{index:02d}_{timestamp}[_{seed}].png``."""
    prefix = "" if output_name is None else output_name + "_"
    number = f"e{epoch:06d}" if epoch is not None else f"{step:06d}"
    suffix = "" if seed is None else f"_{seed}"
    return f"{prefix}{number}_{index:02d}_{timestamp}{suffix}.png"


def classify_name(stem: str) -> tuple[CheckpointKind | None, str, int | None]:
    """Split a weights file stem by sd-scripts' name patterns.

    Returns ``(EPOCH|STEP, name, number)`` for ``{name}-{epoch:06d}`` / ``{name}-step{step:08d}``,
    or ``(None, stem, None)`` when the stem follows neither (a final file or something else).
    """
    m = _STEP_RE.fullmatch(stem)
    if m:
        return CheckpointKind.STEP, m["name"], int(m["num"])
    m = _EPOCH_RE.fullmatch(stem)
    if m:
        return CheckpointKind.EPOCH, m["name"], int(m["num"])
    return None, stem, None


def epoch_from_name(stem: str) -> int | None:
    """``luca_sdxl_v1-000008`` -> 8; None for step saves and other names."""
    kind, _, number = classify_name(stem)
    return number if kind is CheckpointKind.EPOCH else None


def parse_sample_name(stem: str) -> tuple[int | None, int | None, int | None, str | None]:
    """``(epoch, step, prompt_index, timestamp)`` from a sample image stem.

    ``{output_name}_e{epoch:06d}_{i:02d}_{ts}[_{seed}]`` gives the epoch,
    ``{output_name}_{steps:06d}_{i:02d}_{ts}[_{seed}]`` the step; the prefix is optional.
    """
    m = _SAMPLE_RE.fullmatch(stem)
    if not m:
        return None, None, None, None
    epoch = int(m["epoch"]) if m["epoch"] is not None else None
    step = int(m["step"]) if m["step"] is not None else None
    return epoch, step, int(m["idx"]), m["ts"]


def eval_dir_name(weights_stem: str, epoch: int | None) -> str:
    """sdxl-tui's evaluation folder: ``eval_epoch{N}`` for an epoch, else ``eval_{stem}``."""
    return f"eval_epoch{epoch}" if epoch is not None else f"eval_{weights_stem}"


def eval_dir_epoch(dirname: str) -> int | None:
    """N of an ``eval_epoch{N}`` folder; None for ``eval_{stem}`` folders."""
    m = _EVAL_EPOCH_RE.fullmatch(dirname)
    return int(m["num"]) if m else None
