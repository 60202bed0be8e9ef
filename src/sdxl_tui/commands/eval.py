"""`sdxl-tui eval`: evaluate a checkpoint with your own script's template or the built-in sampler.

The headless twin of key ``e`` on a checkpoint row; both call :mod:`sdxl_tui.control.evaluate`.
Module level imports stay light: ``--help`` must not import torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdxl_tui.config import Settings
    from sdxl_tui.control.evaluate import EvalPlan

DESCRIPTION = """\
Evaluate CHECKPOINT of the run directory DIR: run the configured evaluation command (an argv
template, e.g. the card's evaluate_single_checkpoint.py call) or the built-in SDXL + LoRA
sampler, detached like training (it survives the dashboard and this command), one
evaluation at a time per run directory: a second one is queued. Images go to
DIR/eval_epoch{N} (eval_<name> for non-epoch files).

CHECKPOINT is a file name in DIR, a path, or an epoch number (8 -> *-000008.safetensors).
"""

EPILOG = """\
examples:
  sdxl-tui eval RUN 8 --wait                       # template from config, or built-in
  sdxl-tui eval RUN 8 --builtin --base-model ~/models/sd_xl_base_1.0.safetensors \\
      --config-dir ~/models/sdxl-base-configs --num-samples 4 --device cuda
  sdxl-tui eval RUN luca_sdxl_v1-000008.safetensors --command \\
      'conda run -n kohya_ss python /path/evaluate_single_checkpoint.py --checkpoint {checkpoint}
       --base-model {base_model} --output-dir {output_dir} --num-samples 16 --device cuda
       --resolution 1024'
  sdxl-tui eval RUN --compare 6-10 --show         # grid: rows = epochs 6..10, cols = prompts,
                                                   # saved as RUN/compare_epochs_6-10.png
  sdxl-tui eval RUN 8 --show                       # list images, show the contact sheet
  sdxl-tui eval RUN --status                       # queued / running / done / failed
  sdxl-tui eval RUN 8 --versus ../optimization_overnight/trial_0025 --sd15-base v1-5.safetensors \
      --base-model sd_xl_base_1.0.safetensors --show  # SD1.5 (512) | SDXL (1024), same prompts
                                                   # and seeds: RUN/versus_<sd15>_<sdxl>.png

template placeholders (replaced inside each argv element, never through a shell;
{{ and }} are literal braces):
  {checkpoint} {base_model} {output_dir} {epoch} {num_samples} {resolution} {device}
  {prompts} {run_dir} {name}
  The config's eval.command is an argv list (TOML array); --command is one string split
  with shell rules (shlex) into an argv list. Relative paths in it are relative to the
  directory sdxl-tui was started from. Settings: eval.command, eval.base_model,
  eval.num_samples, eval.resolution, eval.device, eval.prompts.

built-in evaluator (--builtin; the default when no template is configured): needs the
extra `pip install 'sdxl-tui[eval]'` (torch, diffusers, transformers, peft, safetensors,
pillow). It writes <i>_<seed>.png, contact_sheet.png and manifest.json. A single-file base
model needs the SDXL config files: --config-dir (a local diffusers SDXL folder with configs
and tokenizers) when the Hugging Face hub is not reachable.

training running: an evaluation started while the trainer uses the GPU asks whether to
run now or queue until training ends (--now / --queue answer in advance; without a
terminal the default is an error asking for one of them). The queue is kept in
DIR/.sdxl-tui/evals/ and run by a detached runner, so it survives closing the dashboard;
one evaluation runs per GPU at a time (also across run directories), the rest wait queued.
Output of each evaluation: DIR/eval_epoch{N}/eval.log.

Before anything is started, what would fail at once is refused with exit 2 and the reason:
the built-in evaluator without the eval extra or without its base model file, a template
command that is not on PATH. "queued" is said only when another evaluation is running.

exit status: 0 started (or, with --wait, the evaluation succeeded); the evaluation's own
exit status with --wait; 1 a failed evaluation or comparison; 2 bad usage, missing files,
an evaluation certain to fail, training running without --now/--queue.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="the run's output directory (--output_dir)")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                        help="file name in DIR, a path, or an epoch number")
    what = parser.add_argument_group("what to run")
    what.add_argument("--command", metavar="TEMPLATE",
                      help="evaluation argv template for this call (one string, split with shlex)")
    what.add_argument(
        "--builtin", action="store_true", help="use the built-in evaluator (python -m sdxl_tui.evaluator)"
    )
    what.add_argument("--base-model", metavar="PATH", help="SDXL base model (default: eval.base_model)")
    what.add_argument("--num-samples", type=int, metavar="N", help="images (default: eval.num_samples)")
    what.add_argument("--resolution", metavar="R", help="resolution (default: eval.resolution)")
    what.add_argument("--device", metavar="D", help="cuda, cuda:N, cpu (default: eval.device)")
    what.add_argument("--prompts", metavar="FILE", help="prompts file, one per line (default: eval.prompts)")
    what.add_argument("--output-dir", metavar="DIR", help="output folder (default: DIR/eval_epoch{N})")
    builtin = parser.add_argument_group("built-in evaluator only")
    builtin.add_argument("--steps", type=int, help="sampling steps (default 30)")
    builtin.add_argument("--guidance", type=float, help="guidance scale (default 7.0)")
    builtin.add_argument("--seed", type=int, help="seed of image 0; image i uses SEED+i (default 42)")
    builtin.add_argument("--config-dir", metavar="DIR", help="local diffusers SDXL configs for a single-file base")
    when = parser.add_argument_group("when").add_mutually_exclusive_group()
    when.add_argument("--now", action="store_true", help="run now even if training is using the GPU")
    when.add_argument("--queue", action="store_true", help="queue until training ends")
    parser.add_argument(
        "--wait", action="store_true", help="block until the evaluation ends, print its log, exit with its status"
    )
    actions = parser.add_argument_group("other actions")
    actions.add_argument("--status", action="store_true", help="list evaluations of DIR and exit")
    actions.add_argument("--json", action="store_true", help="with --status: JSON output")
    actions.add_argument(
        "--compare", metavar="SEL", help="grid of several checkpoints: '6-10', '6,8,10' or file names (waits)"
    )
    actions.add_argument("--rerun", action="store_true", help="with --compare: evaluate again even if results exist")
    actions.add_argument(
        "--versus", metavar="TRIAL_OR_CKPT",
        help="SD1.5 vs SDXL: render the SD1.5 LoRA (a trial folder or file) on --sd15-base at 512 and CHECKPOINT "
             "on the SDXL base at 1024 with the same prompts and seeds, then a side-by-side grid (waits)")
    actions.add_argument("--sd15-base", metavar="PATH", help="with --versus: the SD1.5 base model (file or folder)")
    actions.add_argument("--cancel", action="store_true", help="cancel CHECKPOINT's queued or running evaluation")
    actions.add_argument("--dry-run", action="store_true", help="print the command that would run and exit")
    actions.add_argument(
        "--show",
        action="store_true",
        help="list CHECKPOINT's result images and show its contact sheet (or the --compare grid)"
        " in the terminal: kitty/iTerm2 inline images where detected, half blocks otherwise",
    )
    actions.add_argument("--halfblock", action="store_true", help="with --show: always use half blocks")
    parser.add_argument("--config", metavar="FILE", help="sdxl-tui settings TOML")


