"""Suite-wide test settings."""

from __future__ import annotations

import pytest


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
