"""Blocking adapters from the keys to ``control/`` (run them off the event loop).

The App never calls ``control/`` directly: each key's flow is plan (here, in a thread) ->
dialog (App) -> do (here, in a thread) -> notification. These functions turn the control
layer's answers into plain text for the dialogs, so the screens stay dumb. No Textual here.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdxl_tui.config import Settings
from sdxl_tui.model import RunSnapshot

if TYPE_CHECKING:
    from sdxl_tui.planning.check import CheckReport


class ActionUnavailable(RuntimeError):
    """The action cannot run here (missing launch config, control module not installed…)."""


@dataclass(frozen=True)
class Proposal:
    """What the confirmation dialog shows and what ``execute`` needs."""

    title: str
    body: str
    allowed: bool  # False: the dialog offers only "close" (e.g. preflight errors)
    plan: Any = field(default=None, compare=False)
    choices: tuple[tuple[str, str, str], ...] = ()  # (id, label, variant) besides cancel


# ------------------------------------------------------------------------------ start
def plan_start(run_dir: str, settings: Settings, launch_file: str | None = None) -> Proposal:
    """Read the launch config, plan the start and run the preflight check."""
    from sdxl_tui.control.launch import plan_launch, preflight, report_has_errors
    from sdxl_tui.formats.launch_config import (
        LaunchConfigError,
        find_launch_config,
        load_launch_config,
    )

    path = find_launch_config(run_dir, launch_file or settings.launch.file)
    if path is None:
        raise ActionUnavailable(
            f"no launch config: put sdxl-tui.toml in {run_dir} or pass --launch FILE "
            "(see `sdxl-tui plan` to write one)"
        )
    try:
        cfg = load_launch_config(path)
    except LaunchConfigError as exc:
        raise ActionUnavailable(f"launch config {path}: {exc}") from None
    plan: Any = plan_launch(cfg) if cfg.backend == "local" else _plan_submit(cfg)
    report, note = preflight(cfg)
    lines = [f"launch config: {path}", "", "command:", "  " + plan.command_line, "", f"working directory: {plan.cwd}"]
    if cfg.backend == "slurm":
        lines += ["", f"batch script ({plan.script_path}):"] + [f"  {ln}" for ln in plan.script.splitlines()]
        lines += ["", "submitted with:", f"  {plan.sbatch_line}"]
    elif plan.env:
        lines.append("environment: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in plan.env.items()))
    lines += ["", "writes:"] + [f"  {w}" for w in plan.writes]
    for a, b in plan.rotations:
        lines.append(f"  rotates {a} -> {b}")
    if plan.warnings:
        lines += ["", "warnings:"] + [f"  {w}" for w in plan.warnings]
    facts = start_facts(report)
    if facts:
        lines += ["", "plan:"] + [f"  {line}" for line in facts]
    findings = report.findings if report is not None else ()
    if findings:
        lines += ["", "preflight check:"]
        for f in findings:
            lines.append(f"  {f.severity.upper():<7} {f.code}: {f.message}")
            if f.fix:
                lines.append(f"          fix: {f.fix}")
    elif note:
        lines += ["", note]
    elif report is not None:
        lines += ["", "preflight check: clean"]
    allowed = plan.refusal is None and not report_has_errors(report)
    if plan.refusal:
        lines += ["", f"REFUSED: {plan.refusal}"]
    elif not allowed:
        lines += ["", "REFUSED: the preflight check found errors; fix the launch config first."]
    lines += ["", "The trainer runs detached: quitting sdxl-tui never stops it."]
    return Proposal(
        "Start training?",
        "\n".join(lines),
        allowed,
        plan=cfg,
        choices=(("start", "Start training", "success"),) if allowed else (),
    )


def start_facts(report: CheckReport | None) -> list[str]:
    """The check report's facts a user weighs before an overnight run (steps, time, VRAM, disk)."""
    if report is None:
        return []
    from sdxl_tui.planning.check import fact_lines

    return list(fact_lines(report))


