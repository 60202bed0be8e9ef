"""`sdxl-tui kill DIR`: stop the training process tree of a run directory safely."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdxl_tui.control.kill import KillPlan

DESCRIPTION = """\
Stop the training run writing to DIR, and only it.

The trainer is the process sdxl-tui recorded when it started the run (trusted only when
its pid, create time and command line still match), or a process whose command line runs
sdxl_train_network.py / train_network.py with an --output_dir resolving to DIR. The run is
the trainer, everything below it (DataLoader workers, ranks) and the parents that exist only
to run it, each shown with its role: "wrapper" (a shell running a script or -c: bash
train.sh, a retry loop), "launcher" (accelerate launch, torchrun, conda run, timeout, env…),
"supervisor" (sdxl-tui start's), "helper" (a wrapper's other children: sleep, tee). The walk
up stops at your interactive shell, tmux, screen, sshd, init or anything unknown. The table
of role, pid, user and command is shown and confirmed first.

Steps: the wrappers are frozen (SIGSTOP) so no retry loop can start the trainer again;
SIGINT to the trainer (at once SIGTERM if it ignores SIGINT, as after `nohup … &`), wait,
SIGTERM to the trainer, its children and the launchers, wait, SIGKILL; then the wrappers
and their helpers get SIGTERM + SIGCONT (SIGKILL if needed), and sdxl-tui's supervisor a
moment to record the exit. (pid, create time) and owner are checked again right before each
signal. Afterwards nothing of the run may be alive, and for --respawn-watch seconds a new
trainer for DIR is looked for: one that appears is reported loudly (something outside the
run restarts it). The stop is recorded in DIR/.sdxl-tui/last-kill.json, so the run's state
reads "stopped by you (sdxl-tui kill, SIGINT, 03:12) at step N; last checkpoint …; how to
resume", even when the trainer exits 1 (KeyboardInterrupt) or a wrapper exits 130/254.

A reused PID, a trainer of another output directory or another user's process is never
signalled: it is reported instead. sd-scripts saves nothing when signalled: use
--after-checkpoint to lose no training time.

A run submitted to Slurm by sdxl-tui is stopped with scancel instead: its recorded job is
checked (same job id and submit time, your own job, still queued or running), then
`scancel --full --signal=INT` reaches the trainer like Ctrl-C, and after --timeout-int a
plain `scancel` ends the whole job (--signal TERM or KILL: the plain scancel at once).
A queued job is simply cancelled."""

EPILOG = """\
examples:
  sdxl-tui kill RUN_DIR                     # show the tree, confirm, SIGINT -> SIGTERM -> SIGKILL
  sdxl-tui kill RUN_DIR --yes --signal TERM # scripts: start at SIGTERM, no question
  sdxl-tui kill RUN_DIR --after-checkpoint  # a detached watcher stops it after the next checkpoint
  sdxl-tui kill RUN_DIR --cancel            # cancel that watcher; the run continues

timeouts default to the settings kill.sigint_timeout / kill.sigterm_timeout (10 s each;
SDXL_TUI_KILL_SIGINT_TIMEOUT, SDXL_TUI_KILL_SIGTERM_TIMEOUT).

exit status:
  0  every process of the run exited and none came back, or the Slurm job is gone (or the watcher
     was started / cancelled)
  1  something survived or a new trainer appeared, or the watcher could not be started /
     cancelled, or not confirmed
  2  bad usage, or confirmation needed but stdin is not a terminal (use --yes)
  3  nothing to stop: no live trainer writes to DIR (refusals, if any, are listed)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="run (output) directory")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--signal", default="INT", type=str.upper, choices=["INT", "TERM", "KILL"],
                        help="first signal of the INT -> TERM -> KILL sequence (default INT)")
    parser.add_argument("--after-checkpoint", action="store_true",
                        help="stop after the next checkpoint (and its -state folder) is completely written")
    parser.add_argument("--cancel", action="store_true", help="cancel a pending --after-checkpoint stop")
    parser.add_argument("--timeout-int", type=float, metavar="S", help="seconds to wait after SIGINT")
    parser.add_argument("--timeout-term", type=float, metavar="S", help="seconds to wait after SIGTERM")
    parser.add_argument("--respawn-watch", type=float, metavar="S", default=3.0,
                        help="after the kill, watch this long for a new trainer of DIR (default 3)")


