"""SD1.5 optimisation trials for the planner: re-exported from their one home,
:mod:`sdxl_tui.sources.trials` (the runs view reads the same trials)."""

from __future__ import annotations

from sdxl_tui.sources.trials import (
    FIELD_PREFERENCE,
    PARAM_ALIASES,
    RESULT_FILES,
    TEXT_RESULTS,
    Pick,
    PlanError,
    Trial,
    load_optuna_trials,
    load_trial,
    load_trials,
    normalise_params,
    pick_best,
)

__all__ = [
    "FIELD_PREFERENCE", "PARAM_ALIASES", "RESULT_FILES", "TEXT_RESULTS", "Pick", "PlanError", "Trial",
    "load_optuna_trials", "load_trial", "load_trials", "normalise_params", "pick_best",
]
