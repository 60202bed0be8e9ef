"""SD1.5 optimisation trials: loading them (folders or an Optuna study) and picking the best.

Why its own module (the one home of trial reading; ``planning.trials`` re-exports it): the
planner needs one trial's parameters by sd-scripts dest, the runs view and ``status ROOT``
need the trials table and its best-so-far; finding them means reading the many shapes
optimisation scripts leave behind (``params.json``, ``trial.json``, ``result.json``,
``score.txt``...) and choosing by the score they all record. Where each metric came from is
kept (``Trial.sources``: the file that recorded it).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_FILES = ("result.json", "results.json", "metrics.json", "score.json", "trial.json")


TEXT_RESULTS = {"score.txt": "score", "loss.txt": "loss"}


FIELD_PREFERENCE = ("score", "objective", "value", "final_loss", "loss", "avr_loss", "val_loss", "best_loss")


#: alias (lower case, "best_" stripped) -> sd-scripts dest
PARAM_ALIASES: Mapping[str, str] = {
    "lr": "learning_rate",
    "learning_rate": "learning_rate",
    "unet_lr": "unet_lr",
    "text_encoder_lr": "text_encoder_lr",
    "dim": "network_dim",
    "rank": "network_dim",
    "network_dim": "network_dim",
    "alpha": "network_alpha",
    "network_alpha": "network_alpha",
    "optimizer": "optimizer_type",
    "optimizer_type": "optimizer_type",
    "optim": "optimizer_type",
    "scheduler": "lr_scheduler",
    "lr_scheduler": "lr_scheduler",
    "grad_accum": "gradient_accumulation_steps",
    "gradient_accumulation": "gradient_accumulation_steps",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "accum": "gradient_accumulation_steps",
    "epochs": "max_train_epochs",
    "max_train_epochs": "max_train_epochs",
    "batch_size": "train_batch_size",
    "train_batch_size": "train_batch_size",
    "num_cycles": "lr_scheduler_num_cycles",
    "lr_scheduler_num_cycles": "lr_scheduler_num_cycles",
    "warmup_steps": "lr_warmup_steps",
    "lr_warmup_steps": "lr_warmup_steps",
    "seed": "seed",
    "clip_skip": "clip_skip",
    "resolution": "resolution",
    "mixed_precision": "mixed_precision",
}


_FAILED_STATES = {"fail", "failed", "pruned", "error", "running"}


class TrialsError(ValueError):
    """No trials (or no score) where asked; the message says what to give instead."""


PlanError = TrialsError  # the planner's name for it (``planning.trials``)


@dataclass(frozen=True)
class Trial:
    """One SD1.5 optimisation trial: its parameters (by sd-scripts dest) and recorded results."""

    name: str
    path: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    number: int | None = None
    raw_params: Mapping[str, Any] = field(default_factory=dict)
    #: metric -> the file that recorded it (``result.json``, ``params.json``, ``score.txt``...)
    sources: Mapping[str, str] = field(default_factory=dict)
    #: "complete" (a result recorded), "failed" (its result says so), "no result" (none yet)
    state: str = "complete"
    checkpoint: str | None = None  # the trial's newest ``*.safetensors``
    finished_at: float | None = None  # mtime of its result file (when the score appeared)


@dataclass(frozen=True)
class Pick:
    """The chosen trial and how it was chosen."""

    trial: Trial
    field: str
    minimize: bool
    ranked: tuple[Trial, ...]
    skipped: tuple[str, ...] = ()

    @property
    def value(self) -> float | None:
        return self.trial.metrics.get(self.field)

    def describe(self) -> str:
        if not self.field:
            return f"the only trial: {self.trial.name} (no score needed)"
        how = "lowest" if self.minimize else "highest"
        text = f"best trial: {self.trial.name} ({how} `{self.field}` = {self.value:g} of {len(self.ranked)} trials)"
        if len(self.ranked) > 1:
            runner = self.ranked[1]
            text += f"; next: {runner.name} ({runner.metrics[self.field]:g})"
        others = sorted({k for t in self.ranked for k in t.metrics} - {self.field})
        if others:
            text += f"; other fields: {', '.join(others)} (choose with --metric)"
        return text


def _norm_key(key: str) -> str:
    k = key.strip().lower().replace("-", "_")
    k = re.sub(r"^best_", "", k)
    return k


def normalise_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Map a trial's parameter names onto sd-scripts dest names (unknown names kept as-is)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = _norm_key(key)
        out[PARAM_ALIASES.get(k, k)] = value
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


def _metrics_from(obj: Mapping[str, Any], skip: set[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, value in obj.items():
        if key in skip:
            continue
        if isinstance(value, Mapping) and key in ("metrics", "values", "result", "results"):
            found.update(_metrics_from(value, skip))
            continue
        num = _numeric(value)
        if num is not None and not isinstance(value, str):
            found[key] = num
    return found


def _result_files(path: Path, raw: dict[str, Any], metrics: dict[str, float],
                  sources: dict[str, str]) -> tuple[bool, float | None]:
    """Fold the result files into ``raw``/``metrics``; (failed, newest result mtime)."""
    failed = False
    newest: float | None = None
    for name in RESULT_FILES:
        obj = _read_json(path / name)
        if not isinstance(obj, Mapping):
            continue
        newest = max(newest or 0.0, _mtime(path / name) or 0.0)
        if not raw and isinstance(obj.get("params"), Mapping):
            raw.update(obj["params"])
        state = str(obj.get("state", obj.get("status", ""))).lower()
        if state.startswith("trialstate."):
            state = state.split(".", 1)[1]
        if state in _FAILED_STATES:
            failed = True
        found = _metrics_from({k: v for k, v in obj.items() if k != "params"}, {"number", "trial", "trial_id"})
        metrics.update(found)
        sources.update(dict.fromkeys(found, name))
    for name, key in TEXT_RESULTS.items():
        try:
            text = (path / name).read_text("utf-8", errors="replace").strip().split()
        except OSError:
            continue
        num = _numeric(text[0]) if text else None
        if num is not None and key not in metrics:
            metrics[key] = num
            sources[key] = name
            newest = max(newest or 0.0, _mtime(path / name) or 0.0)
    return failed, newest


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _checkpoint(path: Path) -> str | None:
    try:
        found = [(e.stat().st_mtime, e.path) for e in os.scandir(path)
                 if e.name.endswith(".safetensors") and e.is_file()]
    except OSError:
        return None
    return max(found)[1] if found else None


def load_trial(directory: str | os.PathLike[str]) -> Trial | None:
    """Read one trial folder (or a ``params.json`` path); None when it holds no parameters."""
    path = Path(directory)
    if path.is_file():
        path = path.parent
    raw: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    sources: dict[str, str] = {}
    p = _read_json(path / "params.json")
    if isinstance(p, Mapping):
        if isinstance(p.get("params"), Mapping):
            raw = dict(p["params"])
            found = _metrics_from({k: v for k, v in p.items() if k != "params"}, set())
            metrics.update(found)
            sources.update(dict.fromkeys(found, "params.json"))
        else:
            raw = dict(p)
    failed, finished = _result_files(path, raw, metrics, sources)
    if not raw:
        return None
    params = normalise_params(raw)
    # numeric fields in params.json that are results, not parameters
    for key in list(params):
        if key in FIELD_PREFERENCE or "loss" in key or key in ("score", "objective"):
            num = _numeric(params.pop(key))
            if num is not None and key not in metrics:
                metrics[key] = num
                sources[key] = "params.json"
    m = re.search(r"(\d+)$", path.name)
    state = "failed" if failed else ("complete" if metrics else "no result")
    return Trial(name=path.name, path=str(path), params=params, metrics={} if failed else metrics,
                 number=int(m.group(1)) if m else None, raw_params=raw, sources={} if failed else sources,
                 state=state, checkpoint=_checkpoint(path), finished_at=finished)


def load_trials(path: str | os.PathLike[str]) -> list[Trial]:
    """Trials from a ``params.json``, a trial folder, or an optimisation folder of ``trial_*``.

    Raises:
        PlanError: nothing with parameters was found.
    """
    p = Path(path)
    if not p.exists():
        raise TrialsError(f"{p} does not exist")
    if p.is_file() or (p / "params.json").is_file():
        t = load_trial(p)
        if t is None:
            raise TrialsError(f"{p}: no parameters found (expected params.json)")
        return [t]
    trials = []
    for child in sorted(p.iterdir()):
        if child.is_dir() and child.name.lower().startswith("trial"):
            t = load_trial(child)
            if t is not None:
                trials.append(t)
    if not trials:
        raise TrialsError(f"{p}: no trial_* folders with a params.json")
    return trials


def load_optuna_trials(storage: str, study_name: str) -> tuple[list[Trial], bool]:
    """Completed trials of an Optuna study, and whether it minimises.

    Raises:
        PlanError: optuna is not installed, or the study has no completed trial.
    """
    try:
        import optuna  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TrialsError(
            "optuna is not installed in sdxl-tui's environment; install it (pip install optuna) "
            "or point --from at the trial folders"
        ) from exc
    study = optuna.load_study(study_name=study_name, storage=storage)
    minimize = str(study.direction).lower().endswith("minimize")
    trials = []
    for ft in study.trials:
        if str(ft.state).lower().endswith("complete") and ft.value is not None:
            trials.append(
                Trial(name=f"trial_{ft.number:04d}", path=f"{storage}#{study_name}", params=normalise_params(ft.params),
                      metrics={"value": float(ft.value)}, number=ft.number, raw_params=dict(ft.params))
            )
    if not trials:
        raise TrialsError(f"study {study_name!r} has no completed trial")
    return trials, minimize


def pick_best(trials: Sequence[Trial], field: str | None = None, *, minimize: bool | None = None) -> Pick:
    """The best trial by ``field`` (default: the first of FIELD_PREFERENCE they record).

    Raises:
        PlanError: no trial records the field (or any score at all).
    """
    scored = [t for t in trials if t.metrics]
    skipped = tuple(t.name for t in trials if not t.metrics)
    if len(trials) == 1 and field is None:
        only = trials[0]
        if not only.metrics:
            return Pick(only, "", False, (only,))
    if not scored:
        raise TrialsError("no trial records a score or loss (result.json, metrics.json, score.txt …)")
    if field is None:
        counts: dict[str, int] = {}
        for t in scored:
            for k in t.metrics:
                counts[k] = counts.get(k, 0) + 1
        best_cover = max(counts.values())
        candidates = [k for k in FIELD_PREFERENCE if counts.get(k) == best_cover]
        field = candidates[0] if candidates else min(k for k, c in counts.items() if c == best_cover)
    with_field = [t for t in scored if field in t.metrics]
    if not with_field:
        have = sorted({k for t in scored for k in t.metrics})
        raise TrialsError(f"no trial records `{field}`; fields found: {', '.join(have)}")
    if minimize is None:
        minimize = "loss" in field.lower() or field.lower() in ("error", "fid")
    ranked = sorted(with_field, key=lambda t: t.metrics[field], reverse=not minimize)
    skipped += tuple(t.name for t in scored if field not in t.metrics)
    return Pick(ranked[0], field, minimize, tuple(ranked), skipped)
