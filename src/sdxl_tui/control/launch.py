"""Start a training run detached, safely: one implementation behind key ``s`` and ``sdxl-tui start``.

Why: the hand-made ``nohup conda run … > training.log 2>&1 &`` line overwrites the last log,
buffers the epoch lines (REF §1.3), records a PID that is not the trainer's and happily
starts a second trainer into the same output directory. Here a start is:

1. :func:`plan_launch` - plain data the UI shows before asking: the exact argv, working
   directory, environment additions, the files it will write (log rotation included) and,
   if a trainer for this output directory is already alive, the refusal with its reason.
2. :func:`launch` - under an ``fcntl.flock`` on ``OUTPUT_DIR/.sdxl-tui/lock`` (held only
   while starting) it repeats the process discovery, rotates ``training.log`` to
   ``training.log.1`` (``.1`` to ``.2``…), and starts the supervisor
   (``control/supervisor.py``) in a new session with stdin from /dev/null, stdout and stderr
   appended to the log and ``PYTHONUNBUFFERED=1``. The supervisor writes the run record
   ``OUTPUT_DIR/.sdxl-tui/run.json`` that :mod:`sdxl_tui.sources.procs` reads.

Nothing here prints; results are returned as frozen data.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType

from sdxl_tui.formats import statedir
from sdxl_tui.formats.cmdline import SUPERVISOR_MODULE
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.formats.statedir import LOCK_NAME, RECORD_NAME, RunRecord, read_run_record
from sdxl_tui.model import ProcessTree
from sdxl_tui.planning.check import CheckReport, check_launch
from sdxl_tui.sources.procs import discover


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class LaunchPlan:
    """What a start would do, for the confirmation screen and ``--dry-run``."""

    config: LaunchConfig
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str] = field(default_factory=_empty)  # added to the inherited environment
    log_path: str = ""
    record_path: str = ""
    rotations: tuple[tuple[str, str], ...] = ()  # (from, to) renames done before the start
    writes: tuple[str, ...] = ()  # files and folders the start creates or appends to
    running: tuple[ProcessTree, ...] = ()  # live trainer trees for this output directory
    refusal: str | None = None  # why the start must not happen (None: it may)
    warnings: tuple[str, ...] = ()

    @property
    def command_line(self) -> str:
        """The argv as one shell-quoted line (for display and copy-paste)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class LaunchResult:
    """What a start did."""

    ok: bool
    message: str
    pid: int | None = None  # the process started from argv (prefix program)
    create_time: float | None = None
    supervisor_pid: int | None = None
    log_path: str | None = None
    record_path: str | None = None
    record: RunRecord | None = None


