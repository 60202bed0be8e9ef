"""How to continue a run that ended early: the one home of the resume hint (pure).

sd-scripts can truly resume only from a ``-state`` folder written with ``--save_state``
(``--resume DIR``: ``train_util.resume_from_local_or_hf_if_specified`` restores the optimizer,
the LR scheduler, the step and the epoch through ``accelerator.load_state``). Without one, the
best restart is a new run that starts from the last weights with ``--network_weights FILE``
(``train_network.py:NetworkTrainer.train`` loads them into the new network as its initial
weights; the optimizer state, the LR schedule's position and the step counter start over),
for the epochs that remain (``--max_train_epochs``).

Every command printed for copy-paste is shell-quoted (paths with spaces, non-ASCII).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from sdxl_tui.formats.cmdline import script_span
from sdxl_tui.model import Checkpoint, StateDir

__all__ = ["ResumeHint", "last_complete", "resume_hint"]


@dataclass(frozen=True, slots=True)
class ResumeHint:
    """``short``: for a one-line state reason (``--resume PATH``); ``fix``: the alert's fix,
    with the whole command to paste when the trainer's command line is known."""

    short: str
    fix: str


def last_complete(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The newest completely written checkpoint (by step, then epoch, then time)."""
    done = [c for c in checkpoints if c.complete]
    if not done:
        return None
    return max(done, key=lambda c: (c.step if c.step is not None else -1,
                                    c.epoch if c.epoch is not None else -1, c.mtime))


def _with_option(argv: Sequence[str], option: str, value: str, drop: Sequence[str] = ()) -> list[str]:
    """``argv`` with ``option value`` set (replacing it, and dropping the options in ``drop``)."""
    out: list[str] = []
    skip = False
    names = (option, *drop)
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok in names:
            skip = True
            continue
        if any(tok.startswith(n + "=") for n in names):
            continue
        out.append(tok)
    return [*out, option, value]


def resume_hint(*, checkpoints: Sequence[Checkpoint], states: Sequence[StateDir],
                argv: Sequence[str] = (), total_epochs: int | None = None) -> ResumeHint:
    """How to go on from what the run left (see the module docstring)."""
    runnable = bool(argv) and script_span(argv) is not None
    done_states = [s for s in states if s.complete]
    if done_states:
        state = max(done_states, key=lambda s: (s.step if s.step is not None else -1,
                                                 s.epoch if s.epoch is not None else -1))
        short = f"--resume {shlex.quote(state.path)}"
        if runnable:
            return ResumeHint(short, "resume with: " + shlex.join(_with_option(argv, "--resume", state.path)))
        return ResumeHint(short, f"resume with {short} (same options)")
    last = last_complete(checkpoints)
    if last is None:
        return ResumeHint("nothing saved yet: start it again",
                          "nothing was saved: restart the run (add --save_state to make it resumable)")
    remaining = total_epochs - last.epoch if total_epochs and last.epoch is not None else None
    remaining = remaining if remaining and remaining > 0 else None
    short = f"--network_weights {shlex.quote(last.path)}"
    lost = ("no --save_state directory to --resume from: a new run from these weights, whose optimizer, "
            "LR schedule and step count start over (train_network.py: NetworkTrainer.train); "
            "add --save_state next time")
    if runnable:
        args = _with_option(argv, "--network_weights", last.path, drop=("--resume",))
        if remaining:
            args = _with_option(args, "--max_train_epochs", str(remaining), drop=("--max_train_steps",))
        return ResumeHint(short, f"continue from the weights ({lost}): {shlex.join(args)}")
    epochs = f" and --max_train_epochs {remaining}" if remaining else ""
    return ResumeHint(short, f"continue from the weights with {short}{epochs} ({lost})")
