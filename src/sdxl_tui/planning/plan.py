"""SD1.5 best trial -> a checked SDXL launch: the card's migration rules as code.

Why: the card's "take the best trial's parameters, move them to SDXL with these rules,
launch" is done by hand today, and its own command line shows how that goes wrong.
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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.dataset import folder_dataset, load_dataset_file
from sdxl_tui.formats.launch_config import DEFAULT_NAME, LaunchConfig, write_launch_config
from sdxl_tui.formats.optiontable import SDXL_SCRIPT, load_packaged_table
from sdxl_tui.planning.trials import Pick, PlanError, Trial

TE_LR_FACTOR = 0.67
SDXL_RESOLUTION = 1024
BIG_VRAM_GB = 16.0


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
    rules = _Rules(trial)
    lr = rules.learning_rate()
    out = str(Path(output_dir).expanduser().resolve())
    model = rules.model(base_model)
    network = rules.network()
    optimizer = rules.optimizer(lr)
    training, batch = rules.batch(vram_gb)
    rules.sdxl_memory(training, xformers_available)
    rules.precision_and_seed(training)
    saving = rules.saving(out, output_name)
    logging = rules.logging(out)
    extra = rules.carried_over()
    source, source_path = _load_dataset_source(dataset)
    ds = _sdxl_dataset(source, source_path, batch, sd_scripts_dir)
    rules.dataset_rows(source)
    config = {
        "model": model,
        "network": network,
        "optimizer": optimizer,
        "training": {**training, **extra},
        "saving": saving,
        "logging": logging,
        "dataset": {"dataset_config": str(Path(out) / f"{output_name}_dataset.toml")},
    }
    launch = _launch_table(prefix, sd_scripts_dir, out, output_name)
    return Plan(
        trial=trial,
        output_dir=out,
        output_name=output_name,
        config=config,
        dataset=ds,
        launch=launch,
        rows=tuple(rules.rows),
        notes=_notes(pick),
    )


def _launch_table(
    prefix: Sequence[str], sd_scripts_dir: str | None, out: str, output_name: str
) -> dict[str, Any]:
    """sdxl-tui's launch config for the plan (``[launch]`` and an empty ``[args]``)."""
    return {
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


def _notes(pick: Pick | None) -> tuple[str, ...]:
    """How the trial was picked, and the trials skipped for want of a result."""
    if pick is None:
        return ()
    notes = [pick.describe()]
    if pick.skipped:
        notes.append(f"skipped (no usable result): {', '.join(pick.skipped)}")
    return tuple(notes)


class _Rules:
    """The card's rules, one group at a time; each records its rows and the params it handled."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.params = dict(trial.params)
        self.rows: list[PlanRow] = []
        self.handled: set[str] = set()

    def row(self, item: str, sd15: Any, sdxl: Any, rule: str) -> None:
        self.rows.append(PlanRow(item, _fmt(sd15), _fmt(sdxl), rule))

    def learning_rate(self) -> float:
        params = self.params
        lr = params.get("unet_lr") or params.get("learning_rate")
        if lr is None:
            raise PlanError(f"{self.trial.name}: no learning rate among its parameters ({', '.join(params) or 'none'})")
        return float(lr)

    def model(self, base_model: str) -> dict[str, Any]:
        self.row("script", "train_network.py", SDXL_SCRIPT,
                 "SDXL needs its own trainer (train_network.py builds an SD1.x model)")
        self.row(
            "pretrained_model_name_or_path",
            self.params.get("pretrained_model_name_or_path"),
            base_model,
            "the SDXL base checkpoint",
        )
        self.handled.add("pretrained_model_name_or_path")
        return {"pretrained_model_name_or_path": str(base_model)}

    def network(self) -> dict[str, Any]:
        params = self.params
        network: dict[str, Any] = {"network_module": "networks.lora"}
        dim = int(params.get("network_dim") or 0) or None
        alpha = params.get("network_alpha")
        if dim is None:
            raise PlanError(f"{self.trial.name}: no network_dim among its parameters")
        network["network_dim"] = dim
        self.row("network_dim", dim, dim, "kept")
        if alpha is not None:
            network["network_alpha"] = float(alpha) if not float(alpha).is_integer() else int(float(alpha))
            self.row("network_alpha", alpha, network["network_alpha"], "kept")
        self.handled.update({"network_dim", "network_alpha", "network_module"})
        return network

    def optimizer(self, lr: float) -> dict[str, Any]:
        params = self.params
        optimizer: dict[str, Any] = {"unet_lr": lr}
        self.row("learning_rate -> unet_lr", lr, lr, "learning rate kept, as unet_lr")
        te_lr = _round_sig(lr * TE_LR_FACTOR)
        optimizer["text_encoder_lr"] = [te_lr]
        self.row(
            "text_encoder_lr",
            params.get("text_encoder_lr"),
            te_lr,
            f"learning rate x {TE_LR_FACTOR} (one value for both SDXL text encoders)",
        )
        self.handled.update({"learning_rate", "unet_lr", "text_encoder_lr"})
        for dest in ("optimizer_type", "lr_scheduler", "lr_scheduler_num_cycles", "lr_warmup_steps"):
            if params.get(dest) is not None:
                optimizer[dest] = params[dest]
                self.row(dest, params[dest], params[dest], "kept")
                self.handled.add(dest)
        return optimizer

    def batch(self, vram_gb: float) -> tuple[dict[str, Any], int]:
        """Epochs, batch size and accumulation by VRAM: the ``[training]`` table so far, the batch."""
        params = self.params
        training: dict[str, Any] = {}
        epochs = params.get("max_train_epochs")
        if epochs is not None:
            training["max_train_epochs"] = int(epochs)
            self.row("max_train_epochs", epochs, int(epochs), "kept")
        self.handled.add("max_train_epochs")
        sd15_bs = params.get("train_batch_size")
        sd15_accum = int(params.get("gradient_accumulation_steps") or 1)
        if vram_gb >= BIG_VRAM_GB:
            batch, accum = 4, sd15_accum
            vram_rule = f"VRAM {vram_gb:g} GB >= {BIG_VRAM_GB:g} GB: batch 4, accumulation kept"
        else:
            batch, accum = 2, 4
            vram_rule = f"VRAM {vram_gb:g} GB < {BIG_VRAM_GB:g} GB: batch 2 with gradient accumulation 4"
        training["gradient_accumulation_steps"] = accum
        self.row("batch_size (dataset TOML)", sd15_bs, batch, vram_rule)
        self.row(
            "gradient_accumulation_steps",
            params.get("gradient_accumulation_steps"),
            accum,
            "kept" if accum == sd15_accum else vram_rule,
        )
        sd15_eff = int(sd15_bs) * sd15_accum if isinstance(sd15_bs, (int, float)) else None
        self.row(
            "effective batch (batch x accumulation)",
            sd15_eff,
            batch * accum,
            "for reference: a smaller effective batch may want a lower learning rate"
            if sd15_eff and sd15_eff != batch * accum
            else "for reference",
        )
        self.handled.update({"train_batch_size", "gradient_accumulation_steps"})
        return training, batch

    def sdxl_memory(self, training: dict[str, Any], xformers_available: bool | None) -> None:
        """Token length, gradient checkpointing and the attention SDXL needs."""
        params = self.params
        training["max_token_length"] = 225
        self.row("max_token_length", params.get("max_token_length"), 225, "SDXL: 225 tokens")
        training["gradient_checkpointing"] = True
        self.row("gradient_checkpointing", params.get("gradient_checkpointing"), True, "required for SDXL memory")
        if xformers_available:
            training["xformers"] = True
            self.row(
                "attention",
                "xformers" if params.get("xformers") else params.get("sdpa") and "sdpa",
                "xformers",
                "xformers is importable in the target environment",
            )
        else:
            training["sdpa"] = True
            why = (
                "xformers is not importable in the target environment"
                if xformers_available is False
                else "xformers could not be confirmed in the target environment"
            )
            self.row("attention", "xformers" if params.get("xformers") else None, "sdpa",
                     f"{why}: sdpa (built into torch)")
        self.handled.update({"max_token_length", "gradient_checkpointing", "xformers", "sdpa", "mem_eff_attn"})

    def precision_and_seed(self, training: dict[str, Any]) -> None:
        params = self.params
        mp = str(params.get("mixed_precision") or "fp16")
        if mp not in ("fp16", "bf16"):
            mp = "fp16"
        training["mixed_precision"] = mp
        self.row("mixed_precision", params.get("mixed_precision"), mp, "kept (fp16 unless the trial used bf16)")
        if mp == "fp16":
            training["no_half_vae"] = True
            self.row(
                "no_half_vae",
                params.get("no_half_vae"),
                True,
                "fp16: keep the SDXL VAE in fp32 (fp16 VAE can give NaN latents)",
            )
        training["cache_latents_to_disk"] = True  # implies cache_latents
        self.row("cache_latents_to_disk", params.get("cache_latents"), True, "cached latents (saves VRAM and time)")
        seed_raw = params.get("seed")
        seed = int(seed_raw) if seed_raw is not None else 42
        training["seed"] = seed
        self.row("seed", params.get("seed"), seed, "kept" if params.get("seed") is not None else "fixed seed 42")
        self.handled.update({"mixed_precision", "no_half_vae", "cache_latents", "cache_latents_to_disk", "seed"})
        if params.get("clip_skip") is not None:
            self.row("clip_skip", params["clip_skip"], None, "dropped: SDXL ignores clip_skip")
        self.handled.add("clip_skip")

    def saving(self, out: str, output_name: str) -> dict[str, Any]:
        self.row("save_every_n_epochs", self.params.get("save_every_n_epochs"), 2, "a checkpoint every 2 epochs")
        self.row("save_precision", self.params.get("save_precision"), "fp16", "fp16 files")
        self.handled.update({"output_dir", "output_name", "save_every_n_epochs", "save_precision", "save_model_as"})
        return {"output_dir": out, "output_name": output_name, "save_every_n_epochs": 2, "save_precision": "fp16"}

    def logging(self, out: str) -> dict[str, Any]:
        logging: dict[str, Any] = {"log_with": "tensorboard", "logging_dir": str(Path(out) / "logs")}
        self.row("log_with", self.params.get("log_with"), "tensorboard", f"TensorBoard under {logging['logging_dir']}")
        self.handled.update({"log_with", "logging_dir"})
        return logging

    def carried_over(self) -> dict[str, Any]:
        """Anything else the trial tuned that is a real option, as-is."""
        table = load_packaged_table(SDXL_SCRIPT)
        extra: dict[str, Any] = {}
        for key in sorted(self.params):
            if key in self.handled or key == "resolution":
                continue
            if table.by_dest(key) is None:
                self.row(key, self.params[key], None, "dropped: not an sd-scripts option")
                continue
            extra[key] = self.params[key]
            self.row(key, self.params[key], self.params[key], "carried over as-is")
        return extra

    def dataset_rows(self, source: Mapping[str, Any]) -> None:
        """Resolution and bucket rows: what the SD1.5 dataset had, what the SDXL one has."""
        general = source.get("general") if isinstance(source.get("general"), Mapping) else None
        datasets = source.get("datasets") if isinstance(source.get("datasets"), list) else []
        sd15_res = self.params.get("resolution")
        if sd15_res is None:
            for d in datasets or []:
                if isinstance(d, Mapping) and d.get("resolution") is not None:
                    sd15_res = d["resolution"]
                    break
            else:
                sd15_res = (general or {}).get("resolution") if general is not None else None
        self.row("resolution (dataset TOML)", sd15_res, SDXL_RESOLUTION, "SDXL trains at 1024x1024")
        sd15_steps = None
        for level in [source.get("general") or {}, *(source.get("datasets") or [])]:
            if isinstance(level, Mapping) and level.get("bucket_reso_steps") is not None:
                sd15_steps = level["bucket_reso_steps"]
        self.row(
            "enable_bucket / bucket_reso_steps",
            sd15_steps,
            "true / 64",
            "bucketing on; SDXL needs bucket_reso_steps to be a multiple of 32",
        )
        self.row("min/max_bucket_reso", None, "512 / 2048", "buckets around 1024")


def _sdxl_dataset(
    source: Mapping[str, Any], source_path: Path | None, batch: int, sd_scripts_dir: str | None = None
) -> dict[str, Any]:
    """The SD1.5 dataset rewritten for SDXL: 1024, bucketing, batch size; subsets kept.

    Relative image folders are made absolute when they exist beside the SD1.5 TOML or in the
    sd-scripts checkout (where the SD1.5 run resolved them), so the new files work from anywhere.
    """
    bases = [
        b
        for b in (source_path.parent if source_path else None, Path(sd_scripts_dir) if sd_scripts_dir else None)
        if b is not None
    ]
    general = dict(source.get("general") or {}) if isinstance(source.get("general"), Mapping) else {}
    for key in ("resolution", "batch_size", "enable_bucket", "bucket_reso_steps", "min_bucket_reso", "max_bucket_reso"):
        general.pop(key, None)
    datasets: list[dict[str, Any]] = []
    raw_datasets = source.get("datasets") if isinstance(source.get("datasets"), list) else []
    for d in raw_datasets or []:
        if not isinstance(d, Mapping):
            continue
        nd = {k: v for k, v in d.items() if k != "subsets"}
        nd.update(
            resolution=SDXL_RESOLUTION,
            batch_size=batch,
            enable_bucket=True,
            bucket_reso_steps=64,
            min_bucket_reso=512,
            max_bucket_reso=2048,
        )
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
    launch_path = target / DEFAULT_NAME
    config = {k: dict(v) for k, v in plan.config.items()}
    config["dataset"]["dataset_config"] = str(dataset_path)
    head = f"written by `sdxl-tui plan` from {plan.trial.name} ({plan.trial.path})"
    config_path.write_text(
        toml.dumps(
            config, header=head + "\nsd-scripts --config_file: keys are argparse dest names; tables are only grouping"
        ),
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
    write_launch_config(
        cfg, launch_path, comment=head + "\nsdxl-tui launch config: `sdxl-tui check` / `sdxl-tui start`"
    )
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
