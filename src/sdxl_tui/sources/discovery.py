"""Which directories are sd-scripts runs: one run, a folder of runs, or neither.

Why: the user's card keeps one subject in one folder (``luca/optimization_overnight``,
``luca/sdxl_v1``, ``luca/sdxl_v2``...). Read as one run, such a folder mixes everything: the
newest ``*.log`` becomes "the" training log (an apt log in ``/tmp``), every event file below
feeds one loss curve, every checkpoint one list. Discovery decides first, from cheap
markers, and each run is then read on its own.

A directory is a **run** when it holds ``training.log``, a TensorBoard run folder
``logs/*/network_train`` (sd-scripts' ``--logging_dir``/``log_prefix+timestamp``/
``network_train``), a launch config or run record of sdxl-tui, or a ``*.safetensors`` whose
metadata has ``ss_*`` keys (sd-scripts' ``train_network.py`` writes them). It is a **trials
folder** (an SD1.5 optimisation) when it holds ``trial*/params.json`` folders or a
``CONVERGENCE_ALERT.txt``. The walk is bounded (depth, directories visited), never follows
symlinks (no loops), skips a run's own sub-folders (``logs``, ``sample``, ``eval_*``,
``*-state``, dot folders) and caches every directory's verdict by its mtime, so a re-walk of
an unchanged tree is a ``stat`` per directory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sdxl_tui.formats.launch_config import DEFAULT_NAME as LAUNCH_FILE_NAME
from sdxl_tui.formats.names import LOG_NAME, SAMPLE_DIR, STATE_SUFFIX
from sdxl_tui.formats.safetensors import peek_metadata
from sdxl_tui.formats.statedir import RECORD_NAME, STATE_DIR

__all__ = [
    "NO_RUN_MESSAGE",
    "Discovery",
    "FoundRun",
    "classify",
    "discover",
    "trial_runs",
]

NO_RUN_MESSAGE = (
    "no sd-scripts run here: expected training.log, logs/*/network_train or *.safetensors with ss_* metadata"
)
TRIALS_ALERT = "CONVERGENCE_ALERT.txt"
_SKIP = {"logs", SAMPLE_DIR, "__pycache__", "node_modules", "site-packages", "proc", "sys", "dev"}
_MAX_SAFETENSORS_PEEKS = 3


@dataclass(frozen=True, slots=True)
class FoundRun:
    """One run (``kind="run"``) or one optimisation folder (``kind="trials"``) and why."""

    path: str
    kind: str
    markers: tuple[str, ...]
    depth: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip(os.sep)) or self.path


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a directory holds.

    ``root`` is the run itself when the directory is one (None otherwise); ``runs`` and
    ``trials`` are the runs and optimisation folders *below* it (never the root).
    """

    path: str
    root: FoundRun | None
    runs: tuple[FoundRun, ...]
    trials: tuple[FoundRun, ...]
    truncated: bool = False

    @property
    def is_run(self) -> bool:
        return self.root is not None and self.root.kind == "run"

    @property
    def is_trials(self) -> bool:
        return self.root is not None and self.root.kind == "trials"

    @property
    def holds_runs(self) -> bool:
        return bool(self.runs or self.trials)

    @property
    def all(self) -> tuple[FoundRun, ...]:
        """The root (when it is a run or trials folder) and everything below, runs first."""
        return ((self.root,) if self.root is not None else ()) + self.runs + self.trials


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: str | None  # "run" | "trials" | None
    markers: tuple[str, ...]
    subdirs: tuple[str, ...]  # names worth descending into


_cache: dict[str, tuple[tuple[int, int, int], _Verdict]] = {}
_lock = threading.Lock()


def _is_network_train(logs: str) -> bool:
    """``logs/<prefix><timestamp>/network_train`` (any tracker name is a folder with events)."""
    try:
        with os.scandir(logs) as it:
            for e in it:
                if not e.is_dir(follow_symlinks=False):
                    continue
                if os.path.isdir(os.path.join(e.path, "network_train")):
                    return True
                if e.name == "network_train":
                    return True
    except OSError:
        return False
    return False


def _has_ss_metadata(path: str) -> bool:
    return any(k.startswith("ss_") for k in peek_metadata(path))


