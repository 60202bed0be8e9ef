"""`sdxl-tui queue add|list|remove`: the night's runs, one after another, here or on Slurm."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DESCRIPTION = """\
A queue of training runs for the night: each one starts when the one before it has ended.

`queue add LAUNCH_FILE` appends a launch config (the same sdxl-tui.toml `start` uses; a run
folder holding one works too) and makes sure the queue runner is alive: a small detached
process that survives the dashboard closing and the SSH session ending, and exits when
nothing is left. Each entry waits for the entry before it, or for --after (a queue id or a
run directory). A local run starts once its predecessor has ended, no other queued local
run trains and the GPU is free, after the same preflight check as `start`. A Slurm run
(backend = "slurm") is submitted at once with --dependency=afterok:JOB on a queued Slurm
predecessor (afterany with --on-failure continue), so Slurm starts it as soon as the job
before it ends.

A run that does not finish (failed, interrupted, time limit) stops the entries after it:
they are marked skipped, unless it was added with --on-failure continue. --eval SPEC queues
evaluations of a finished run's checkpoints (last, 6-10, 6,8,10 or file names) on the
evaluation queue (see `sdxl-tui eval`).

The queue lives in the setting queue.dir (SDXL_TUI_QUEUE_DIR; default
$XDG_STATE_HOME/sdxl-tui/queue, else ~/.local/state/sdxl-tui/queue), one JSON file per entry."""

EPILOG = """\
examples:
  sdxl-tui queue add ~/runs/sd15_search/sdxl-tui.toml
  sdxl-tui queue add ~/runs/sdxl_v1 --eval 6-10            # after the previous entry; evaluate epochs 6-10
  sdxl-tui queue add ~/runs/sdxl_v2 --after 1 --on-failure continue
  sdxl-tui queue list [--json]
  sdxl-tui queue remove 3                                   # a waiting entry, or a Slurm job still pending

entry statuses: waiting, running (local), submitted (Slurm), done, failed, skipped, removed

exit status:
  0  done (add: queued, and the runner is alive)
  1  remove refused (the run is running: stop it with `sdxl-tui kill DIR`)
  2  bad usage: unreadable launch config, unknown --after or entry id
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="append a launch config to the queue",
                         description="Append a launch config to the queue and start the runner if needed.")
    add.add_argument(
        "launch", metavar="LAUNCH_FILE", help="a launch config TOML, or a run folder holding sdxl-tui.toml"
    )
    add.add_argument("--after", metavar="RUN", help="wait for this queue entry id or run directory "
                     "(default: the entry before it)")
    add.add_argument("--on-failure", choices=("stop", "continue"), default="stop",
                     help="when this run does not finish: skip the entries after it (stop, the default) "
                          "or start them anyway (continue)")
    add.add_argument("--eval", metavar="SPEC", dest="evaluate",
                     help="evaluate these checkpoints when it finishes: last, 6-10, 6,8,10 or names")
    lst = sub.add_parser("list", help="show the queue", description="Show every queue entry and its status.")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    rm = sub.add_parser("remove", help="take a waiting entry out (or cancel its pending Slurm job)",
                        description="Take a waiting entry out of the queue; a submitted Slurm job that has "
                                    "not started yet is cancelled with scancel.")
    rm.add_argument("id", metavar="ID", help="the entry id (see `queue list`)")
    for p in (add, lst, rm):
        p.add_argument("--config", metavar="FILE", help="sdxl-tui settings TOML (queue.dir, queue.poll_interval)")


def _err(message: str) -> None:
    print(f"sdxl-tui queue: {message}", file=sys.stderr)


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M", time.localtime(ts)) if ts else "--:--"


def format_entry(e: Any) -> str:
    """``#2  waiting   slurm  sdxl_v1   after #1   waiting for #1 to end``."""
    import os

    after = f"after {('#' + e.after) if e.after and e.after.isdigit() else e.after}" if e.after else ""
    job = f"job {e.job_id}" + (f" ({e.dependency})" if e.dependency else "") if e.job_id else ""
    name = os.path.basename(e.output_dir.rstrip("/"))
    extra = "  ".join(x for x in (after, job, f"eval {e.evaluate}" if e.evaluate else "",
                                  "on failure: continue" if e.on_failure == "continue" else "") if x)
    when = _clock(e.started_at or e.added_at)
    return f"#{e.id:<3} {e.status:<9} {e.backend:<5} {name:<20} {when}  {extra}  {e.message or ''}".rstrip()


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.config import ConfigError, load_settings
    from sdxl_tui.control.queue import QueueError, add, ensure_runner, remove
    from sdxl_tui.formats.queue import entry_json, queue_dir, read_queue

    try:
        settings = load_settings(config_path=args.config)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    folder = queue_dir(settings.queue.dir)
    if args.queue_command == "list":
        entries = read_queue(folder)
        if args.json:
            print(json.dumps([entry_json(e) for e in entries], indent=1))
        else:
            print("\n".join(format_entry(e) for e in entries) if entries else f"the queue is empty ({folder})")
        return 0
    try:
        if args.queue_command == "add":
            from pathlib import Path

            from sdxl_tui.formats.launch_config import DEFAULT_NAME

            launch = Path(args.launch).expanduser()
            if launch.is_dir():
                launch = launch / DEFAULT_NAME
            entry = add(folder, launch, after=args.after, on_failure=args.on_failure, evaluate=args.evaluate)
            ensure_runner(folder, poll=settings.queue.poll_interval)
            print(f"queued #{entry.id}: {entry.backend} run into {entry.output_dir}")
            return 0
        entry = remove(folder, args.id)
        print(f"removed #{entry.id}" + (f" (Slurm job {entry.job_id} cancelled)" if entry.job_id else ""))
        return 0
    except QueueError as exc:
        _err(str(exc))
        return 1 if args.queue_command == "remove" and "is running" in str(exc) else 2
