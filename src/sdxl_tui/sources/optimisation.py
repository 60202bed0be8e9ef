"""An SD1.5 optimisation folder as one row: its trials, the best so far, how it converged.

Why: the card's first decision is "SD1.5 optimisation finished? no: wait (watch
convergence)". The trials table and the best-so-far curve answer it; the search script's
``CONVERGENCE_ALERT.txt`` is its own verdict and becomes an alert when it appears. The trials
are read by :mod:`sdxl_tui.sources.trials` (the one home of trial reading, shared with
``sdxl-tui plan --from``); the score is the field ``pick_best`` chooses, and
:attr:`Optimisation.score_source` names the file it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sdxl_tui.sources.trials import Pick, Trial, TrialsError, load_trials, pick_best

__all__ = ["CONVERGENCE_FILE", "Optimisation", "convergence", "read_optimisation", "signature"]

CONVERGENCE_FILE = "CONVERGENCE_ALERT.txt"
_ALERT_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Optimisation:
    """What an optimisation folder says now."""

    path: str
    trials: tuple[Trial, ...]
    pick: Pick | None  # None: no trial records a score yet
    best_so_far: tuple[tuple[str, float | None, float], ...]  # (trial, finished_at, best value) when it improved
    convergence_alert: str | None
    state: str  # "converged" | "searching" | "stopped"
    newest: float | None  # newest trial result (unix time)
    problem: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip(os.sep))

    @property
    def best(self) -> Trial | None:
        return self.pick.trial if self.pick is not None else None

    @property
    def score_field(self) -> str | None:
        return self.pick.field if self.pick is not None and self.pick.field else None

    @property
    def score_source(self) -> str | None:
        """The file the best trial's score came from (``result.json``, ``params.json``...)."""
        if self.pick is None or not self.pick.field:
            return None
        return self.pick.trial.sources.get(self.pick.field)

    def score(self, trial: Trial) -> float | None:
        f = self.score_field
        return trial.metrics.get(f) if f else None


def signature(path: str) -> tuple[int, ...]:
    """Changes when a trial folder or the alert appears or changes (cheap: one stat per trial)."""
    sig: list[int] = []
    try:
        with os.scandir(path) as it:
            for e in it:
                if e.name.lower().startswith("trial") or e.name == CONVERGENCE_FILE:
                    sig.append(e.stat(follow_symlinks=False).st_mtime_ns)
    except OSError:
        return ()
    return tuple(sorted(sig))


def _alert(path: str) -> str | None:
    try:
        with open(os.path.join(path, CONVERGENCE_FILE), encoding="utf-8", errors="replace") as f:
            text = f.read(_ALERT_LIMIT).strip()
    except OSError:
        return None
    return text or f"{CONVERGENCE_FILE} (empty)"


def _best_so_far(trials: tuple[Trial, ...], pick: Pick | None) -> tuple[tuple[str, float | None, float], ...]:
    """The best value after each trial that improved it, in the order the trials finished."""
    if pick is None or not pick.field:
        return ()
    scored = [t for t in trials if pick.field in t.metrics]
    scored.sort(key=lambda t: (t.finished_at or 0.0, t.number or 0, t.name))
    out: list[tuple[str, float | None, float]] = []
    best: float | None = None
    for t in scored:
        v = t.metrics[pick.field]
        if best is None or (v < best if pick.minimize else v > best):
            best = v
            out.append((t.name, t.finished_at, v))
    return tuple(out)


def convergence(opt: Optimisation) -> tuple[list[float], list[float]]:
    """The best score after each scored trial, in the order they finished (x: 1, 2, ...)."""
    if opt.pick is None or not opt.pick.field:
        return [], []
    field, minimize = opt.pick.field, opt.pick.minimize
    scored = sorted((t for t in opt.trials if field in t.metrics), key=lambda t: (t.finished_at or 0.0, t.number or 0))
    ys: list[float] = []
    for t in scored:
        v = t.metrics[field]
        ys.append(v if not ys else (min(ys[-1], v) if minimize else max(ys[-1], v)))
    return [float(i + 1) for i in range(len(ys))], ys


def read_optimisation(path: str | os.PathLike[str], *, now: float, idle_after: float = 3600.0) -> Optimisation:
    """Read an optimisation folder (never raises for what it holds)."""
    root = os.path.abspath(os.fspath(path))
    alert = _alert(root)
    try:
        trials = tuple(load_trials(root))
    except TrialsError as exc:
        return Optimisation(root, (), None, (), alert, "converged" if alert else "stopped", None, str(exc))
    try:
        pick: Pick | None = pick_best(trials)
    except TrialsError:
        pick = None
    times = [t.finished_at for t in trials if t.finished_at]
    newest = max(times) if times else None
    if alert:
        state = "converged"
    elif newest is not None and now - newest < idle_after:
        state = "searching"  # a trial finished within the hour: the search is still going
    else:
        state = "stopped"
    return Optimisation(root, trials, pick, _best_so_far(trials, pick), alert, state, newest)
