"""SD1.5 best trial -> a checked SDXL launch: the card's migration rules as code.

Why: the card's "take the best trial's parameters, move them to SDXL with these rules,
launch" is done by hand today, and its own command line shows how that goes wrong (REF §6).
:func:`make_plan` applies the rules and records each one as a row of a table
(SD1.5 value -> SDXL value, rule); :func:`write_plan` writes the three files a run needs:
the sd-scripts ``--config_file`` TOML (keys are argparse dest names), the SDXL dataset TOML
and sdxl-tui's launch config (``sdxl-tui.toml``, the shape in docs/architecture.md).

Trial files recognised (an "optimisation directory" holds ``trial_*`` folders):

* parameters: ``params.json`` (also ``{"params": {...}}``, Optuna-style), ``trial.json``
  with a ``params`` table; keys such as ``learning_rate``/``lr``, ``network_dim``/``dim``,
  ``network_alpha``/``alpha``, ``optimizer_type``/``optimizer``, ``lr_scheduler``/``scheduler``,
  ``gradient_accumulation_steps``/``grad_accum``, ``max_train_epochs``/``epochs``,
  ``train_batch_size``/``batch_size`` (a ``BEST_``/``best_`` prefix is ignored).
* results: numeric fields of ``result.json``, ``results.json``, ``metrics.json``,
  ``score.json``, ``trial.json`` (top level or under ``metrics``/``values``), numeric
  non-parameter fields of ``params.json``, and ``score.txt``/``loss.txt`` (one number).
  A trial whose result says ``"state": "FAIL"`` (or ``failed``/``pruned``) is skipped.
* best: by ``score``, ``objective``, ``value``, then ``final_loss``, ``loss``… (the first
  field every scored trial has); fields named ``*loss*`` are minimised, others maximised.
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

from sdxl_tui.formats import toml
from sdxl_tui.formats.dataset import load_dataset_file
from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
from sdxl_tui.formats.optiontable import SDXL_SCRIPT, load_packaged_table
from sdxl_tui.planning.dataset import folder_dataset

RESULT_FILES = ("result.json", "results.json", "metrics.json", "score.json", "trial.json")
TEXT_RESULTS = {"score.txt": "score", "loss.txt": "loss"}
FIELD_PREFERENCE = ("score", "objective", "value", "final_loss", "loss", "avr_loss", "val_loss", "best_loss")
TE_LR_FACTOR = 0.67
SDXL_RESOLUTION = 1024
BIG_VRAM_GB = 16.0

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


class PlanError(ValueError):
    """The inputs cannot make a plan; the message says what to give instead."""


@dataclass(frozen=True)
class Trial:
    """One SD1.5 optimisation trial: its parameters (by sd-scripts dest) and recorded results."""

    name: str
    path: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    number: int | None = None
    raw_params: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True)
class PlanRow:
    """One line of the rules table."""

    item: str
    sd15: str
    sdxl: str
    rule: str


@dataclass(frozen=True)
class Plan:
    """Everything the three files hold, plus the rules table."""

    trial: Trial
    output_dir: str
    output_name: str
    config: Mapping[str, Mapping[str, Any]]  # section -> dest -> value (sd-scripts flattens sections)
    dataset: Mapping[str, Any]
    launch: Mapping[str, Any]
    rows: tuple[PlanRow, ...]
    notes: tuple[str, ...] = ()

    def flat_config(self) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for section in self.config.values():
            flat.update(section)
        return flat


# ------------------------------------------------------------------ loading trials


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


def load_trial(directory: str | os.PathLike[str]) -> Trial | None:
    """Read one trial folder (or a ``params.json`` path); None when it holds no parameters."""
    path = Path(directory)
    if path.is_file():
        path = path.parent
    raw: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    failed = False
    p = _read_json(path / "params.json")
    if isinstance(p, Mapping):
        if isinstance(p.get("params"), Mapping):
            raw = dict(p["params"])
            metrics.update(_metrics_from({k: v for k, v in p.items() if k != "params"}, set()))
        else:
            raw = dict(p)
    for name in RESULT_FILES:
        obj = _read_json(path / name)
        if not isinstance(obj, Mapping):
            continue
        if not raw and isinstance(obj.get("params"), Mapping):
            raw = dict(obj["params"])
        state = str(obj.get("state", obj.get("status", ""))).lower()
        if state.startswith("trialstate."):
            state = state.split(".", 1)[1]
        if state in _FAILED_STATES:
            failed = True
        metrics.update(_metrics_from({k: v for k, v in obj.items() if k != "params"}, {"number", "trial", "trial_id"}))
    for name, key in TEXT_RESULTS.items():
        try:
            text = (path / name).read_text("utf-8", errors="replace").strip().split()
        except OSError:
            continue
        num = _numeric(text[0]) if text else None
        if num is not None:
            metrics.setdefault(key, num)
    if not raw:
        return None
    params = normalise_params(raw)
    # numeric fields in params.json that are results, not parameters
    for key in list(params):
        if key in FIELD_PREFERENCE or "loss" in key or key in ("score", "objective"):
            num = _numeric(params.pop(key))
            if num is not None:
                metrics.setdefault(key, num)
    m = re.search(r"(\d+)$", path.name)
    trial = Trial(name=path.name, path=str(path), params=params, metrics=metrics,
                  number=int(m.group(1)) if m else None, raw_params=raw)
    if failed:
        return Trial(trial.name, trial.path, trial.params, {}, trial.number, trial.raw_params)
    return trial


def load_trials(path: str | os.PathLike[str]) -> list[Trial]:
    """Trials from a ``params.json``, a trial folder, or an optimisation folder of ``trial_*``.

    Raises:
        PlanError: nothing with parameters was found.
    """
    p = Path(path)
    if not p.exists():
        raise PlanError(f"{p} does not exist")
    if p.is_file() or (p / "params.json").is_file():
        t = load_trial(p)
        if t is None:
            raise PlanError(f"{p}: no parameters found (expected params.json)")
        return [t]
    trials = []
    for child in sorted(p.iterdir()):
        if child.is_dir() and child.name.lower().startswith("trial"):
            t = load_trial(child)
            if t is not None:
                trials.append(t)
    if not trials:
        raise PlanError(f"{p}: no trial_* folders with a params.json")
    return trials


def load_optuna_trials(storage: str, study_name: str) -> tuple[list[Trial], bool]:
    """Completed trials of an Optuna study, and whether it minimises.

    Raises:
        PlanError: optuna is not installed, or the study has no completed trial.
    """
    try:
        import optuna  # type: ignore[import-not-found]
    except ImportError as exc:
        raise PlanError(
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
        raise PlanError(f"study {study_name!r} has no completed trial")
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
        raise PlanError("no trial records a score or loss (result.json, metrics.json, score.txt …)")
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
        raise PlanError(f"no trial records `{field}`; fields found: {', '.join(have)}")
    if minimize is None:
        minimize = "loss" in field.lower() or field.lower() in ("error", "fid")
    ranked = sorted(with_field, key=lambda t: t.metrics[field], reverse=not minimize)
    skipped += tuple(t.name for t in scored if field not in t.metrics)
    return Pick(ranked[0], field, minimize, tuple(ranked), skipped)


# ------------------------------------------------------------------ the rules


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _round_sig(x: float, digits: int = 6) -> float:
    if x == 0:
        return 0.0
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _load_dataset_source(dataset: str | os.PathLike[str]) -> tuple[dict[str, Any], Path | None]:
    p = Path(dataset)
    if p.is_dir():
        return folder_dataset(p), None
    if not p.is_file():
        raise PlanError(f"dataset {p} does not exist (give the SD1.5 dataset TOML or the image folder)")
    try:
        data = load_dataset_file(p)
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read the dataset {p}: {exc}") from exc
    return data, p


def make_plan(
    trial: Trial,
    *,
    dataset: str | os.PathLike[str],
    base_model: str,
    output_dir: str,
    output_name: str,
    vram_gb: float,
    xformers_available: bool | None,
    sd_scripts_dir: str | None = None,
    prefix: Sequence[str] = ("python",),
    pick: Pick | None = None,
) -> Plan:
    """Apply the card's SD1.5 -> SDXL rules to ``trial``.

    Raises:
        PlanError: a required parameter is missing from the trial, or the dataset is unreadable.
    """
    params = dict(trial.params)
    rows: list[PlanRow] = []
    notes: list[str] = []
    table = load_packaged_table(SDXL_SCRIPT)

    def row(item: str, sd15: Any, sdxl: Any, rule: str) -> None:
        rows.append(PlanRow(item, _fmt(sd15), _fmt(sdxl), rule))

    lr = params.get("unet_lr") or params.get("learning_rate")
    if lr is None:
        raise PlanError(f"{trial.name}: no learning rate among its parameters ({', '.join(params) or 'none'})")
    lr = float(lr)
    out = str(Path(output_dir).expanduser().resolve())
    handled: set[str] = set()

    model: dict[str, Any] = {"pretrained_model_name_or_path": str(base_model)}
    row("script", "train_network.py", SDXL_SCRIPT, "SDXL needs its own trainer (train_network.py builds an SD1.x model)")
    row("pretrained_model_name_or_path", params.get("pretrained_model_name_or_path"), base_model, "the SDXL base checkpoint")
    handled.add("pretrained_model_name_or_path")

    network: dict[str, Any] = {"network_module": "networks.lora"}
    dim = int(params.get("network_dim") or 0) or None
    alpha = params.get("network_alpha")
    if dim is None:
        raise PlanError(f"{trial.name}: no network_dim among its parameters")
    network["network_dim"] = dim
    row("network_dim", dim, dim, "kept")
    if alpha is not None:
        network["network_alpha"] = float(alpha) if not float(alpha).is_integer() else int(float(alpha))
        row("network_alpha", alpha, network["network_alpha"], "kept")
    handled.update({"network_dim", "network_alpha", "network_module"})

    optimizer: dict[str, Any] = {}
    optimizer["unet_lr"] = lr
    row("learning_rate -> unet_lr", lr, lr, "learning rate kept, as unet_lr")
    te_lr = _round_sig(lr * TE_LR_FACTOR)
    optimizer["text_encoder_lr"] = [te_lr]
    row("text_encoder_lr", params.get("text_encoder_lr"), te_lr,
        f"learning rate x {TE_LR_FACTOR} (one value for both SDXL text encoders)")
    handled.update({"learning_rate", "unet_lr", "text_encoder_lr"})
    for dest in ("optimizer_type", "lr_scheduler", "lr_scheduler_num_cycles", "lr_warmup_steps"):
        if params.get(dest) is not None:
            optimizer[dest] = params[dest]
            row(dest, params[dest], params[dest], "kept")
            handled.add(dest)

    training: dict[str, Any] = {}
    epochs = params.get("max_train_epochs")
    if epochs is not None:
        training["max_train_epochs"] = int(epochs)
        row("max_train_epochs", epochs, int(epochs), "kept")
    handled.add("max_train_epochs")

    sd15_bs = params.get("train_batch_size")
    sd15_accum = int(params.get("gradient_accumulation_steps") or 1)
    if vram_gb >= BIG_VRAM_GB:
        batch, accum = 4, sd15_accum
        vram_rule = f"VRAM {vram_gb:g} GB >= {BIG_VRAM_GB:g} GB: batch 4, accumulation kept"
    else:
        batch, accum = 2, 4
        vram_rule = f"VRAM {vram_gb:g} GB < {BIG_VRAM_GB:g} GB: batch 2 with gradient accumulation 4"
    training["gradient_accumulation_steps"] = accum
    row("batch_size (dataset TOML)", sd15_bs, batch, vram_rule)
    row("gradient_accumulation_steps", params.get("gradient_accumulation_steps"), accum,
        "kept" if accum == sd15_accum else vram_rule)
    sd15_eff = int(sd15_bs) * sd15_accum if isinstance(sd15_bs, (int, float)) else None
    row("effective batch (batch x accumulation)", sd15_eff, batch * accum,
        "for reference: a smaller effective batch may want a lower learning rate" if sd15_eff and sd15_eff != batch * accum
        else "for reference")
    handled.update({"train_batch_size", "gradient_accumulation_steps"})

    training["max_token_length"] = 225
    row("max_token_length", params.get("max_token_length"), 225, "SDXL: 225 tokens")
    training["gradient_checkpointing"] = True
    row("gradient_checkpointing", params.get("gradient_checkpointing"), True, "required for SDXL memory")
    if xformers_available:
        training["xformers"] = True
        row("attention", "xformers" if params.get("xformers") else params.get("sdpa") and "sdpa",
            "xformers", "xformers is importable in the target environment")
    else:
        training["sdpa"] = True
        why = ("xformers is not importable in the target environment" if xformers_available is False
               else "xformers could not be confirmed in the target environment")
        row("attention", "xformers" if params.get("xformers") else None, "sdpa", f"{why}: sdpa (built into torch)")
    handled.update({"max_token_length", "gradient_checkpointing", "xformers", "sdpa", "mem_eff_attn"})
    mp = str(params.get("mixed_precision") or "fp16")
    if mp not in ("fp16", "bf16"):
        mp = "fp16"
    training["mixed_precision"] = mp
    row("mixed_precision", params.get("mixed_precision"), mp, "kept (fp16 unless the trial used bf16)")
    if mp == "fp16":
        training["no_half_vae"] = True
        row("no_half_vae", params.get("no_half_vae"), True, "fp16: keep the SDXL VAE in fp32 (fp16 VAE can give NaN latents)")
    training["cache_latents_to_disk"] = True  # implies cache_latents
    row("cache_latents_to_disk", params.get("cache_latents"), True, "cached latents (saves VRAM and time)")
    seed_raw = params.get("seed")
    seed = int(seed_raw) if seed_raw is not None else 42
    training["seed"] = seed
    row("seed", params.get("seed"), seed, "kept" if params.get("seed") is not None else "fixed seed 42")
    handled.update({"mixed_precision", "no_half_vae", "cache_latents", "cache_latents_to_disk", "seed"})
    if params.get("clip_skip") is not None:
        row("clip_skip", params["clip_skip"], None, "dropped: SDXL ignores clip_skip")
    handled.add("clip_skip")

    saving: dict[str, Any] = {
        "output_dir": out,
        "output_name": output_name,
        "save_every_n_epochs": 2,
        "save_precision": "fp16",
    }
    row("save_every_n_epochs", params.get("save_every_n_epochs"), 2, "a checkpoint every 2 epochs")
    row("save_precision", params.get("save_precision"), "fp16", "fp16 files")
    handled.update({"output_dir", "output_name", "save_every_n_epochs", "save_precision", "save_model_as"})
    logging: dict[str, Any] = {"log_with": "tensorboard", "logging_dir": str(Path(out) / "logs")}
    row("log_with", params.get("log_with"), "tensorboard", f"TensorBoard under {logging['logging_dir']}")
    handled.update({"log_with", "logging_dir"})

    # anything else the trial tuned that is a real option is carried over as-is
    extra: dict[str, Any] = {}
    for key in sorted(params):
        if key in handled or key == "resolution":
            continue
        spec = table.by_dest(key)
        if spec is None:
            row(key, params[key], None, "dropped: not an sd-scripts option")
            continue
        extra[key] = params[key]
        row(key, params[key], params[key], "carried over as-is")

    # dataset
    source, source_path = _load_dataset_source(dataset)
    ds = _sdxl_dataset(source, source_path, batch, sd_scripts_dir)
    sd15_res = params.get("resolution")
    if sd15_res is None:
        for d in source.get("datasets", []) if isinstance(source.get("datasets"), list) else []:
            if isinstance(d, Mapping) and d.get("resolution") is not None:
                sd15_res = d["resolution"]
                break
        else:
            sd15_res = (source.get("general") or {}).get("resolution") if isinstance(source.get("general"), Mapping) else None
    row("resolution (dataset TOML)", sd15_res, SDXL_RESOLUTION, "SDXL trains at 1024x1024")
    sd15_steps = None
    for level in [source.get("general") or {}, *(source.get("datasets") or [])]:
        if isinstance(level, Mapping) and level.get("bucket_reso_steps") is not None:
            sd15_steps = level["bucket_reso_steps"]
    row("enable_bucket / bucket_reso_steps", sd15_steps, "true / 64",
        "bucketing on; SDXL needs bucket_reso_steps to be a multiple of 32")
    row("min/max_bucket_reso", None, "512 / 2048", "buckets around 1024")
    dataset_path = str(Path(out) / f"{output_name}_dataset.toml")
    dataset_section: dict[str, Any] = {"dataset_config": dataset_path}

    config = {
        "model": model,
        "network": network,
        "optimizer": optimizer,
        "training": {**training, **extra},
        "saving": saving,
        "logging": logging,
        "dataset": dataset_section,
    }
    launch = {
        "launch": {
            "prefix": list(prefix),
            **({"sd_scripts_dir": str(sd_scripts_dir)} if sd_scripts_dir else {}),
            "script": SDXL_SCRIPT,
            "config_file": str(Path(out) / f"{output_name}.toml"),
            "output_dir": out,
            "env": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
        },
        "args": {},
    }
    if pick is not None:
        notes.append(pick.describe())
        if pick.skipped:
            notes.append(f"skipped (no usable result): {', '.join(pick.skipped)}")
    return Plan(trial=trial, output_dir=out, output_name=output_name, config=config, dataset=ds,
                launch=launch, rows=tuple(rows), notes=tuple(notes))


def _sdxl_dataset(
    source: Mapping[str, Any], source_path: Path | None, batch: int, sd_scripts_dir: str | None = None
) -> dict[str, Any]:
    """The SD1.5 dataset rewritten for SDXL: 1024, bucketing, batch size; subsets kept.

    Relative image folders are made absolute when they exist beside the SD1.5 TOML or in the
    sd-scripts checkout (where the SD1.5 run resolved them), so the new files work from anywhere.
    """
    bases = [b for b in (source_path.parent if source_path else None, Path(sd_scripts_dir) if sd_scripts_dir else None)
             if b is not None]
    general = dict(source.get("general") or {}) if isinstance(source.get("general"), Mapping) else {}
    for key in ("resolution", "batch_size", "enable_bucket", "bucket_reso_steps", "min_bucket_reso", "max_bucket_reso"):
        general.pop(key, None)
    datasets: list[dict[str, Any]] = []
    raw_datasets = source.get("datasets") if isinstance(source.get("datasets"), list) else []
    for d in raw_datasets or []:
        if not isinstance(d, Mapping):
            continue
        nd = {k: v for k, v in d.items() if k != "subsets"}
        nd.update(resolution=SDXL_RESOLUTION, batch_size=batch, enable_bucket=True, bucket_reso_steps=64,
                  min_bucket_reso=512, max_bucket_reso=2048)
        subsets = []
        for s in d.get("subsets") or []:
            if not isinstance(s, Mapping):
                continue
            ns = dict(s)
            img = ns.get("image_dir")
            if isinstance(img, str) and not os.path.isabs(os.path.expanduser(img)):
                for b in bases:
                    cand = (b / img).resolve()
                    if cand.is_dir():
                        ns["image_dir"] = str(cand)
                        break
            subsets.append(ns)
        nd["subsets"] = subsets
        datasets.append(nd)
    out: dict[str, Any] = {}
    if general:
        out["general"] = general
    out["datasets"] = datasets
    return out


# ------------------------------------------------------------------ writing


def write_plan(plan: Plan, out_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write ``<output_name>.toml``, ``<output_name>_dataset.toml`` and ``sdxl-tui.toml``.

    They go to ``out_dir`` (default: the plan's output directory, which is where the launch
    config and dataset paths inside them point; another folder gets its own copies of the
    paths rewritten to it).
    """
    target = Path(out_dir).expanduser().resolve() if out_dir is not None else Path(plan.output_dir)
    target.mkdir(parents=True, exist_ok=True)
    config_path = target / f"{plan.output_name}.toml"
    dataset_path = target / f"{plan.output_name}_dataset.toml"
    launch_path = target / "sdxl-tui.toml"
    config = {k: dict(v) for k, v in plan.config.items()}
    config["dataset"]["dataset_config"] = str(dataset_path)
    head = f"written by `sdxl-tui plan` from {plan.trial.name} ({plan.trial.path})"
    config_path.write_text(
        toml.dumps(config, header=head + "\nsd-scripts --config_file: keys are argparse dest names; tables are only grouping"),
        "utf-8",
    )
    dataset_path.write_text(toml.dumps(plan.dataset, header=head + "\nSDXL dataset config (--dataset_config)"), "utf-8")
    spec = plan.launch["launch"]
    cfg = LaunchConfig(
        prefix=tuple(spec["prefix"]),
        output_dir=str(spec["output_dir"]),
        sd_scripts_dir=spec.get("sd_scripts_dir"),
        script=str(spec.get("script", SDXL_SCRIPT)),
        config_file=str(config_path),
        args=dict(plan.launch.get("args") or {}),
        env=dict(spec.get("env") or {}),
    )
    write_launch_config(cfg, launch_path, comment=head + "\nsdxl-tui launch config: `sdxl-tui check` / `sdxl-tui start`")
    return {"config": config_path, "dataset": dataset_path, "launch": launch_path}


def format_rows(rows: Sequence[PlanRow]) -> str:
    """The rules table as aligned text: item | SD1.5 value -> SDXL value | rule."""
    w_item = max([len("setting")] + [len(r.item) for r in rows])
    w_a = max([len("SD1.5")] + [len(r.sd15) for r in rows])
    w_b = max([len("SDXL")] + [len(r.sdxl) for r in rows])
    out = [f"{'setting':<{w_item}}  {'SD1.5':<{w_a}}    {'SDXL':<{w_b}}  rule"]
    out.append("-" * (w_item + w_a + w_b + 14))
    for r in rows:
        out.append(f"{r.item:<{w_item}}  {r.sd15:<{w_a}} -> {r.sdxl:<{w_b}}  {r.rule}")
    return "\n".join(out)