def _say(message: str) -> None:
    print(f"sdxl-tui eval: error: {message}", file=sys.stderr)


def _err(message: str) -> int:
    _say(message)
    return 2


def _extra_args(args: argparse.Namespace) -> list[str]:
    extra: list[str] = []
    for opt, value in (
        ("--steps", args.steps),
        ("--guidance", args.guidance),
        ("--seed", args.seed),
        ("--config-dir", args.config_dir),
    ):
        if value is not None:
            extra += [opt, str(value)]
    return extra


def _print_status(run_dir: str, as_json: bool) -> int:
    from sdxl_tui.control.evaluate import compare_jobs, eval_status, runner_pid

    records = eval_status(run_dir)
    if as_json:
        print(
            json.dumps(
                {
                    "run_dir": os.path.abspath(run_dir),
                    "runner_pid": runner_pid(run_dir),
                    "evaluations": [r.to_json() for r in records],
                    "comparisons": [
                        {
                            "label": j.label,
                            "status": j.status,
                            "grid": j.grid_path,
                            "error": j.error,
                            "checkpoints": list(j.names),
                        }
                        for j in compare_jobs(run_dir)
                    ],
                },
                indent=2,
            )
        )
        return 0
    if not records:
        print("no evaluations")
        return 0
    for r in records:
        extra = f"exit {r.exit_code}" if r.exit_code is not None else (f"pid {r.pid}" if r.pid else r.when)
        note = f"  ({r.note})" if r.note else ""
        print(f"{r.name:<32} {r.status:<8} {len(r.images):>3} images  {extra}  {r.output_dir}{note}")
    for j in compare_jobs(run_dir):
        print(f"compare {j.label:<24} {j.status:<8} {j.grid_path}" + (f"  ({j.error})" if j.error else ""))
    return 0