def _scan_dir(path: str) -> _Verdict:
    markers: list[str] = []
    subdirs: list[str] = []
    trial_dirs = 0
    weights: list[tuple[float, str]] = []
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return _Verdict(None, (), ())
    for e in entries:
        name = e.name
        try:
            if e.is_dir(follow_symlinks=False):
                if name == "logs":
                    if _is_network_train(e.path):
                        markers.append("logs/*/network_train")
                elif name == STATE_DIR:
                    if os.path.isfile(os.path.join(e.path, RECORD_NAME)):
                        markers.append(f"{STATE_DIR}/{RECORD_NAME}")
                elif name.lower().startswith("trial") and os.path.isfile(os.path.join(e.path, "params.json")):
                    trial_dirs += 1
                elif not (name.startswith((".", "eval_")) or name in _SKIP or name.endswith(STATE_SUFFIX)):
                    subdirs.append(name)
            elif e.is_file(follow_symlinks=False):
                if name == LOG_NAME:
                    markers.append(LOG_NAME)
                elif name == LAUNCH_FILE_NAME:
                    markers.append(LAUNCH_FILE_NAME)
                elif name == TRIALS_ALERT:
                    markers.append(TRIALS_ALERT)
                elif name.endswith(".safetensors"):
                    weights.append((e.stat().st_mtime, e.path))
        except OSError:
            continue
    run_markers = [m for m in markers if m != TRIALS_ALERT]
    if not run_markers and weights:
        for _, w in sorted(weights, reverse=True)[:_MAX_SAFETENSORS_PEEKS]:
            if _has_ss_metadata(w):
                run_markers.append("*.safetensors with ss_* metadata")
                break
    if trial_dirs or TRIALS_ALERT in markers:
        kind = "trials" if trial_dirs or not run_markers else "run"
        if kind == "trials":
            found = ([f"{trial_dirs} trial*/params.json"] if trial_dirs else []) + (
                [TRIALS_ALERT] if TRIALS_ALERT in markers else [])
            return _Verdict("trials", tuple(found), tuple(sorted(subdirs)))
    if run_markers:
        return _Verdict("run", tuple(run_markers), tuple(sorted(subdirs)))
    return _Verdict(None, (), tuple(sorted(subdirs)))


def classify(path: str) -> _Verdict:
    """The verdict on one directory (cached by its inode and mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return _Verdict(None, (), ())
    key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    with _lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    verdict = _scan_dir(path)
    with _lock:
        _cache[path] = (key, verdict)
    return verdict


def _walk(path: str, depth: int, max_depth: int, budget: list[int]) -> Iterator[FoundRun]:
    if depth > max_depth or budget[0] <= 0:
        return
    for name in classify(path).subdirs:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        child = os.path.join(path, name)
        verdict = classify(child)
        if verdict.kind is not None:
            yield FoundRun(child, verdict.kind, verdict.markers, depth)
            if verdict.kind == "trials":
                continue  # its trial folders are the trials, not runs of their own
        yield from _walk(child, depth + 1, max_depth, budget)


def discover(path: str | os.PathLike[str], *, max_depth: int = 3, max_dirs: int = 2000) -> Discovery:
    """What ``path`` holds: itself as a run (or trials folder) and the runs below it.

    ``max_depth`` levels below ``path`` are searched (1: its children); at most ``max_dirs``
    directories are looked at (``truncated`` says when the walk stopped early).
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(path)))
    verdict = classify(root)
    top = FoundRun(root, verdict.kind, verdict.markers, 0) if verdict.kind is not None else None
    budget = [max_dirs]
    below: list[FoundRun] = []
    if verdict.kind != "trials":
        below = list(_walk(root, 1, max_depth, budget))
    runs = tuple(sorted((r for r in below if r.kind == "run"), key=lambda r: r.path))
    trials = tuple(sorted((r for r in below if r.kind == "trials"), key=lambda r: r.path))
    return Discovery(root, top, runs, trials, truncated=budget[0] <= 0)


def trial_runs(folder: str) -> list[str]:
    """The trial folders of an optimisation folder that are runs themselves (their own
    ``training.log`` or ``logs/``), sorted by name."""
    try:
        names = sorted(e.name for e in os.scandir(folder)
                       if e.is_dir(follow_symlinks=False) and e.name.lower().startswith("trial"))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if classify(os.path.join(folder, n)).kind == "run"]
