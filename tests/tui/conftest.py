"""Fixtures for the dashboard tests (the helpers live in tui_helpers.py: a module named
``conftest`` cannot be imported by two test folders at once)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from tui_helpers import finished_run, live_sims, procs  # noqa: F401  (fixtures)