def _follow(run_dir: str, name: str, log_path: str, offset: int = 0) -> int:
    """Print the evaluation's log as it grows (from ``offset``) until it ends; its exit status."""
    from sdxl_tui.control.evaluate import eval_record

    while True:
        rec = eval_record(run_dir, name)
        try:
            with open(log_path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
        except OSError:
            pass
        if rec is None:
            return 1
        if not rec.active:
            print(
                f"evaluation {rec.status}: {len(rec.images)} images in {rec.output_dir}"
                + (f" ({rec.note})" if rec.note else "")
            )
            if rec.status == "done":
                return 0
            return rec.exit_code if rec.exit_code and rec.exit_code > 0 else 1
        time.sleep(0.25)


def _show(path: str, halfblock: bool) -> None:
    from sdxl_tui.render.show import print_image

    try:
        print_image(path, halfblock=halfblock)
    except OSError as exc:
        print(f"sdxl-tui eval: cannot show {path}: {exc}", file=sys.stderr)


def _show_results(run_dir: str, checkpoint: str, halfblock: bool) -> int:
    """List an evaluation's images (with prompts from the manifest) and show the contact sheet."""
    from sdxl_tui.control import evaluate as ev

    rec = ev.eval_record(run_dir, os.path.basename(checkpoint))
    folder = rec.output_dir if rec else ev.default_output_dir(run_dir, checkpoint)
    images = ev.result_images(folder)
    if not images:
        return _err(f"no evaluation images in {folder}" + (f" (status {rec.status})" if rec else ""))
    manifest = ev.read_manifest(folder) or {}
    prompts = {str(e.get("file")): e for e in manifest.get("prompts") or [] if isinstance(e, dict)}
    for path in images:
        entry = prompts.get(os.path.basename(path))
        extra = f"  seed {entry.get('seed')}: {entry.get('prompt')}" if entry else ""
        print(f"{path}{extra}")
    sheet = os.path.join(folder, "contact_sheet.png")
    _show(sheet if os.path.isfile(sheet) else images[0], halfblock)
    return 0


def _start_state(run_dir: str, name: str, status: str) -> str:
    """"queued behind X" only when another evaluation runs; else it is starting now."""
    from sdxl_tui.control.evaluate import eval_status

    if status != "queued":
        return status
    others = [r.name for r in eval_status(run_dir) if r.active and r.name != name]
    return f"queued behind {others[0]}" if others else "starting"


def _choose_when(args: argparse.Namespace, trainer: int | None) -> str | None:
    if args.queue:
        return "after-training"
    if args.now or trainer is None:
        return "now"
    if sys.stdin.isatty() and sys.stdout.isatty():
        answer = (
            input(
                f"training is running (pid {trainer}) and may be using the GPU: "
                "[r]un now or [q]ueue until training ends? [q] "
            )
            .strip()
            .lower()
        )
        return "now" if answer.startswith("r") else "after-training"
    return None


def _plan_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``plan_eval`` keywords that come from the command line, shared by every mode."""
    return {
        "command": args.command,
        "builtin": True if args.builtin else None,
        "base_model": args.base_model,
        "num_samples": args.num_samples,
        "resolution": args.resolution,
        "device": args.device,
        "prompts": args.prompts,
        "extra_args": _extra_args(args),
    }


def _run_compare(args: argparse.Namespace, run_dir: str, settings: Settings, plan_kw: dict[str, Any]) -> int:
    """``--compare RANGE``: one grid of the selected checkpoints, rendered with shared prompts."""
    from sdxl_tui.control import evaluate as ev

    checkpoints = ev.parse_selection(run_dir, args.compare)
    trainer = ev.training_pid(run_dir)
    when = _choose_when(args, trainer)
    if when is None:
        return _err(f"training is running (pid {trainer}): pass --now or --queue")
    print("comparing: " + ", ".join(os.path.basename(c) for c in checkpoints), flush=True)
    try:
        path = ev.compare_grid(run_dir, checkpoints, settings=settings, when=when, rerun=args.rerun, **plan_kw)
    except ev.EvalError as exc:
        print(f"sdxl-tui eval: {exc}", file=sys.stderr)
        return 1
    print(path, flush=True)
    if args.show:
        _show(path, args.halfblock)
    return 0


def _start_planned(args: argparse.Namespace, run_dir: str, checkpoint: str, plan: EvalPlan) -> int:
    """Start (or queue) a planned evaluation; with ``--wait``, follow it to its end."""
    from sdxl_tui.control import evaluate as ev

    for warning in plan.warnings:
        print(f"sdxl-tui eval: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print(plan.command_line)
        print(f"output: {plan.output_dir}")
        return 0
    problem = ev.certain_failure(plan)
    if problem:  # before detaching: a detached failure would only say "running" here
        return _err(f"{problem}; nothing was started")
    when = _choose_when(args, plan.training_pid)
    if when is None:
        return _err(
            f"training is running (pid {plan.training_pid}) and may be using the GPU: "
            "pass --now to run anyway or --queue to run when training ends"
        )
    try:
        log_offset = os.path.getsize(plan.log_path)
    except OSError:
        log_offset = 0
    try:
        rec = ev.start_eval(plan, when=when)
    except ev.EvalError as exc:
        return _err(str(exc))
    state = "queued until training ends" if when == "after-training" else _start_state(run_dir, plan.name, rec.status)
    print(f"evaluation of {plan.name}: {state}; output {plan.output_dir}; log {plan.log_path}", flush=True)
    if args.wait:
        code = _follow(run_dir, plan.name, plan.log_path, log_offset)
        if args.show:
            _show_results(run_dir, checkpoint, args.halfblock)
        return code
    return 0


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.commands._rundir import readable_run_dir
    from sdxl_tui.config import ConfigError, load_settings
    from sdxl_tui.control import evaluate as ev

    run_dir, status = readable_run_dir(args.run_dir, _say)
    if status:
        return 2
    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        return _err(str(exc))
    if args.status:
        return _print_status(run_dir, args.json)
    plan_kw = _plan_options(args)
    try:
        if args.compare:
            return _run_compare(args, run_dir, settings, plan_kw)
        if not args.checkpoint:
            return _err("CHECKPOINT is required (or --status / --compare)")
        checkpoint = ev.resolve_checkpoint(run_dir, args.checkpoint)
        if args.versus:
            from sdxl_tui.commands.eval_versus import run_versus_command

            return run_versus_command(args, run_dir, checkpoint, settings, plan_kw)
        if args.cancel:
            rec = ev.cancel_eval(run_dir, os.path.basename(checkpoint))
            if rec is None:
                return _err(f"no evaluation of {os.path.basename(checkpoint)}")
            print(f"{rec.name}: {rec.status} ({rec.note or ''})")
            return 0
        if args.show and not args.wait:
            return _show_results(run_dir, checkpoint, args.halfblock)
        plan = ev.plan_eval(run_dir, checkpoint, settings=settings, output_dir=args.output_dir, **plan_kw)
    except ev.EvalError as exc:
        return _err(str(exc))
    return _start_planned(args, run_dir, checkpoint, plan)