def _err(msg: str) -> None:
    print(f"sdxl-tui kill: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.commands._prompt import confirm
    from sdxl_tui.control.kill import (
        cancel_stop_after_checkpoint,
        plan_kill,
        start_stop_after_checkpoint,
    )

    if args.cancel and args.after_checkpoint:
        _err("--cancel and --after-checkpoint exclude each other")
        return 2
    if args.cancel:
        res = cancel_stop_after_checkpoint(args.dir)
        (print if res.ok else _err)(res.message)
        return 0 if res.ok else 1
    int_t, term_t = args.timeout_int, args.timeout_term
    if int_t is None or term_t is None:
        try:
            from sdxl_tui.config import load_settings

            settings = load_settings()
            int_t = settings.kill.sigint_timeout if int_t is None else int_t
            term_t = settings.kill.sigterm_timeout if term_t is None else term_t
        except Exception:  # noqa: BLE001 - fall back to the documented defaults
            int_t = 10.0 if int_t is None else int_t
            term_t = 10.0 if term_t is None else term_t

    from sdxl_tui.sources.scheduler import read_slurm_record

    if read_slurm_record(args.dir) is not None:
        return _run_slurm(args, int_t, term_t)
    plan = plan_kill(args.dir)
    if plan.targets:
        print(f"{'ROLE':<8} {'PID':>7}  {'USER':<10} COMMAND")
        for line in plan.describe():
            print(line)
    else:
        for r in plan.refusals:
            print(f"refused  {r.pid:>7}  {r.reason}")
    for note in plan.notes:
        print(f"note: {note}")
    if plan.empty:
        _err(f"nothing to stop in {plan.run_dir}")
        return 3
    what = ("stop these after the next complete checkpoint" if args.after_checkpoint
            else f"send SIG{args.signal} (then escalate) to these {len(plan.targets)} process(es)")
    if not args.yes:
        answer = confirm(f"{what.capitalize()}?")
        if answer is None:
            _err("stdin is not a terminal, so nobody can confirm: pass --yes")
            return 2
        if not answer:
            print("nothing signalled")
            return 1
    if args.after_checkpoint:
        res = start_stop_after_checkpoint(plan.run_dir, start=args.signal, timeouts=(int_t, term_t))
        (print if res.ok else _err)(res.message)
        if res.ok:
            print(f"cancel with: sdxl-tui kill {plan.run_dir} --cancel")
        return 0 if res.ok else 1
    return _execute(plan, args, int_t, term_t)


def _execute(plan: KillPlan, args: argparse.Namespace, int_t: float, term_t: float) -> int:
    """Run the confirmed kill and say what happened (loudly when a trainer came back)."""
    from sdxl_tui.control.kill import execute_kill

    result = execute_kill(plan, start=args.signal, timeouts=(int_t, term_t), respawn_watch=args.respawn_watch,
                          progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    for line in result.describe():
        print(line)
    if result.ok:
        print("all processes of the run exited")
        return 0
    if result.survivors:
        _err(f"{len(result.survivors)} process(es) survived")
    if result.respawned:
        pids = ", ".join(str(p.pid) for p in result.respawned)
        _err(f"A NEW TRAINER STARTED for this run after the kill (pid {pids}): something outside the run "
             "restarts it (a systemd unit with Restart=, a Python loop, a job runner); stop that, then kill again")
    return 1


def _run_slurm(args: argparse.Namespace, int_t: float, term_t: float) -> int:
    """``kill`` for a run sdxl-tui submitted to Slurm: scancel, after the same checks."""
    from sdxl_tui.commands._prompt import confirm
    from sdxl_tui.control.slurm import cancel, plan_cancel, start_stop_after_checkpoint

    plan = plan_cancel(args.dir)
    for line in plan.describe():
        print(line)
    if plan.empty:
        _err(f"nothing to stop in {plan.run_dir}")
        return 3
    pending = plan.status is not None and plan.status.state == "PENDING"
    if args.after_checkpoint:
        what = "cancel this job after the next complete checkpoint"
    elif pending or args.signal != "INT":
        what = "cancel this job (scancel)"
    else:
        what = f"interrupt this job (scancel --full --signal=INT, then scancel after {int_t:g} s)"
    if not args.yes:
        answer = confirm(f"{what[0].upper()}{what[1:]}?")
        if answer is None:
            _err("stdin is not a terminal, so nobody can confirm: pass --yes")
            return 2
        if not answer:
            print("nothing cancelled")
            return 1
    if args.after_checkpoint:
        ok, message = start_stop_after_checkpoint(plan.run_dir, grace=int_t)
        (print if ok else _err)(message)
        if ok:
            print(f"cancel with: sdxl-tui kill {plan.run_dir} --cancel")
        return 0 if ok else 1
    result = cancel(plan, grace=int_t, term_wait=term_t + 60.0, interrupt=args.signal == "INT",
                    progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    (print if result.ok else _err)(result.message)
    return 0 if result.ok else 1
