"""`sdxl-tui start [DIR]`: preflight-check and launch a training run, detached."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sdxl_tui.formats.launch_config import LaunchConfig

DESCRIPTION = """\
Start the training run described by a launch config (DIR/sdxl-tui.toml, or --launch FILE).

Steps: run the preflight check and show its findings (refuse on errors unless --force);
show the exact argv, working directory, environment additions and the files it will write;
ask to confirm (--yes for scripts); then launch it detached: a new session, stdin from
/dev/null, stdout and stderr appended to OUTPUT_DIR/training.log (an earlier log is kept as
training.log.1, .2, ...), PYTHONUNBUFFERED=1, and a run record in OUTPUT_DIR/.sdxl-tui/run.json.
The run survives this command exiting or being killed and the SSH session hanging up.

A start is refused while a trainer for the same output directory is alive, whether sdxl-tui
started it or it was started by hand (found by its --output_dir).

With `backend = "slurm"` in [launch] the run is submitted to Slurm instead: the same preflight,
then the exact batch script and sbatch line are shown, and `sbatch --parsable` submits it
(the job id is printed; the job's output is appended to OUTPUT_DIR/training.log). A start is
then also refused while a Slurm job of this output directory is queued or running."""

EPILOG = """\
examples:
  sdxl-tui start /mnt/data/ai_data/models/lora/luca/sdxl_v1
  sdxl-tui start --launch luca_sdxl_v1.launch.toml --dry-run
  sdxl-tui start RUN_DIR --yes            # no question asked (scripts, cron)

exit status:
  0  started (or --dry-run: the start would be allowed)
  1  the start failed, or was not confirmed
  2  bad usage: no or invalid launch config, preflight errors (see --force),
     confirmation needed but stdin is not a terminal (use --yes)
  3  refused: a trainer (or a queued or running Slurm job) for this output directory is alive,
     another start is in progress, or sbatch is not available for a Slurm launch
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", metavar="DIR",
                        help="run (output) directory holding sdxl-tui.toml "
                             "(default: the current directory, or --launch FILE)")
    parser.add_argument("--launch", metavar="FILE", help="launch config TOML (default: DIR/sdxl-tui.toml)")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--force", action="store_true", help="start even when the preflight check finds errors")
    parser.add_argument("--dry-run", action="store_true", help="show what would run and exit without starting")
    parser.add_argument("--no-check", action="store_true", help="skip the preflight check")


def _err(msg: str) -> None:
    print(f"sdxl-tui start: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.control.launch import launch, plan_launch, preflight, report_has_errors
    from sdxl_tui.formats.launch_config import (
        DEFAULT_NAME,
        LaunchConfigError,
        find_launch_config,
        load_launch_config,
    )

    explicit = args.launch
    if explicit is None:
        try:
            from sdxl_tui.config import load_settings

            explicit = load_settings().launch.file
        except Exception:  # noqa: BLE001 - a broken settings file must not hide the real error
            explicit = None
    path = find_launch_config(args.dir or ".", explicit)
    if path is None:
        where = os.path.join(args.dir, DEFAULT_NAME) if args.dir else DEFAULT_NAME
        _err(f"no launch config: {where} does not exist; pass --launch FILE (see README: launch config)")
        return 2
    try:
        cfg = load_launch_config(path)
    except LaunchConfigError as exc:
        _err(str(exc))
        return 2
    print(f"launch config: {path}")
    if args.dir and os.path.realpath(args.dir) != os.path.realpath(cfg.output_dir):
        print(f"note: the launch config's output_dir is {cfg.output_dir}, not {os.path.realpath(args.dir)}")

    if not args.no_check:
        report, note = preflight(cfg)
        if note:
            print(f"preflight: {note}")
        elif report is not None:
            from sdxl_tui.planning.check import format_report

            print(format_report(report))
            if report_has_errors(report):
                if not args.force:
                    _err("refused: the preflight check found errors (fix them, or --force to start anyway)")
                    return 2
                print("preflight errors overridden by --force")

    if cfg.backend == "slurm":
        return _run_slurm(cfg, args)
    plan = plan_launch(cfg)
    print("\nwill run:")
    print(f"  argv:     {plan.command_line}")
    print(f"  cwd:      {plan.cwd}")
    print("  env:      " + " ".join(f"{k}={v}" for k, v in plan.env.items()))

    def go() -> _Outcome:
        result = launch(cfg)
        return result.ok, result.message, ()

    return _confirm_and_go(cfg, plan, args, ("start", "started", "Start this run?"), go)


def _run_slurm(cfg: LaunchConfig, args: argparse.Namespace) -> int:
    """Show the batch script and the sbatch line, confirm, submit; prints the job id."""
    from sdxl_tui.control.slurm import plan_submit, submit

    plan = plan_submit(cfg)
    print(f"\nwill submit to Slurm ({plan.script_path}):")
    print("  " + plan.script.rstrip("\n").replace("\n", "\n  "))
    print(f"\n  sbatch:   {plan.sbatch_line}")

    def go() -> _Outcome:
        result = submit(cfg)
        return result.ok, result.message, (f"job id: {result.job_id}",)

    return _confirm_and_go(cfg, plan, args, ("submit", "submitted", "Submit this job?"), go)


#: what a start or submit did: (ok, message, more lines to show)
_Outcome = tuple[bool, str, tuple[str, ...]]


class _Plan(Protocol):
    @property
    def rotations(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def writes(self) -> tuple[str, ...]: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...
    @property
    def refusal(self) -> str | None: ...


def _confirm_and_go(
    cfg: LaunchConfig, plan: _Plan, args: argparse.Namespace, words: tuple[str, str, str], go: Callable[[], _Outcome]
) -> int:
    """The rest of the plan, the refusal or dry run, the confirmation, then ``go()``: (ok, message,
    more lines to show) and its exit status.

    ``words``: the verb (start, submit), its past (started, submitted) and the question to confirm.
    """
    from sdxl_tui.commands._prompt import confirm

    verb, past, question = words
    for src, dst in plan.rotations:
        print(f"  rename:   {src} -> {dst}")
    for w in plan.writes:
        print(f"  writes:   {w}")
    for w in plan.warnings:
        print(f"  warning:  {w}")
    if plan.refusal:
        _err(f"refused: {plan.refusal}")
        return 3
    if args.dry_run:
        print(f"\ndry run: nothing {past}")
        return 0
    if not args.yes:
        answer = confirm(question)
        if answer is None:
            _err(f"stdin is not a terminal, so nobody can confirm: pass --yes to {verb} without asking")
            return 2
        if not answer:
            print(f"not {past}")
            return 1
    ok, message, more = go()
    if not ok:
        _err(message)
        return 3 if message.startswith(("refused", "another sdxl-tui start")) else 1
    print(message)
    for line in more:
        print(line)
    print(f"watch it: sdxl-tui {cfg.output_dir}    stop it: sdxl-tui kill {cfg.output_dir}")
    return 0
