"""sd-scripts' ``--resume``: the ``train_state.json`` of a ``-state`` folder and how a resumed
launch counts its steps.

Why one home: the simulator writes and resumes from these files the way sd-scripts does, and
the reader must undo exactly that counting to put a resumed launch's steps where they belong.

What ``train_network.py:NetworkTrainer.train`` does (sd-scripts v0.10.1):

- ``save_model_hook`` writes ``{"current_epoch": E, "current_step": S}`` into the state folder
  (``S`` is the optimizer steps done; logged as ``save train state to DIR/train_state.json at
  epoch E step S``).
- ``--resume DIR`` (``library/train_util.py:resume_from_local_or_hf_if_specified``) logs
  ``resume training from local state: DIR``; accelerate's ``load_state`` calls
  ``load_model_hook``, which logs ``load train state from DIR/train_state.json: {...}`` (a
  Python dict repr) and keeps ``S`` as ``steps_from_state``.
- Without ``--skip_until_initial_step`` only the epoch counter moves on (``epoch_to_start =
  S // steps_per_epoch``): ``global_step`` restarts at 0, so the steps bar runs ``0/TOTAL`` to
  ``TOTAL - S``, TensorBoard steps and ``ss_steps`` restart at 0, and epoch numbers stay
  absolute. The run's true step is the trainer's count plus ``S``.
- With ``--skip_until_initial_step`` the skipped count is multiplied by the gradient
  accumulation but divided by optimizer steps per epoch to find the first epoch, and
  ``global_step`` becomes what is left after subtracting whole epochs of micro-batches: with
  accumulation above 1 it can be negative (negative TensorBoard steps and ``ss_steps``).
  Those counts are the trainer's own; no offset makes them right.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LOAD_TRAIN_STATE",
    "RESUME_LINE",
    "SAVE_TRAIN_STATE",
    "SKIP_LINE",
    "TRAIN_STATE_FILE",
    "SkipStart",
    "TrainState",
    "epoch_to_start",
    "is_epoch_tag",
    "parse_logged_state",
    "parse_train_state",
    "skip_start",
    "train_state_json",
]

TRAIN_STATE_FILE = "train_state.json"

#: ``library/train_util.py:resume_from_local_or_hf_if_specified``
RESUME_LINE = re.compile(r"^resume training from local state: (.+?)\s*$")
#: ``train_network.py:NetworkTrainer.train`` (``load_model_hook``)
LOAD_TRAIN_STATE = re.compile(r"^load train state from (.+?): (\{.*\})\s*$")
#: ``train_network.py:NetworkTrainer.train`` (``save_model_hook``): folder/train_state.json, epoch, step
SAVE_TRAIN_STATE = re.compile(r"save train state to (.+?) at epoch (\d+) step (\d+)")
#: ``train_network.py:NetworkTrainer.train`` with ``--skip_until_initial_step``
SKIP_LINE = re.compile(r"^skipping (-?\d+) steps")


@dataclass(frozen=True, slots=True)
class TrainState:
    """What a ``train_state.json`` says: the epoch and the optimizer steps done at the save."""

    epoch: int | None
    step: int | None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse_train_state(data: object) -> TrainState | None:
    """A decoded ``train_state.json`` (or the logged dict) as a :class:`TrainState`; None if
    it is not a mapping."""
    if not isinstance(data, Mapping):
        return None
    return TrainState(_int(data.get("current_epoch")), _int(data.get("current_step")))


def parse_logged_state(text: str) -> TrainState | None:
    """The ``{'current_epoch': 1, 'current_step': 3}`` of a ``load train state`` line."""
    try:
        return parse_train_state(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def train_state_json(epoch: int, step: int) -> str:
    """The file's text as ``save_model_hook`` writes it (``json.dump``)."""
    return json.dumps({"current_epoch": epoch, "current_step": step})


def epoch_to_start(initial_step: int, steps_per_epoch: int) -> int:
    """The epoch index a resumed launch starts at without ``--skip_until_initial_step``."""
    return initial_step // max(1, steps_per_epoch) if initial_step > 0 else 0


@dataclass(frozen=True, slots=True)
class SkipStart:
    """Where a launch with ``--skip_until_initial_step`` starts (sd-scripts' own arithmetic)."""

    epoch_to_start: int
    global_step: int  # the trainer's counter before its first step (negative: sd-scripts mis-steps)
    skip_batches: int  # micro-batches skipped inside the first epoch (0: none)
    bar_total: int  # the steps bar's total: max_train_steps - the remaining skip


def skip_start(initial_step: int, *, accumulation: int, batches_per_epoch: int, max_train_steps: int) -> SkipStart:
    """``train_network.py:NetworkTrainer.train`` with ``--skip_until_initial_step`` (as written).

    Why keep its slip: ``initial_step`` is multiplied by the accumulation (micro-batches) but the
    first epoch is found by dividing by optimizer steps per epoch, then whole epochs of
    micro-batches are subtracted: with accumulation 2 the counter starts below 0.
    """
    accumulation = max(1, accumulation)
    if initial_step <= 0:
        return SkipStart(0, 0, 0, max_train_steps)
    steps_per_epoch = math.ceil(batches_per_epoch / accumulation)
    micro = initial_step * accumulation
    start = micro // max(1, steps_per_epoch)
    left = micro - start * batches_per_epoch
    return SkipStart(start, left, max(0, left), max_train_steps - left)


def is_epoch_tag(tag: str) -> bool:
    """A TensorBoard tag logged once per epoch at ``step=epoch + 1`` (``loss/epoch_average``,
    ``loss/validation/epoch_*``): its steps are epoch numbers, absolute across resumes."""
    return "epoch" in tag
