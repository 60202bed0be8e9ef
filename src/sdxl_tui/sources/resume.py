"""How to continue a run that ended early: one hint for every verdict that needs one.

sd-scripts resumes only from a ``--save_state`` folder (``<name>-0000NN-state`` or
``<name>-state``, with ``train_state.json``): ``--resume FOLDER`` restores the optimizer, the LR
scheduler and the step (``train_util.resume_from_local_or_hf_if_specified``). Without one, the
last LoRA file can seed a new run through ``--network_weights`` (``train_network.py``), but the
optimizer and the schedule start over, and the epochs left must be given by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from sdxl_tui.formats.cmdline import script_span
from sdxl_tui.model import Checkpoint, StateDir

__all__ = ["last_complete", "resume_hint"]


def last_complete(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The newest complete checkpoint (by step, then epoch, then time)."""
    done = [c for c in checkpoints if c.complete]
    return max(done, key=lambda c: (c.step or -1, c.epoch or -1, c.mtime)) if done else None


def _without(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option`` (``--opt V`` or ``--opt=V``)."""
    out: list[str] = []
    skip = False
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok == option:
            skip = True
            continue
        if tok.startswith(option + "="):
            continue
        out.append(tok)
    return out


def resume_hint(states: Sequence[StateDir], checkpoints: Sequence[Checkpoint], *,
                argv: Sequence[str] = (), epochs: int | None = None) -> str:
    """One line: the command (shell-quoted, ready to paste) or the option that continues the run.

    Args:
        states: the run's ``-state`` folders.
        checkpoints: the run's LoRA files.
        argv: the trainer's command line when known (the run record), to print it whole.
        epochs: the run's ``--max_train_epochs``, to say how many are left.
    """
    done = [s for s in states if s.complete]
    if done:
        newest = max(done, key=lambda s: (s.step or -1, s.epoch or -1))
        if argv and script_span(argv) is not None:
            return "resume with: " + shlex.join([*_without(argv, "--resume"), "--resume", newest.path])
        return f"resume with --resume {shlex.quote(newest.path)} added to the trainer's command"
    last = last_complete(checkpoints)
    if last is None:
        return "nothing was saved yet: start the run again"
    left = ""
    if epochs is not None and last.epoch is not None and epochs > last.epoch:
        left = f" and --max_train_epochs {epochs - last.epoch}"
    return (f"no resumable state (--save_state was off): continue from the weights with --network_weights "
            f"{shlex.quote(last.path)}{left} (the optimizer and LR schedule start over)")
