"""End to end: the installed ``sdxl-tui`` inside tmux against a live simulated run.

Reads the screen the way a person would (``tmux capture-pane``), quits with ``q`` and checks
that the trainer is still running. The test runs its own tmux server on a private socket, so it
behaves the same inside or outside the user's tmux. Every process started here is ended by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT = Path(sys.executable).parent / "sdxl-tui"
#: Deadlines sized for a loaded 2-core machine: each is a wait on a real condition, so a fast
#: machine passes in a second or two.
SCREEN_DEADLINE = 90.0
QUIT_DEADLINE = 60.0
SOCKET = f"sdxl-tui-e2e-{os.getpid()}"
CHECKPOINT_ROW = re.compile(r"-0000\d\d +complete")


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    # The user's tmux (if the suite runs inside one) must not be the server the test talks to;
    # the environment is taken now, so the test's private XDG folders (conftest) reach the app.
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, timeout=30,
                          env=env, stdin=subprocess.DEVNULL)


def capture(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def server_pid() -> int | None:
    out = tmux("display-message", "-p", "#{pid}").stdout.strip()
    return int(out) if out.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.mark.skipif(shutil.which("tmux") is None, reason="the end-to-end test drives the app in tmux: install tmux")
@pytest.mark.skipif(not SCRIPT.exists(), reason="needs the installed console script (pip install .)")
def test_dashboard_in_tmux_shows_progress_and_quit_leaves_the_trainer(tmp_path: Path) -> None:
    from sdxl_tui.sim import start_simulated

    run_dir = tmp_path / "luca_sdxl_v1"
    sim = start_simulated(run_dir, [
        # 2 s per epoch and 400 s in all: still training when a slow, loaded machine shows the
        # first frame (the test ends the trainer by PID as soon as it has seen what it needs)
        "--output_name", "luca_sdxl_v1", "--max_train_epochs", "200", "--save_every_n_epochs", "1",
        "--sim-step-seconds", "0.5", "--sim-startup-seconds", "0.3", "--sim-batches-per-epoch", "4",
        "--logging_dir", str(run_dir / "logs"), "--log_with", "tensorboard",
    ])
    session = f"sdxl-tui-e2e-{os.getpid()}"
    env_cmd = f"TERM=xterm-256color {SCRIPT} {run_dir} --no-gpu"
    pane_pid = None
    tmux_pid = None
    try:
        made = tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", env_cmd)
        assert made.returncode == 0, made.stderr
        tmux_pid = server_pid()
        pane_pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").stdout.strip())
        deadline = time.monotonic() + SCREEN_DEADLINE
        screen = ""
        while time.monotonic() < deadline:
            screen = capture(session)
            # the table shows a complete epoch checkpoint (the header names the run; the table
            # keeps its newest rows in view, so which epochs show depends on how late the app came)
            if CHECKPOINT_ROW.search(screen) and "TRAINING" in screen and "step" in screen:
                break
            time.sleep(0.5)
        assert CHECKPOINT_ROW.search(screen), screen
        assert "TRAINING" in screen, screen
        first = screen
        deadline = time.monotonic() + SCREEN_DEADLINE
        while time.monotonic() < deadline and capture(session) == first:
            time.sleep(0.5)
        assert capture(session) != first  # live: the screen keeps changing
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + QUIT_DEADLINE
        while time.monotonic() < deadline and pid_alive(pane_pid):
            time.sleep(0.2)
        assert not pid_alive(pane_pid), f"sdxl-tui did not quit within {QUIT_DEADLINE:.0f} s of q:\n{capture(session)}"
        assert sim.poll() is None, "quitting sdxl-tui must leave the trainer running"
    finally:
        tmux("kill-server")
        for pid in (pane_pid, tmux_pid):
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if sim.poll() is None:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait(timeout=10)
