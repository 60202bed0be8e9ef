"""Alerts for how a run ended: finished, stopped by you, interrupted, and a final model that is
unusable. Pure functions of plain facts (``sources/alerts.py`` gathers every rule).

The fixes come from one place, ``sources/resume.py`` (``--resume`` from a ``-state`` folder,
else the ``--network_weights`` restart), shell-quoted for copy-paste.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Sequence
from dataclasses import dataclass

from sdxl_tui.humanize import format_bytes
from sdxl_tui.model import Alert, Checkpoint, CheckpointKind, RunState, Severity, StateDir
from sdxl_tui.sources.resume import last_complete, resume_hint

__all__ = ["EndFacts", "broken_final", "end_alerts"]


@dataclass(frozen=True, slots=True)
class EndFacts:
    """What the end-of-run rules look at."""

    state: RunState
    state_reason: str = ""
    now: float = 0.0
    step: int | None = None
    checkpoints: tuple[Checkpoint, ...] = ()
    keyboard_interrupt: bool = False
    exit_signal: int | None = None
    model_saved: bool = False
    resume: str | None = None  # sources/resume.py's hint; None: built here from the files alone
    states: tuple[StateDir, ...] = ()
    total_epochs: int | None = None


def broken_final(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The final ``{output_name}.safetensors`` when it exists but is not complete."""
    final = [c for c in checkpoints if c.kind is CheckpointKind.FINAL]
    return final[-1] if final and not final[-1].complete else None


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _signame(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _fix(f: EndFacts) -> str:
    if f.resume is not None:
        return f.resume
    return resume_hint(f.states, f.checkpoints, epochs=f.total_epochs)


def _alert(kind: str, severity: Severity, message: str, fix: str | None, f: EndFacts) -> Alert:
    return Alert(kind=kind, severity=severity, message=message, fix=fix, key=kind, step=f.step, at=f.now)


def _broken_final_alert(f: EndFacts) -> Alert | None:
    """``model saved.`` and yet the final file is empty or truncated: the night's result is unusable."""
    bad = broken_final(f.checkpoints)
    if bad is None or not (f.model_saved or f.state.is_over):
        return None
    last = last_complete([c for c in f.checkpoints if c is not bad])
    what = "empty (0 bytes)"
    if bad.size:
        what = f"incomplete ({format_bytes(bad.size)}; {bad.problem or 'truncated'})"
    message = f"the final model {bad.name} is {what}: it cannot be used"
    fix = (f"use the last complete checkpoint {last.name} ({last.path}); check the disk (df -h) before the next run"
           if last is not None else "no complete checkpoint was written; check the disk (df -h) and start again")
    return _alert("final_broken", Severity.ERROR, message, fix, f)


def _stopped_alert(f: EndFacts) -> Alert | None:
    if f.state is not RunState.STOPPED:
        return None
    return _alert("stopped", Severity.INFO, f.state_reason, _fix(f), f)


def _interrupted_alert(f: EndFacts) -> Alert | None:
    """Process gone without the final checkpoint and without an error: Ctrl-C, kill, reboot."""
    if f.state is not RunState.INTERRUPTED:
        return None
    last = last_complete(f.checkpoints)
    how = "SIGINT (Ctrl-C)" if f.keyboard_interrupt else _signame(f.exit_signal)
    message = "the trainer stopped before the final checkpoint"
    if how:
        message += f" ({how})"
    message += f"{_at(f.step)}; last checkpoint: {last.name if last else 'none'}"
    return _alert("interrupted", Severity.WARNING, message, _fix(f), f)


def _finished_alert(f: EndFacts) -> Alert | None:
    """Training ended with its final save: the good news, as an info alert."""
    if f.state is not RunState.FINISHED:
        return None
    final = [c for c in f.checkpoints if c.kind is CheckpointKind.FINAL and c.complete]
    what = f": {final[-1].name} ({format_bytes(final[-1].size)})" if final else ""
    return _alert("finished", Severity.INFO, f"training finished{_at(f.step)}{what}", None, f)


def end_alerts(f: EndFacts) -> list[Alert]:
    """The end-of-run alerts that apply (at most one of finished/stopped/interrupted)."""
    rules = (_broken_final_alert, _stopped_alert, _interrupted_alert, _finished_alert)
    return [a for a in (rule(f) for rule in rules) if a is not None]