def _plan_submit(cfg: Any) -> Any:
    from sdxl_tui.control.slurm import plan_submit

    return plan_submit(cfg)


def do_start(cfg: Any) -> tuple[bool, str]:
    if cfg.backend == "slurm":
        from sdxl_tui.control.slurm import submit

        submitted = submit(cfg)
        return submitted.ok, submitted.message
    from sdxl_tui.control.launch import launch

    result = launch(cfg)
    return result.ok, result.message


# ------------------------------------------------------------------------------- kill
def plan_kill(run_dir: str) -> Proposal:
    """Name every process a kill would signal (pid, user, role, command)."""
    from sdxl_tui.control.kill import plan_kill as _plan
    from sdxl_tui.sources.scheduler import read_slurm_record

    if read_slurm_record(run_dir) is not None:
        return _plan_cancel(run_dir)
    plan = _plan(run_dir)
    lines = ["These processes will be stopped (SIGINT, wait, SIGTERM, wait, SIGKILL):", ""]
    lines.append(f"{'ROLE':<9}{'PID':>7}  {'USER':<10} COMMAND")
    for role, pid, user, cmd in plan.rows():
        lines.append(f"{role:<9}{pid:>7}  {user:<10} {cmd}")
    for r in plan.refusals:
        lines.append(f"{'refused':<9}{r.pid:>7}  {(r.username or '?'):<10} {r.reason}")
    if plan.notes:
        lines += ["", *list(plan.notes)]
    lines += ["", "sd-scripts saves nothing on interrupt: progress since the last checkpoint is lost.",
              "Prefer x (stop after the next checkpoint) to lose nothing."]
    if plan.empty:
        lines = ["No live trainer process was found for this run; nothing to kill.", *plan.notes]
    return Proposal(
        "Kill the training?",
        "\n".join(lines),
        not plan.empty,
        plan=plan,
        choices=(("kill", "Kill", "error"),) if not plan.empty else (),
    )


def _plan_cancel(run_dir: str) -> Proposal:
    """The Slurm job a kill would cancel (``control/slurm.py``)."""
    from sdxl_tui.control.slurm import plan_cancel

    plan = plan_cancel(run_dir)
    lines = plan.describe()
    if not plan.empty:
        lines += ["", "scancel --full --signal=INT (the trainer's Ctrl-C), then scancel after the grace period.",
                  "sd-scripts saves nothing on interrupt: progress since the last checkpoint is lost.",
                  "Prefer x (stop after the next checkpoint) to lose nothing."]
    return Proposal("Cancel the Slurm job?", "\n".join(lines), not plan.empty, plan=plan,
                    choices=(("kill", "Cancel job", "error"),) if not plan.empty else ())


def do_kill(plan: Any, settings: Settings) -> tuple[bool, str]:
    from sdxl_tui.control.kill import execute_kill
    from sdxl_tui.control.slurm import CancelPlan, cancel

    if isinstance(plan, CancelPlan):
        done = cancel(plan, grace=float(settings.kill.sigint_timeout),
                      term_wait=float(settings.kill.sigterm_timeout) + 60.0, by="dashboard key k")
        return done.ok, done.message

    result = execute_kill(
        plan,
        timeouts=(settings.kill.sigint_timeout, settings.kill.sigterm_timeout),
        by="dashboard key k",
    )
    text = "; ".join(result.describe()) or "nothing to do"
    return result.ok, ("killed: " if result.ok else "kill incomplete: ") + text


# ------------------------------------------------------------------ stop after checkpoint
def stop_status(run_dir: str) -> bool:
    """True when a stop-after-checkpoint watcher is waiting for this run."""
    from sdxl_tui.control.kill import watcher_status

    data = watcher_status(run_dir)
    return bool(data and data.get("alive"))


