"""Evaluate checkpoints: one implementation behind key ``e`` and ``sdxl-tui eval``.

Why: the card evaluates checkpoint by checkpoint with its own script, by hand, and picking
the best epoch (usually 6-10) means looking at images side by side. Here an evaluation is:

1. :func:`plan_eval` - plain data: the argv after placeholder substitution (the configured
   template, ``--command``, or the built-in evaluator), the output folder
   (``OUTPUT_DIR/eval_epoch{N}`` as on the card, ``eval_<stem>`` for other files) and
   whether a trainer is using the GPU right now (so the UI can ask "run now / queue until
   training ends"). Placeholders are substituted inside argv elements, never through a shell.
2. :func:`start_eval` - writes the status file ``OUTPUT_DIR/.sdxl-tui/evals/<stem>.json``
   as ``queued`` and makes sure the *queue runner* is alive: a small detached process
   (``python -m sdxl_tui.control.evaluate runner DIR``, new session, stdin /dev/null) that
   survives the dashboard closing. It runs queued evaluations one at a time (the run
   directory's queue is serial, and a per-user lock per GPU - ``cuda`` = ``cuda:0`` - keeps
   a second run directory's evaluation queued while one uses that GPU), holds ``after-training`` ones
   until the trainer is gone, starts each in its own session with its output appended to
   ``<output_dir>/eval.log``, records pid + create_time while it runs and exit code at the
   end, and exits when the queue is empty.
3. :func:`eval_status` - the records, with a dead process that never recorded its end
   reported as ``failed``, plus the images written so far.
4. :func:`start_compare` / :func:`compare_grid` / :func:`build_grid` - the same prompts and
   seeds over several checkpoints, assembled into one labelled grid image
   (rows = checkpoints, columns = prompts) saved as ``OUTPUT_DIR/compare_<label>.png``.

Status file (read by :mod:`sdxl_tui.sources.checkpoints`): ``{checkpoint, output_dir, status:
queued|running|done|failed, pid, create_time, argv, started_at, ended_at, exit_code}`` plus
``queued_at``, ``when``, ``device``, ``log`` and ``note``. Nothing here prints.
"""

from __future__ import annotations

from sdxl_tui.control.evaluate.compare import CompareJob, build_grid, compare_job, compare_jobs, grid_path_for
from sdxl_tui.control.evaluate.devices import device_lock_path
from sdxl_tui.control.evaluate.plan import (
    PLACEHOLDERS,
    RUNNER_INFO,
    EvalError,
    EvalPlan,
    builtin_template,
    certain_failure,
    checkpoint_epoch,
    default_output_dir,
    list_checkpoints,
    parse_selection,
    plan_eval,
    resolve_checkpoint,
    substitute,
    template_from_string,
    training_pid,
)
from sdxl_tui.control.evaluate.runner import (
    cancel_eval,
    compare_grid,
    ensure_runner,
    run_queue,
    runner_pid,
    start_compare,
    start_eval,
    wait_for,
)
from sdxl_tui.control.evaluate.store import (
    EvalRecord,
    eval_record,
    eval_status,
    log_tail,
    read_manifest,
    result_images,
)

__all__ = [
    "PLACEHOLDERS",
    "RUNNER_INFO",
    "CompareJob",
    "EvalError",
    "EvalPlan",
    "EvalRecord",
    "build_grid",
    "builtin_template",
    "cancel_eval",
    "certain_failure",
    "checkpoint_epoch",
    "compare_grid",
    "compare_job",
    "compare_jobs",
    "default_output_dir",
    "device_lock_path",
    "ensure_runner",
    "eval_record",
    "eval_status",
    "grid_path_for",
    "list_checkpoints",
    "log_tail",
    "parse_selection",
    "plan_eval",
    "read_manifest",
    "resolve_checkpoint",
    "result_images",
    "run_queue",
    "runner_pid",
    "start_compare",
    "start_eval",
    "substitute",
    "template_from_string",
    "training_pid",
    "wait_for",
]
