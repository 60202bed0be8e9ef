"""Suite-wide test settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.proctools import reset_inherited_signals
from tests.realrun import INPUTS, materialize


def pytest_configure(config: pytest.Config) -> None:
    """Started as ``nohup pytest … &``? Give the processes tests start default signals."""
    reset_inherited_signals()


@pytest.fixture(autouse=True)
def _unbuffered_simulator_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run simulated trainers with unbuffered stdout unless a test says otherwise.

    The simulator follows Python's real buffering: without ``PYTHONUNBUFFERED`` its stdout lines
    (epoch lines, "saving checkpoint") reach training.log late, exactly like sd-scripts'. Tests
    that assert on line order must not depend on whether the machine running them happens to
    export that variable; the tests about buffering itself set it explicitly (``unbuffered=``,
    or their own subprocess environment).
    """
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")


@pytest.fixture(autouse=True)
def _private_queue_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's own night queue (``$XDG_STATE_HOME/sdxl-tui/queue``) out of the tests:
    the dashboard and ``status`` show it, and the queue tests write one."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-state"))
    # and the user's cache folder (``status`` and the dashboard remember decoded event files)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(autouse=True, scope="session")
def _no_tqdm_monitor_thread() -> None:
    """tqdm starts a monitor thread (``tqdm.TMonitor``) with its first bar, in-process here when
    the built-in evaluator's test renders with diffusers. A thread left running makes every later
    cold read in this process skip its fork prefetch (``sources/forked.can_fork``), so the tests of
    that prefetch would depend on the order they run in. The sampler runs in its own process in use."""
    import tqdm

    tqdm.tqdm.monitor_interval = 0


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real sd-scripts run directory, rebuilt from ``tests/fixtures/real-sdxl-run``.

    Session-scoped and shared: tests that use it must not write into it (several assert that
    reading it writes nothing).
    """
    return materialize(tmp_path_factory.mktemp("real-sdxl-run"))


@pytest.fixture(scope="session")
def real_inputs() -> Path:
    """The real run's launch line, dataset TOML and images."""
    return INPUTS