def do_stop_after_checkpoint(run_dir: str, settings: Settings, *, cancel: bool = False) -> tuple[bool, str]:
    from sdxl_tui.control import kill
    from sdxl_tui.sources.scheduler import read_slurm_record

    if not cancel and read_slurm_record(run_dir) is not None:
        from sdxl_tui.control.slurm import start_stop_after_checkpoint

        return start_stop_after_checkpoint(run_dir, grace=float(settings.kill.sigint_timeout))
    if cancel:
        result = kill.cancel_stop_after_checkpoint(run_dir)
    else:
        result = kill.start_stop_after_checkpoint(
            run_dir,
            timeouts=(settings.kill.sigint_timeout, settings.kill.sigterm_timeout),
        )
    return result.ok, result.message


# -------------------------------------------------------------------------- evaluate
def plan_evaluation(run_dir: str, checkpoint: str, settings: Settings, *, trainer_alive: bool) -> Proposal:
    """Plan the evaluation of one checkpoint; offer "now" or "after training" while training."""
    from sdxl_tui.control.evaluate import EvalError, certain_failure, plan_eval

    try:
        plan = plan_eval(run_dir, checkpoint, settings=settings)
    except EvalError as exc:
        raise ActionUnavailable(f"cannot evaluate: {exc}") from None
    problem = certain_failure(plan)
    if problem:
        raise ActionUnavailable(f"cannot evaluate: {problem}")
    lines = [
        f"checkpoint: {plan.checkpoint}",
        f"output:     {plan.output_dir}",
        f"device:     {plan.device}" + ("   (built-in evaluator)" if plan.builtin else ""),
        "",
        "command:",
        "  " + plan.command_line,
    ]
    if plan.warnings:
        lines += ["", "warnings:"] + [f"  {w}" for w in plan.warnings]
    training = trainer_alive or plan.training_pid is not None
    if training:
        lines += [
            "",
            "Training is using the GPU. Evaluating now competes for VRAM (risk of OOM);",
            "queueing starts the evaluation when the training ends.",
        ]
        choices: tuple[tuple[str, str, str], ...] = (
            ("after-training", "Queue until training ends", "primary"),
            ("now", "Run now", "warning"),
        )
    else:
        choices = (("now", "Evaluate", "primary"),)
    lines += ["", "The evaluation runs detached: quitting sdxl-tui does not stop it."]
    return Proposal("Evaluate checkpoint?", "\n".join(lines), True, plan=plan, choices=choices)


def do_evaluation(plan: Any, when: str) -> tuple[bool, str]:
    from sdxl_tui.control.evaluate import EvalError, start_eval

    try:
        record = start_eval(plan, when=when)
    except EvalError as exc:
        return False, str(exc)
    status = record.status
    where = "when the training ends" if when == "after-training" else "now"
    return True, f"evaluation of {plan.name} {status} ({where}); images in {plan.output_dir}"


def images_for(snapshot: RunSnapshot, checkpoint_path: str) -> list[str]:
    """Evaluation images of the checkpoint, then the trainer's samples of the same epoch/step."""
    ckpt = next((c for c in snapshot.checkpoints if c.path == checkpoint_path), None)
    if ckpt is None:
        return []
    images: list[str] = []
    stem = ckpt.name.rsplit(".", 1)[0]
    for ev in snapshot.evaluations:
        if ev.checkpoint in (ckpt.name, ckpt.path, stem) or (
            ev.epoch is not None and ev.epoch == ckpt.epoch and ev.checkpoint is None
        ):
            images.extend(ev.images)
    for s in snapshot.samples:
        if (ckpt.epoch is not None and s.epoch == ckpt.epoch) or (
            ckpt.step is not None and s.epoch is None and s.step == ckpt.step
        ):
            images.append(s.path)
    return images


# ------------------------------------------------------------------- comparison grid
#: The epochs the card compares by default (issue 7: "for example epochs 6 to 10").
DEFAULT_COMPARE_EPOCHS = (6, 10)


def _short_range(epochs: list[int]) -> str:
    return ",".join(str(e) for e in epochs)


