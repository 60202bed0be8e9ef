"""Helpers for the dashboard tests: simulated runs (in-process or live subprocesses,
always ended by PID), a frozen clock and the settings used by every test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from sdxl_tui.config import Settings

FROZEN = 1_795_000_000.0  # 2026-11-19 06:13:20 UTC: every snapshot test sees this "now"

#: A small finished run: 4 epochs of 10 steps, checkpoints at epoch 2 and the final one.
FINISHED_ARGS = [
    "--output_name", "luca_sdxl_v1",
    "--max_train_epochs", "4",
    "--save_every_n_epochs", "2",
    "--gradient_accumulation_steps", "2",
    "--learning_rate", "0.0003",
    "--unet_lr", "0.0003",
    "--text_encoder_lr", "0.000201",
    "--lr_scheduler", "cosine_with_restarts",
    "--network_dim", "64",
    "--network_alpha", "32",
    "--sim-step-seconds", "0",
    "--sim-startup-seconds", "0",
    "--sim-batches-per-epoch", "20",
    "--sim-seed", "7",
]


def settings(**overrides: object) -> Settings:
    base = Settings()
    return base.replace(**overrides) if overrides else base


def freeze_mtimes(root: Path, when: float) -> None:
    """Give every file one mtime so ages shown at the frozen "now" are stable."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            try:
                os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
            except OSError:
                pass


def make_finished_run(path: Path, args: list[str] | None = None) -> Path:
    from sdxl_tui.sim import run_simulated

    run_dir = path / "luca_sdxl_v1"
    extra = ["--logging_dir", str(run_dir / "logs"), "--log_with", "tensorboard"]
    rc = run_simulated(run_dir, [*(args or FINISHED_ARGS), *extra])
    assert rc in (0, 1), rc
    return run_dir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = make_finished_run(tmp_path_factory.mktemp("finished"))
    freeze_mtimes(run_dir, FROZEN - 3600)
    return run_dir


class LiveSims:
    """Starts simulator subprocesses; every one is ended by PID at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str]) -> tuple[Path, subprocess.Popen[bytes]]:
        from sdxl_tui.sim import start_simulated

        run_dir = self.root / name
        proc = start_simulated(run_dir, [*args, "--logging_dir", str(run_dir / "logs"), "--log_with", "tensorboard"])
        self.procs.append(proc)
        return run_dir, proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # our own session: the simulator only
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def live_sims(tmp_path: Path) -> Iterator[LiveSims]:
    sims = LiveSims(tmp_path)
    try:
        yield sims
    finally:
        sims.close()


async def wait_for(pilot: object, predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.1) -> bool:
    """Let the app run until ``predicate()`` holds (real workers, real files)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(step)  # type: ignore[attr-defined]
    return predicate()


@pytest.fixture
def procs() -> Iterator[object]:
    """``tests.helpers.proctools.Procs`` that also ends the evaluations and queue runners of
    its registered run directories (identity-checked by create time, never by name)."""
    from tests.helpers.proctools import Procs, end_recorded_evaluations

    p = Procs()
    try:
        yield p
    finally:
        for d in p.run_dirs:
            end_recorded_evaluations(d)
        p.cleanup()
