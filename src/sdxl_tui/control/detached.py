"""Detached helper processes: the queue runners and the stop-after-checkpoint watcher.

Why one module: each must outlive the dashboard or command that asked for it, so each starts in
its own session with stdin at /dev/null and its output in a log file, and each runner forks
once so its starter can be reaped at once (no zombie, and the runner is re-parented away from
the dashboard). The evaluation queue (``control/evaluate``), the night's queue
(``control/queue``) and the watchers (``control/watcher``) start and enter the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sdxl_tui.formats.statedir import read_json

#: the ``src`` folder this sdxl_tui was imported from (for runners started from a checkout)
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def spawn_runner(
    module: str,
    target: str,
    *,
    poll: float,
    log_path: str | os.PathLike[str],
    with_source_path: bool = False,
) -> None:
    """Start ``python -m MODULE runner TARGET --poll POLL`` detached, in ``target``.

    A spare runner finds its lock held and exits at once, so callers start one every time
    rather than ask a live runner (which could race with it exiting). ``with_source_path``
    puts this sdxl_tui's source folder first on the runner's ``PYTHONPATH``.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if with_source_path:
        env["PYTHONPATH"] = SOURCE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", module, "runner", target, "--poll", str(poll)]
    # The runner forks once and its first process exits at once: reap it.
    _start(argv, log_path, cwd=target, wait=30.0, env=env, output_too=True)


def runner_main(
    argv: Sequence[str] | None,
    *,
    module: str,
    about: tuple[str, str],
    run: Callable[[str, float], int],
    default_poll: float,
) -> int:
    """The ``runner DIR [--poll S]`` entry point of a detached runner: fork once, ignore SIGHUP
    and SIGINT (the terminal that started it may close), then ``run(DIR, poll)``.

    ``about``: the program's description and the ``runner`` command's help.
    """
    description, runner_help = about
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runner", help=runner_help)
    r.add_argument("target", metavar="DIR")
    r.add_argument("--poll", type=float, default=default_poll)
    r.add_argument("--no-fork", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.no_fork and hasattr(os, "fork") and os.fork() > 0:
        os._exit(0)  # the launcher reaps this at once; the child is re-parented to init
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return run(args.target, args.poll)


def start_watcher(
    cmd: Sequence[str],
    *,
    target: str,
    log_path: str | os.PathLike[str],
    report_path: str | os.PathLike[str],
    token: str,
    wait_seconds: float,
) -> Mapping[str, Any] | None:
    """Start a watcher (``control/watcher.py``) detached in ``target`` and wait for its first
    report: the JSON at ``report_path`` that carries ``token``. None when none came in time."""
    _start(cmd, log_path, cwd=target, wait=wait_seconds)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        data = read_json(report_path)
        if data and data.get("token") == token:
            return data
        time.sleep(0.05)
    return None


def _start(
    argv: Sequence[str],
    log_path: str | os.PathLike[str],
    *,
    cwd: str,
    wait: float,
    env: Mapping[str, str] | None = None,
    output_too: bool = False,
) -> None:
    """Start ``argv`` in its own session (stdin /dev/null, stderr, and with ``output_too`` stdout,
    appended to ``log_path``) and wait up to ``wait`` seconds for the starter to exit."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log if output_too else subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait)