def default_compare_selection(snapshot: RunSnapshot, epochs: tuple[int, int] = DEFAULT_COMPARE_EPOCHS) -> str:
    """What the compare dialog proposes: the epoch checkpoints 6-10 when at least two of them
    are complete, else every complete epoch checkpoint, else every complete checkpoint.

    A range is written as ``6-10`` only when every epoch file in it is complete (a range also
    picks up a file still being written); otherwise the complete ones are listed ``6,8``.
    """
    from sdxl_tui.model import CheckpointKind

    ckpts = snapshot.checkpoints
    epoch_files = [(c.epoch, c) for c in ckpts if c.kind is CheckpointKind.EPOCH and c.epoch is not None]
    lo, hi = epochs
    in_range = [(e, c) for e, c in epoch_files if lo <= e <= hi]
    done_in_range = sorted({e for e, c in in_range if c.complete})
    if len(done_in_range) >= 2:
        if all(c.complete for _, c in in_range):
            return f"{lo}-{hi}"
        return _short_range(done_in_range)
    done = sorted({e for e, c in epoch_files if c.complete})
    if len(done) >= 2:
        return _short_range(done)
    return ",".join(c.name for c in ckpts if c.complete)


def complete_checkpoint_count(snapshot: RunSnapshot) -> int:
    return sum(1 for c in snapshot.checkpoints if c.complete)


def compare_choices(snapshot: RunSnapshot) -> str:
    """One line naming what can be compared (shown under the selection input)."""
    from sdxl_tui.model import CheckpointKind

    ckpts = [c for c in snapshot.checkpoints if c.complete]
    epochs = sorted({c.epoch for c in ckpts if c.kind is CheckpointKind.EPOCH and c.epoch is not None})
    others = [c.name for c in ckpts if not (c.kind is CheckpointKind.EPOCH and c.epoch is not None)]
    parts = []
    if epochs:
        parts.append("epochs " + ", ".join(map(str, epochs)))
    if others:
        parts.append("files " + ", ".join(others))
    return "complete checkpoints: " + ("; ".join(parts) if parts else "none")


@dataclass(frozen=True)
class CompareStarted:
    """A comparison job as queued (what the progress notifications follow)."""

    label: str
    names: tuple[str, ...]
    started: tuple[str, ...]  # evaluations queued for this grid (the others were reused)
    grid_path: str


def do_compare(run_dir: str, selection: str, settings: Settings, when: str = "now") -> CompareStarted:
    """Resolve ``selection`` ("6-10", "6,8,10", file names) and queue the comparison.

    Raises:
        ActionUnavailable: the selection matches too few checkpoints, or planning failed.
    """
    from sdxl_tui.control.evaluate import EvalError, parse_selection, start_compare

    try:
        paths = parse_selection(run_dir, selection)
        if len(paths) < 2:
            raise ActionUnavailable(f"a comparison needs at least 2 checkpoints; {selection!r} selects {len(paths)}")
        job = start_compare(run_dir, paths, settings=settings, when=when)
    except EvalError as exc:
        raise ActionUnavailable(f"cannot compare: {exc}") from None
    return CompareStarted(job.label, tuple(job.names), tuple(job.started), job.grid_path)


@dataclass(frozen=True)
class CompareProgress:
    status: str  # waiting | done | failed | missing
    done: int  # evaluations of this job that ended
    total: int
    grid_path: str
    error: str | None = None


def compare_progress(run_dir: str, job: CompareStarted) -> CompareProgress:
    """Where a comparison stands: its status file and its evaluations' records."""
    from sdxl_tui.control.evaluate import compare_job, eval_record

    current = compare_job(run_dir, job.label)
    if current is None:
        return CompareProgress("missing", 0, len(job.started), job.grid_path, "the comparison job disappeared")
    ended = 0
    for name in job.started:
        rec = eval_record(run_dir, name)
        if rec is not None and rec.status in ("done", "failed"):
            ended += 1
    return CompareProgress(current.status, ended, len(job.started), current.grid_path or job.grid_path, current.error)
