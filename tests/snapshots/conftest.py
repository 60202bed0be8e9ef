"""Deterministic inputs for the snapshot tests: a stored finished run, a frozen clock, UTC,
a fake GPU and a single GPU sample (so the history sparkline never grows)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tui"))

from make_fixture import FROZEN


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture(scope="session")
def snapshot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stored log and event file, plus checkpoints the simulator writes with the same
    arguments (their bytes differ run to run, their names and sizes do not)."""
    from make_fixture import ARGS

    from sdxl_tui.sim import run_simulated

    run_dir = tmp_path_factory.mktemp("snap") / "luca_sdxl_v1"
    run_simulated(run_dir, [*ARGS, "--logging_dir", str(run_dir / "logs"), "--log_with", "tensorboard"])
    stored = HERE / "fixture_run"
    shutil.rmtree(run_dir / "logs")
    shutil.copytree(stored / "logs", run_dir / "logs")
    shutil.copyfile(stored / "training.log", run_dir / "training.log")
    for dirpath, dirnames, filenames in os.walk(run_dir):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (FROZEN - 3600, FROZEN - 3600))
    return run_dir