def log_rotations(log_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The renames that keep earlier logs: ``training.log.N`` -> ``.N+1`` (highest first),
    then ``training.log`` -> ``training.log.1``. Empty when there is no non-empty log."""
    log = Path(log_path)
    try:
        if log.stat().st_size == 0:
            return []
    except OSError:
        return []
    pattern = re.compile(re.escape(log.name) + r"\.(\d+)$")
    numbers = []
    try:
        for entry in log.parent.iterdir():
            m = pattern.match(entry.name)
            if m:
                numbers.append(int(m.group(1)))
    except OSError:
        pass
    moves = [
        (str(log.with_name(f"{log.name}.{n}")), str(log.with_name(f"{log.name}.{n + 1}")))
        for n in sorted(numbers, reverse=True)
    ]
    moves.append((str(log), str(log.with_name(f"{log.name}.1"))))
    return moves


def rotate_logs(log_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Do :func:`log_rotations`; returns what was renamed."""
    done = []
    for src, dst in log_rotations(log_path):
        os.replace(src, dst)
        done.append((src, dst))
    return done


def describe_running(tree: ProcessTree) -> str:
    t = tree.trainer
    how = "started by sdxl-tui" if tree.recorded else "found by its command line"
    return f"pid {t.pid} ({how}): {' '.join(t.cmdline)[:200]}"


def _launch_env(cfg: LaunchConfig) -> dict[str, str]:
    env = dict(cfg.env)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _warnings(cfg: LaunchConfig) -> list[str]:
    out: list[str] = []
    prefix = list(cfg.prefix)
    names = [os.path.basename(p) for p in prefix]
    if names and names[0] in ("conda", "mamba", "micromamba") and "run" in prefix and (
        "--no-capture-output" not in prefix and "--live-stream" not in prefix
    ):
        out.append(
            f"`{names[0]} run` without --no-capture-output holds all output until the run ends: "
            "training.log stays empty; add \"--no-capture-output\" to the prefix"
        )
    if names and names[0] == "nohup":
        out.append("nohup is not needed: sdxl-tui starts the run detached in its own session")
    if not os.path.isdir(cfg.cwd):
        out.append(f"working directory does not exist: {cfg.cwd}")
    return out


def plan_launch(cfg: LaunchConfig, *, psutil_module: ModuleType | None = None) -> LaunchPlan:
    """Describe the start of ``cfg`` without doing anything."""
    out = cfg.output_dir
    log = cfg.log_path
    sdir = statedir.state_dir(out)
    found = discover(out, psutil_module=psutil_module)
    refusal = None
    if found.trees:
        refusal = "a trainer for this output directory is already running: " + "; ".join(
            describe_running(t) for t in found.trees
        )
    elif not os.path.isdir(cfg.cwd) and cfg.cwd != out:
        refusal = f"working directory does not exist: {cfg.cwd}"
    rotations = tuple(log_rotations(log))
    writes = (
        f"{log} (stdout and stderr, appended)",
        f"{sdir / RECORD_NAME} (run record: pid, create time, argv, start and end)",
        f"{sdir / LOCK_NAME} (held only while starting)",
    )
    return LaunchPlan(
        config=cfg,
        argv=tuple(cfg.argv()),
        cwd=cfg.cwd,
        env=MappingProxyType(_launch_env(cfg)),
        log_path=log,
        record_path=str(sdir / RECORD_NAME),
        rotations=rotations,
        writes=writes,
        running=found.trees,
        refusal=refusal,
        warnings=tuple(_warnings(cfg)) + found.notes,
    )


def launch(cfg: LaunchConfig, *, python: str | None = None, wait_seconds: float = 15.0,
           psutil_module: ModuleType | None = None) -> LaunchResult:
    """Start ``cfg`` detached (see the module docstring). Refuses, without starting anything,
    when a start for the same output directory is in progress or a trainer is alive."""
    out = Path(cfg.output_dir)
    sdir = statedir.state_dir(out)
    try:
        sdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return LaunchResult(False, f"cannot create {sdir}: {exc}")
    lock_path = sdir / LOCK_NAME
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return LaunchResult(False, f"another sdxl-tui start for {out} is in progress (lock {lock_path})")
        plan = plan_launch(cfg, psutil_module=psutil_module)
        if plan.refusal:
            return LaunchResult(False, f"refused: {plan.refusal}", record_path=plan.record_path)
        if not os.path.isdir(plan.cwd):
            return LaunchResult(False, f"refused: working directory does not exist: {plan.cwd}")
        try:
            rotate_logs(plan.log_path)
            log_fd = os.open(plan.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return LaunchResult(False, f"cannot open the log {plan.log_path}: {exc}")
        launch_id = uuid.uuid4().hex
        env = dict(os.environ)
        env.update(plan.env)
        env["SDXL_TUI_LAUNCH_ENV"] = json.dumps(dict(plan.env))
        cmd = [
            python or sys.executable, "-m", SUPERVISOR_MODULE,
            "--record", plan.record_path, "--launch-id", launch_id, "--cwd", plan.cwd,
            "--output-dir", cfg.output_dir, "--log", plan.log_path, "--", *plan.argv,
        ]
        try:
            starter = subprocess.Popen(
                cmd, cwd=plan.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            return LaunchResult(False, f"cannot start the supervisor: {exc}")
        finally:
            os.close(log_fd)
        try:
            starter.wait(timeout=wait_seconds)  # it forks and exits at once
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + wait_seconds
        record: RunRecord | None = None
        while time.monotonic() < deadline:
            record = read_run_record(out)
            if record is not None and record.launch_id == launch_id:
                break
            record = None
            time.sleep(0.05)
        if record is None:
            return LaunchResult(False, f"the supervisor did not report within {wait_seconds:.0f} s; see {plan.log_path}",
                                log_path=plan.log_path, record_path=plan.record_path)
        if record.error:
            return LaunchResult(False, f"could not start: {record.error}", log_path=plan.log_path,
                                record_path=plan.record_path, record=record)
        return LaunchResult(
            True,
            f"started pid {record.pid} (supervisor {record.supervisor_pid}); log {plan.log_path}",
            pid=record.pid,
            create_time=record.create_time,
            supervisor_pid=record.supervisor_pid,
            log_path=plan.log_path,
            record_path=plan.record_path,
            record=record,
        )
    finally:
        os.close(lock_fd)  # closing the descriptor releases the flock


def preflight(cfg: LaunchConfig) -> tuple[CheckReport | None, str | None]:
    """Run the preflight check (``planning/check.py``).

    Returns ``(report, None)``, or ``(None, note)`` when the check itself failed to run (a
    bug there must not block a start silently; the note says why).
    """
    try:
        return check_launch(cfg), None
    except Exception as exc:  # noqa: BLE001 - see above
        return None, f"preflight check failed to run: {type(exc).__name__}: {exc}"


def report_has_errors(report: CheckReport | None) -> bool:
    return report is not None and report.exit_code >= 2
