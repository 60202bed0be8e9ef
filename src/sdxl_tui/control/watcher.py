"""The detached stop-after-checkpoint watcher: ``python -m sdxl_tui.control.watcher --run-dir D``.

Why a separate process: the wait may last an hour (one epoch), and the user should be able
to close the dashboard, the laptop and the SSH session meanwhile. It runs in its own
session (forked once, re-parented away from whoever started it), records itself in
``D/.sdxl-tui/stop-after-checkpoint.json`` (pid, create time, baseline checkpoints, state),
polls the run directory, and when the next checkpoint is completely written
(:class:`~sdxl_tui.control.kill.CheckpointWaiter`) it runs the same identity-checked kill as
``sdxl-tui kill``. SIGTERM cancels it (``sdxl-tui kill D --cancel``). If the trainer ends on
its own first, it stops waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sdxl_tui.control.kill import (
    CheckpointWaiter,
    complete_checkpoints,
    execute_kill,
    plan_kill,
    run_saves_state,
    watch_path,
)
from sdxl_tui.formats.statedir import write_json_atomic
from sdxl_tui.sources.procs import discover


class _Cancelled(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdxl_tui.control.watcher")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--baseline", help="JSON list of the complete checkpoints when the stop was asked for")
    parser.add_argument("--signal", default="INT")
    parser.add_argument("--timeout-int", type=float, default=10.0)
    parser.add_argument("--timeout-term", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=0.6)
    parser.add_argument("--no-fork", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not args.no_fork and os.fork() != 0:
        os._exit(0)
    run_dir = os.path.realpath(args.run_dir)
    from sdxl_tui.sources.scheduler import read_slurm_record

    if read_slurm_record(run_dir) is not None:  # a Slurm job: the node is not ours to signal
        from sdxl_tui.control.slurm import watch_and_cancel

        return watch_and_cancel(run_dir, token=args.token, baseline=json.loads(args.baseline or "[]"),
                                grace=args.timeout_int, poll=args.poll, settle=args.settle)
    import psutil

    path = watch_path(run_dir)
    found = discover(run_dir)
    baseline = json.loads(args.baseline) if args.baseline else complete_checkpoints(run_dir)
    saves_state = run_saves_state(run_dir, found.trees)
    record: dict[str, Any] = {
        "token": args.token,
        "pid": os.getpid(),
        "create_time": psutil.Process(os.getpid()).create_time(),
        "run_dir": run_dir,
        "started_at": time.time(),
        "baseline": baseline,
        "saves_state": saves_state,
        "trainer_pid": found.tree.trainer.pid if found.tree else None,
        "state": "waiting",
        "message": "waiting for the next complete checkpoint",
    }
    if found.tree is None:
        record.update(state="failed", message="no live trainer for this directory")
        write_json_atomic(path, record)
        return 1
    write_json_atomic(path, record)

    def on_term(_signum: int, _frame: Any) -> None:
        raise _Cancelled()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    waiter = CheckpointWaiter(run_dir, baseline=baseline, saves_state=saves_state, settle=args.settle)
    last_check = 0.0
    try:
        while True:
            name = waiter.poll()
            if name is not None:
                break
            now = time.monotonic()
            if now - last_check > 5.0:
                last_check = now
                if not discover(run_dir).trees:
                    record.update(state="trainer-gone", ended_at=time.time(),
                                  message="the trainer ended before another checkpoint; nothing stopped")
                    write_json_atomic(path, record)
                    return 0
            time.sleep(args.poll)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, finish the stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        record.update(state="stopping", checkpoint=name, checkpoint_at=time.time(),
                      message=f"{name} is complete; stopping the run")
        write_json_atomic(path, record)
        plan = plan_kill(run_dir)
        result = execute_kill(plan, start=args.signal, timeouts=(args.timeout_int, args.timeout_term),
                              by="sdxl-tui kill --after-checkpoint", how="stop-after-checkpoint", checkpoint=name)
        new = waiter.new_checkpoints()
        message = f"stopped after {name}"
        if len(new) > 1:
            message += f" (files written meanwhile: {', '.join(n for n in new if n != name)})"
        if not result.ok:
            message += f", but {len(result.survivors)} process(es) survived"
        record.update(state="done" if result.ok else "incomplete", ended_at=time.time(), message=message,
                      new_checkpoints=new, result=result.to_json(), refusals=[r.reason for r in plan.refusals])
        write_json_atomic(path, record)
        return 0 if result.ok else 1
    except _Cancelled:
        record.update(state="cancelled", ended_at=time.time(), message="cancelled; the run continues")
        write_json_atomic(path, record)
        return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Path", "main"]
