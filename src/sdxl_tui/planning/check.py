"""Check an sd-scripts LoRA launch before it runs: options, files, environment, resources.

Why: sd-scripts reveals most mistakes late: an unknown option at start, an SDXL checkpoint given
to ``train_network.py`` after minutes of loading, a missing bitsandbytes after latent caching, a
full disk at the fifth checkpoint, a NaN loss from an fp16 VAE hours in (REF §6). Every check
here reads only headers, folders and the option table, so a launch is checked in milliseconds
(plus one optional probe of the trainer's Python).

Entry points (agreed API): :func:`check_argv` (a raw command line), :func:`check_launch` (a
``LaunchConfig`` or the path of a ``sdxl-tui.toml``) and :func:`check_config_file` (an
sd-scripts ``--config_file`` TOML). All return a :class:`CheckReport`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.cmdline import python_command_from_prefix
from sdxl_tui.formats.launch_config import LaunchConfig, load_launch_config
from sdxl_tui.formats.optiontable import (
    KNOWN_SCRIPTS,
    SD1_SCRIPT,
    SDXL_SCRIPT,
    OptionTable,
    load_packaged_table,
)
from sdxl_tui.formats.simargs import split_args
from sdxl_tui.humanize import format_bytes, format_duration_words
from sdxl_tui.model import GpuStatus
from sdxl_tui.planning import estimate as est
from sdxl_tui.planning.basemodel import (
    ModelKind,
    detect_model_kind,
    looks_like_hub_id,
    name_suggests_sdxl,
)
from sdxl_tui.planning.dataset import DatasetCheck, validate_dataset_config
from sdxl_tui.planning.environment import (
    Environment,
    UnknownEnvironment,
    environment_for_prefix,
)
from sdxl_tui.planning.findings import Finding, exit_code_for
from sdxl_tui.planning.options import check_config_value, load_table_from_checkout, resolve_argv
from sdxl_tui.sources.gpu import GpuMonitor

__all__ = [
    "CheckReport",
    "Finding",
    "check_argv",
    "check_config_file",
    "check_dataset_config",
    "check_launch",
    "fact_lines",
    "format_report",
    "split_command",
]

_SHELL_TAIL = {">", ">>", "2>&1", "&", "1>", "2>", "&>", "|"}
_BUCKET_OPTIONS = ("bucket_reso_steps", "bucket_no_upscale", "min_bucket_reso", "max_bucket_reso")


@dataclass(frozen=True)
class CheckReport:
    """Findings (most serious first) and the facts a user wants before a long run."""

    findings: tuple[Finding, ...]
    facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    argv: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "note")

    @property
    def exit_code(self) -> int:
        """0 clean (notes allowed), 1 warnings only, 2 errors."""
        return exit_code_for(self.findings)

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self, severity: str | None = None) -> list[str]:
        return [f.code for f in self.findings if severity is None or f.severity == severity]

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "findings": [f.to_json() for f in self.findings],
            "facts": dict(self.facts),
            "argv": list(self.argv),
        }


# ------------------------------------------------------------------------ helpers


def split_command(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(prefix, script, trainer options) of a raw command line.

    The script is the first ``*.py`` token; shell leftovers (``> log 2>&1 &``) are dropped.
    With no script the whole list is taken as trainer options.
    """
    tokens: list[str] = []
    for tok in argv:
        if tok in _SHELL_TAIL or tok.startswith((">", "2>", "1>")):
            break
        tokens.append(tok)
    for i, tok in enumerate(tokens):
        if tok.endswith(".py") and not tok.startswith("-"):
            return tokens[:i], tok, tokens[i + 1 :]
        # sdxl-tui's simulated trainer stands where the script would: `python -m sdxl_tui
        # simulate ...` or `sdxl-tui simulate ...`; everything before it is the prefix.
        if tok == "simulate" and i > 0 and os.path.basename(tokens[i - 1]) in ("sdxl_tui", "sdxl-tui"):
            return tokens[: i + 1], None, tokens[i + 1 :]
    return [], None, tokens


def _args_to_argv(args: Mapping[str, Any]) -> list[str]:
    """``[args]`` of a launch config (dest -> value) as command-line tokens."""
    out: list[str] = []
    for key, value in args.items():
        opt = "--" + key
        if value is True:
            out.append(opt)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            out.append(opt)
            out.extend(str(v) for v in value)
        else:
            out.extend([opt, str(value)])
    return out


def _flatten_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """sd-scripts' ``read_config_from_file``: tables flattened one level, scalars kept."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    return flat


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _resolve(path: str | None, cwd: Path) -> Path | None:
    if not path:
        return None
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else cwd / p


#: What a check is told about GPUs: a status, a monitor to sample, None (probe NVML) or False.
GpuArg = GpuStatus | GpuMonitor | bool | None


def _gpu_status(gpu: GpuArg) -> GpuStatus | None:
    """The GPUs now (a monitor or NVML is sampled once); None when told not to look."""
    if isinstance(gpu, GpuStatus):
        return gpu
    if gpu is False or gpu is True:
        return None if gpu is False else _gpu_status(None)
    monitor = gpu if gpu is not None else GpuMonitor()
    try:
        return monitor.sample()
    finally:
        if gpu is None:
            monitor.close()


def _required_modules(values: Mapping[str, Any]) -> dict[str, str]:
    """module -> why it is needed, from the effective options."""
    need: dict[str, str] = {}
    opt = str(values.get("optimizer_type") or "")
    low = opt.lower()
    why = f"--optimizer_type {opt}"
    if "." in opt:  # a full class path such as "prodigyplus.ProdigyPlusScheduleFree": its package
        need[opt.split(".", 1)[0]] = why
    elif values.get("use_8bit_adam") or "8bit" in low or low.startswith("paged"):
        need["bitsandbytes"] = f"--optimizer_type {opt or 'AdamW8bit'} (8-bit optimizers come from bitsandbytes)"
    elif low.startswith("dadapt"):
        need["dadaptation"] = why
    elif low == "prodigy":
        need["prodigyopt"] = why
    elif low == "lion" or values.get("use_lion_optimizer"):
        need["lion_pytorch"] = f"--optimizer_type {opt or 'Lion'}"
    elif "schedulefree" in low:
        need["schedulefree"] = why
    if values.get("xformers"):
        need["xformers"] = "--xformers"
    log_with = values.get("log_with")
    if log_with in ("tensorboard", "all") or (values.get("logging_dir") and not log_with):
        need["tensorboard"] = "TensorBoard logging"
    if log_with in ("wandb", "all"):
        need["wandb"] = f"--log_with {log_with}"
    return need


def _is_simulator(prefix: Sequence[str]) -> bool:
    """``python -m sdxl_tui simulate`` / ``sdxl-tui simulate``: a test or demo launch."""
    names = [os.path.basename(p) for p in prefix]
    return "simulate" in names and any(n in ("sdxl_tui", "sdxl-tui") for n in names)


# ------------------------------------------------------------------------ the core


@dataclass
class _Input:
    prefix: list[str]
    script: str | None
    options: list[str]
    cwd: Path
    env: Mapping[str, str]


def _core(
    inp: _Input,
    *,
    table: OptionTable | None,
    sd_scripts_dir: str | os.PathLike[str] | None,
    environment: Environment | None,
    inspect_environment: bool,
    gpu: GpuArg,
    disk_usage: Callable[[str], Any],
) -> CheckReport:
    findings: list[Finding] = []
    facts: dict[str, Any] = {}
    add = findings.append

    # --- which script, which option table -------------------------------------------
    script_name = os.path.basename(inp.script) if inp.script else SDXL_SCRIPT
    if inp.script is None and not _is_simulator(inp.prefix):
        add(Finding("note", "script-assumed", f"no trainer script in the command; assuming {SDXL_SCRIPT}",
                    "put the script name before the options", None))
    elif script_name not in KNOWN_SCRIPTS:
        add(Finding("warning", "script-unknown",
                    f"{script_name} is not one of the LoRA trainers sdxl-tui knows ({', '.join(KNOWN_SCRIPTS)}); "
                    "options are checked against sdxl_train_network.py's",
                    "use sdxl_train_network.py for an SDXL LoRA", inp.script))
    table_script = script_name if script_name in KNOWN_SCRIPTS else SDXL_SCRIPT
    if table is None:
        if sd_scripts_dir is not None:
            python = python_command_from_prefix(inp.prefix)
            table, why = load_table_from_checkout(sd_scripts_dir, table_script, python=python)
            if why:
                add(Finding("note", "options-fallback", why, "pass --sd-scripts DIR pointing at a working checkout",
                            str(sd_scripts_dir)))
        else:
            table = load_packaged_table(table_script)
    facts["script"] = script_name
    facts["options_source"] = table.source

    # --- options ---------------------------------------------------------------------
    options = list(inp.options)
    if _is_simulator(inp.prefix):
        # The simulator takes its own --sim-* knobs beside the trainer's options; the
        # trainer's table must not call them unknown.
        try:
            _, options = split_args(options)
        except SystemExit:
            add(Finding("error", "bad-value", "a --sim-* option has a bad value",
                        "see `sdxl-tui simulate --help`", None))
            options = [o for o in options if not o.startswith("--sim-")]
    parsed = resolve_argv(options, table)
    for p in parsed.problems:
        add(Finding(p.severity, p.code, p.message, p.fix, p.option))
    values: dict[str, Any] = table.defaults()
    explicit: set[str] = set()

    cfg_path_text = parsed.values.get("config_file")
    cfg: dict[str, Any] = {}
    if cfg_path_text:
        cfg_path = _resolve(str(cfg_path_text), inp.cwd)
        assert cfg_path is not None
        if cfg_path.suffix != ".toml":
            cfg_path = cfg_path.with_name(cfg_path.name + ".toml")
        try:
            cfg = _flatten_config(toml.load(cfg_path))
        except FileNotFoundError:
            add(Finding("error", "config-file-missing", f"--config_file {cfg_path} not found; sd-scripts exits 1",
                        "fix the path (sd-scripts appends .toml when it is missing)", str(cfg_path)))
        except (OSError, toml.TOMLDecodeError) as exc:
            add(Finding("error", "config-file-invalid", f"{cfg_path} does not parse: {exc}",
                        "fix the TOML syntax", str(cfg_path)))
        facts["config_file"] = str(cfg_path)
    for key, value in cfg.items():
        spec = table.by_dest(key)
        if spec is None:
            close = table.suggest_dest(key)
            add(Finding("warning", "config-key-unknown",
                        f"config file key `{key}` is not an option of {table.script}; sd-scripts keeps it "
                        "without a word and it has no effect",
                        f"did you mean `{close}`?" if close else f"remove `{key}`", key))
            continue
        why = check_config_value(spec, value)
        if why:
            add(Finding("error", "config-value-type",
                        f"config file `{key}`: {why}; config values skip argparse's conversion and checks, "
                        "so the trainer fails when it uses the value",
                        f"write `{key}` with the right type", key))
            continue
        values[key] = value
        explicit.add(key)
    values.update(parsed.values)
    explicit.update(parsed.values)

    def given(dest: str) -> bool:
        return dest in explicit

    sdxl_script = script_name == SDXL_SCRIPT

    if _is_simulator(inp.prefix):
        add(Finding("note", "simulated-trainer",
                    "the prefix runs sdxl-tui's simulated trainer: only the options are checked "
                    "(no base model, dataset, environment, VRAM or disk checks)", "", None))
        findings.sort(key=lambda f: f.rank)
        facts["simulated"] = True
        return CheckReport(findings=tuple(findings), facts=MappingProxyType(facts),
                           argv=(*inp.prefix, *([inp.script] if inp.script else []), *inp.options))

    # --- base model -------------------------------------------------------------------
    base = values.get("pretrained_model_name_or_path")
    kind = ModelKind("unknown", "not given")
    if not base:
        add(Finding("error", "no-base-model", "no --pretrained_model_name_or_path",
                    "give the SDXL base checkpoint, e.g. sd_xl_base_1.0.safetensors", None))
    else:
        base_path = _resolve(str(base), inp.cwd)
        kind = detect_model_kind(base_path if base_path is not None else str(base))
        if kind.kind == "missing" and looks_like_hub_id(str(base)):
            kind = ModelKind("hub", "not a local path; a Hugging Face model id that sd-scripts downloads")
        facts["base_model"] = str(base)
        facts["base_model_kind"] = kind.kind
        if kind.kind == "missing":
            add(Finding("error", "base-model-missing", f"base model {base_path} does not exist",
                        "fix --pretrained_model_name_or_path", str(base)))
            if not sdxl_script and name_suggests_sdxl(str(base)):
                kind = ModelKind("sdxl", "the file name says SDXL (file not found)")
        elif kind.kind == "lora":
            add(Finding("error", "base-model-is-lora", f"{base} is a LoRA ({kind.evidence})",
                        "give the SDXL base checkpoint as --pretrained_model_name_or_path; a LoRA to continue "
                        "from goes in --network_weights", str(base)))
        elif kind.kind == "sdxl-refiner":
            add(Finding("error", "base-model-refiner", f"{base} is the SDXL refiner ({kind.evidence})",
                        "train on sd_xl_base_1.0.safetensors", str(base)))
        elif kind.kind in ("unknown", "hub"):
            add(Finding("note", "base-model-unknown", f"cannot tell what {base} is: {kind.evidence}",
                        "make sure it is an SDXL base model", str(base)))
            if kind.kind == "hub" and not sdxl_script and name_suggests_sdxl(str(base)):
                kind = ModelKind("sdxl", "the model id says SDXL")
        if kind.kind == "sdxl" and not sdxl_script:
            add(Finding("error", "wrong-script",
                        f"{base} is an SDXL checkpoint ({kind.evidence}) but {script_name} trains SD 1.x/2.x; "
                        "it fails while loading with `size mismatch for ...`",
                        f"run {SDXL_SCRIPT} instead of {script_name}", inp.script))
        elif kind.is_sd12 and sdxl_script:
            add(Finding("error", "wrong-script",
                        f"{base} is an SD {kind.kind[2:]}.x checkpoint ({kind.evidence}) but {script_name} "
                        "trains SDXL",
                        f"use an SDXL base model, or run {SD1_SCRIPT} for SD {kind.kind[2:]}.x", inp.script))
    sdxl = sdxl_script or kind.is_sdxl
    facts["sdxl"] = sdxl

    # --- SDXL rules -------------------------------------------------------------------
    if sdxl and values.get("v2"):
        add(Finding("error", "v2-sdxl", "--v2 is for SD 2.x; SDXL training asserts `v2 cannot be enabled in SDXL training`",
                    "remove --v2", "--v2"))
    if sdxl and given("clip_skip"):
        add(Finding("warning", "clip-skip-sdxl",
                    f"--clip_skip {values.get('clip_skip')} has no effect on SDXL (sd-scripts warns "
                    "`clip_skip will be unexpected`) but is written into the LoRA metadata",
                    "remove --clip_skip", "--clip_skip"))
    if sdxl and values.get("mixed_precision") == "fp16" and not values.get("no_half_vae"):
        vae = str(values.get("vae") or "")
        if "fp16" in vae.lower():
            add(Finding("note", "fp16-vae", f"fp16 VAE {vae} is used without --no_half_vae",
                        "keep it only if it is the fp16-fixed SDXL VAE", "--no_half_vae"))
        else:
            add(Finding("warning", "fp16-vae",
                        "--mixed_precision fp16 without --no_half_vae: the SDXL VAE runs in fp16 while caching "
                        "latents and can produce NaNs, which are cached silently and turn the loss to NaN",
                        "add --no_half_vae (or use --mixed_precision bf16 on a GPU that supports it)",
                        "--no_half_vae"))
    if sdxl and (values.get("cache_text_encoder_outputs") or values.get("cache_text_encoder_outputs_to_disk")) \
            and not values.get("network_train_unet_only"):
        add(Finding("error", "cache-te-needs-unet-only",
                    "--cache_text_encoder_outputs needs --network_train_unet_only (sd-scripts asserts "
                    "`network for Text Encoder cannot be trained with caching Text Encoder outputs`)",
                    "add --network_train_unet_only, or drop --cache_text_encoder_outputs", "--cache_text_encoder_outputs"))
    module = str(values.get("network_module") or "")
    te_lr = values.get("text_encoder_lr")
    if sdxl and te_lr not in (None, []) and module == "networks.lora" and not values.get("network_train_unet_only"):
        first = te_lr[0] if isinstance(te_lr, list) else te_lr
        extra = " (the other values are ignored)" if isinstance(te_lr, list) and len(te_lr) > 1 else ""
        add(Finding("note", "text-encoder-lr-single",
                    f"--text_encoder_lr {first} is used for both SDXL text encoders{extra}: networks.lora has one "
                    "`textencoder` parameter group; --text_encoder_lr1/--text_encoder_lr2 do not exist",
                    "nothing to do unless you wanted different rates per encoder (that needs another network module)",
                    "--text_encoder_lr"))

    # --- redundant but harmless (REF §6.6) -------------------------------------------
    if given("cache_latents") and values.get("cache_latents_to_disk"):
        add(Finding("note", "redundant-option", "--cache_latents is implied by --cache_latents_to_disk",
                    "drop --cache_latents (harmless)", "--cache_latents"))
    if given("save_model_as") and values.get("save_model_as") == "safetensors":
        add(Finding("note", "redundant-option", "--save_model_as safetensors is the default",
                    "drop it (harmless)", "--save_model_as"))
    if given("learning_rate") and values.get("unet_lr") is not None and (
        te_lr not in (None, []) or values.get("network_train_unet_only")
    ):
        add(Finding("note", "redundant-option",
                    "--learning_rate is only a fallback when --unet_lr and --text_encoder_lr are set",
                    "drop --learning_rate (harmless)", "--learning_rate"))

    # --- required pieces ------------------------------------------------------------
    if not values.get("network_module"):
        add(Finding("error", "no-network-module", "no --network_module; train_network cannot import a network",
                    "add --network_module networks.lora", None))
    out_dir = _resolve(values.get("output_dir"), inp.cwd)
    if out_dir is None:
        add(Finding("error", "no-output-dir", "no --output_dir; the first save fails",
                    "add --output_dir DIR", None))
    if values.get("log_with") in ("tensorboard", "all") and not values.get("logging_dir"):
        add(Finding("error", "logging-dir-required",
                    f"--log_with {values.get('log_with')} without --logging_dir raises `logging_dir is required`",
                    "add --logging_dir OUTPUT_DIR/logs", "--logging_dir"))

    # --- dataset ----------------------------------------------------------------------
    ds: DatasetCheck | None = None
    dataset_config = values.get("dataset_config")
    if dataset_config:
        ds_args = {k: v for k, v in values.items()}
        ds = validate_dataset_config(str(dataset_config), sdxl=sdxl, args=ds_args, cwd=inp.cwd)
        findings.extend(ds.findings)
        for dest in ("train_data_dir", "reg_data_dir", "in_json"):
            if given(dest):
                add(Finding("warning", "option-ignored",
                            f"--{dest} is ignored because --dataset_config is given",
                            f"drop --{dest} or put that folder in the dataset TOML", f"--{dest}"))
        toml_keys = ds.explicit_keys
        for dest, key in (("train_batch_size", "batch_size"), ("resolution", "resolution"),
                          ("dataset_repeats", "num_repeats"), *((b, b) for b in _BUCKET_OPTIONS),
                          ("enable_bucket", "enable_bucket"), ("caption_extension", "caption_extension")):
            if given(dest) and key in toml_keys and ds.datasets:
                add(Finding("note", "cli-fallback-ignored",
                            f"--{dest} is only a fallback: the dataset TOML sets {key}, which wins",
                            f"set {key} in the dataset TOML and drop --{dest}", f"--{dest}"))
        bucketing = any(d.enable_bucket for d in ds.datasets)
        used = [b for b in _BUCKET_OPTIONS if given(b)]
        if used and ds.datasets and not bucketing:
            add(Finding("warning", "bucket-without-bucketing",
                        f"{', '.join('--' + b for b in used)} do nothing: bucketing is off (no enable_bucket = true "
                        "in the dataset TOML and no --enable_bucket); images are cropped to the resolution",
                        "set enable_bucket = true in the dataset TOML ([general] or [[datasets]])", "enable_bucket"))
    elif values.get("train_data_dir"):
        tdd = _resolve(values.get("train_data_dir"), inp.cwd)
        if tdd is not None and not tdd.is_dir():
            add(Finding("error", "dataset-folder-missing", f"--train_data_dir {tdd} is not a folder",
                        "fix the path", str(tdd)))
        if not values.get("resolution"):
            add(Finding("error", "dataset-no-resolution", "no --resolution (and no dataset TOML)",
                        f"add --resolution {1024 if sdxl else 512}", "--resolution"))
        used = [b for b in _BUCKET_OPTIONS if given(b)]
        if used and not values.get("enable_bucket"):
            add(Finding("warning", "bucket-without-bucketing",
                        f"{', '.join('--' + b for b in used)} do nothing without --enable_bucket",
                        "add --enable_bucket", "--enable_bucket"))
    else:
        add(Finding("error", "no-dataset", "neither --dataset_config nor --train_data_dir: no training data",
                    "add --dataset_config DATASET.toml", None))

    # --- environment ----------------------------------------------------------------
    need = _required_modules(values)
    if need and inspect_environment:
        env = environment if environment is not None else environment_for_prefix(inp.prefix, cwd=str(inp.cwd))
        answer = env.has_modules(list(need))
        unknown = [m for m, ok in answer.items() if ok is None]
        for mod, ok in answer.items():
            if ok is False:
                add(Finding("error", "missing-module",
                            f"{need[mod]} needs the `{mod}` module, which the trainer's environment "
                            f"({env.description}) cannot import; the run fails after loading the models",
                            ("use --sdpa instead of --xformers (built into torch), or install xformers"
                             if mod == "xformers" else f"install {mod} in that environment"), mod))
        if unknown:
            why = env.error or env.description
            add(Finding("note", "environment-unknown",
                        f"could not check that {', '.join(unknown)} import in the trainer's environment ({why})",
                        f"make sure {', '.join(unknown)} are installed there", None))
    facts["needs_modules"] = sorted(need)

    # --- steps and time ---------------------------------------------------------------
    accum = int(values.get("gradient_accumulation_steps") or 1)
    if ds is not None and ds.datasets:
        batches = ds.batches
        batch_size = max(d.batch_size for d in ds.datasets)
        images = ds.train_images_with_repeats
        resolution = next((d.resolution for d in ds.datasets if d.resolution), None) or (1024, 1024)
        bucketing = any(d.enable_bucket for d in ds.datasets)
    else:
        batches = 0
        batch_size = int(values.get("train_batch_size") or 1)
        images = 0
        resolution = (1024, 1024) if sdxl else (512, 512)
        bucketing = bool(values.get("enable_bucket"))
    facts.update(batch_size=batch_size, gradient_accumulation_steps=accum, effective_batch=batch_size * accum,
                 train_images_with_repeats=images, resolution=list(resolution))
    epochs_opt = values.get("max_train_epochs")
    spe = est.steps_per_epoch(batches, accum) if batches else None
    if spe:
        facts["batches_per_epoch"] = batches
        facts["steps_per_epoch"] = spe
        if epochs_opt:
            total = int(epochs_opt) * spe
            epochs = int(epochs_opt)
        else:
            total = int(values.get("max_train_steps") or 1600)
            epochs = math.ceil(total / spe)
            add(Finding("note", "steps-by-max-train-steps",
                        f"no --max_train_epochs: training stops after --max_train_steps {total} steps "
                        f"(about {epochs} epochs)", "set --max_train_epochs to train by epochs", "--max_train_epochs"))
        facts["epochs"] = epochs
        facts["total_steps"] = total
        if bucketing:
            facts["steps_note"] = "with bucketing, batches per epoch can be a little higher (one partial batch per bucket)"
        attention = "xformers" if values.get("xformers") else "sdpa" if values.get("sdpa") else (
            "mem_eff_attn" if values.get("mem_eff_attn") else None)
        train_te = not values.get("network_train_unet_only")
        sps = est.seconds_per_step(batch_size=batch_size, gradient_accumulation_steps=accum, resolution=resolution,
                                   gradient_checkpointing=bool(values.get("gradient_checkpointing")),
                                   attention=attention, train_text_encoders=train_te)
        if sdxl:
            facts["seconds_per_step_estimate"] = round(sps, 2)
            facts["time_estimate_seconds"] = round(sps * total)
            facts["time_estimate"] = (f"about {format_duration_words(sps * total)} (estimate for an RTX 3090/4090-class "
                                      "GPU; the dashboard shows the measured rate once it runs)")
        warm = values.get("lr_warmup_steps") or 0
        if isinstance(warm, (int, float)) and warm >= 1 and warm >= total:
            add(Finding("warning", "warmup-too-long",
                        f"--lr_warmup_steps {warm} is not below the {total} optimizer steps: the learning rate "
                        "never leaves warm-up", "lower --lr_warmup_steps (it counts optimizer steps)",
                        "--lr_warmup_steps"))
    else:
        epochs = int(epochs_opt or 0)

    # --- checkpoints and disk -----------------------------------------------------------
    dim = int(values.get("network_dim") or 4)
    unet_only = bool(values.get("network_train_unet_only"))
    te_only = bool(values.get("network_train_text_encoder_only"))
    prec = values.get("save_precision")
    bpv = 2 if prec in ("fp16", "bf16") or (prec is None and (values.get("full_fp16") or values.get("full_bf16"))) else 4
    file_bytes = est.lora_file_bytes(dim, unet=not te_only, text_encoders=not unet_only, bytes_per_value=bpv)
    if sdxl and epochs:
        every = values.get("save_every_n_epochs")
        ratio = values.get("save_n_epoch_ratio")
        if ratio:
            every = max(1, math.floor(epochs / int(ratio)))
        epoch_files = est.kept_count(len(est.saved_epochs(epochs, every)), values.get("save_last_n_epochs"))
        step_files = 0
        n_steps = values.get("save_every_n_steps")
        if n_steps and facts.get("total_steps"):
            step_files = int(facts["total_steps"]) // int(n_steps)
            keep = values.get("save_last_n_steps")
            if keep:
                step_files = min(step_files, int(keep) // int(n_steps) + 1)
        files = epoch_files + step_files + 1
        need_bytes = files * file_bytes
        states = 0
        if values.get("save_state") or values.get("save_state_on_train_end"):
            per_state = est.state_dir_bytes(dim, unet=not te_only, text_encoders=not unet_only,
                                            eight_bit="bitsandbytes" in need)
            if values.get("save_state"):
                keep_s = values.get("save_last_n_epochs_state") or values.get("save_last_n_epochs")
                states = est.kept_count(len(est.saved_epochs(epochs, every)), keep_s) + step_files
            states += 1
            need_bytes += states * per_state
        facts.update(checkpoint_bytes=file_bytes, checkpoint_files=files, state_dirs=states, disk_needed_bytes=need_bytes)
        if out_dir is not None:
            where = _nearest_existing(out_dir)
            try:
                free = int(disk_usage(str(where)).free)
            except OSError:
                free = None
            if free is not None:
                facts["disk_free_bytes"] = free
                what = f"{files} LoRA files of {format_bytes(file_bytes)}" + (
                    f" and {states} state folders" if states else "")
                if need_bytes > free:
                    add(Finding("error", "disk-space",
                                f"the run writes {format_bytes(need_bytes)} ({what}) but only "
                                f"{format_bytes(free)} is free under {where}; a save fails mid-run",
                                "free space, use --save_last_n_epochs N, or save less often", str(where)))
                elif need_bytes > 0.8 * free:
                    add(Finding("warning", "disk-space",
                                f"the run writes {format_bytes(need_bytes)} ({what}), {need_bytes * 100 // free}% "
                                f"of the {format_bytes(free)} free under {where}",
                                "free space or keep fewer checkpoints (--save_last_n_epochs)", str(where)))

    # --- VRAM -------------------------------------------------------------------------
    if sdxl:
        attention = "xformers" if values.get("xformers") else "sdpa" if values.get("sdpa") else (
            "mem_eff_attn" if values.get("mem_eff_attn") else None)
        vram = est.estimate_vram(
            batch_size=batch_size, resolution=resolution, dim=dim,
            train_text_encoders=not unet_only,
            gradient_checkpointing=bool(values.get("gradient_checkpointing")),
            attention=attention, mixed_precision=str(values.get("mixed_precision") or "no"),
            eight_bit_optimizer="bitsandbytes" in need,
            cache_latents=bool(values.get("cache_latents") or values.get("cache_latents_to_disk")),
            cache_text_encoder_outputs=bool(values.get("cache_text_encoder_outputs")),
            fp8_base=bool(values.get("fp8_base") or values.get("fp8_base_unet")),
            full_half=bool(values.get("full_fp16") or values.get("full_bf16")),
        )
        facts["vram_estimate_gb"] = vram.total_gb
        status = _gpu_status(gpu)
        gpus = status.gpus if status is not None else ()
        visible = inp.env.get("CUDA_VISIBLE_DEVICES") if inp.env else None
        index = 0
        if visible and visible.split(",")[0].strip().isdigit():
            index = int(visible.split(",")[0])
        gpu_sample = next((g for g in gpus if g.index == index), gpus[0] if gpus else None)
        total_b = gpu_sample.memory_total if gpu_sample is not None else None
        used_b = gpu_sample.memory_used if gpu_sample is not None else None
        if gpu_sample is not None and total_b:
            free_gb = (total_b - (used_b or 0)) / est.GIB
            facts["gpu"] = gpu_sample.name
            facts["gpu_free_gb"] = round(free_gb, 1)
            if vram.total_gb > free_gb:
                add(Finding("warning", "vram",
                            f"estimated peak VRAM {vram.total_gb:.1f} GiB (a rough estimate) is more than the "
                            f"{free_gb:.1f} GiB free on {facts['gpu']}; expect CUDA out of memory",
                            "lower batch_size in the dataset TOML (and raise --gradient_accumulation_steps), "
                            "add --gradient_checkpointing, --cache_latents, --xformers/--sdpa, or --fp8_base",
                            "vram"))
        else:
            reason = status.reason if status is not None else None
            add(Finding("note", "gpu-unknown",
                        f"no GPU information ({reason or 'NVML not available'}); estimated peak VRAM "
                        f"{vram.total_gb:.1f} GiB", "make sure the GPU has that much free", None))

    findings.sort(key=lambda f: f.rank)
    return CheckReport(findings=tuple(findings), facts=MappingProxyType(facts),
                       argv=(*inp.prefix, *([inp.script] if inp.script else []), *inp.options))


# ------------------------------------------------------------------------ public API


def check_argv(
    argv: Sequence[str],
    *,
    environment: Environment | None = None,
    gpu: GpuArg = None,
    sd_scripts_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    inspect_environment: bool = True,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
    table: OptionTable | None = None,
    env: Mapping[str, str] | None = None,
) -> CheckReport:
    """Check a raw command line (``python train_network.py --opt ...``).

    Args:
        argv: the tokens, prefix and script included (shell redirections are ignored).
        environment: answers "does module X import in the trainer's env"; default: probe the
            interpreter named in the prefix.
        gpu: a ``GpuStatus``, a monitor with ``sample()``, None to ask NVML, False to skip.
        sd_scripts_dir: the user's checkout; its ``--help`` gives the real option list.
        cwd: the trainer's working directory (relative paths resolve against it).
    """
    prefix, script, options = split_command(argv)
    base = Path(cwd) if cwd is not None else (Path(sd_scripts_dir) if sd_scripts_dir else Path.cwd())
    return _core(
        _Input(prefix, script, options, base, dict(env or {})),
        table=table, sd_scripts_dir=sd_scripts_dir, environment=environment,
        inspect_environment=inspect_environment, gpu=gpu, disk_usage=disk_usage,
    )


def check_config_file(
    path: str | os.PathLike[str],
    *,
    script: str = SDXL_SCRIPT,
    extra_argv: Sequence[str] = (),
    prefix: Sequence[str] = (),
    environment: Environment | None = None,
    gpu: GpuArg = None,
    sd_scripts_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    inspect_environment: bool = True,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
) -> CheckReport:
    """Check an sd-scripts ``--config_file`` TOML (plus its dataset TOML) as ``script`` would."""
    p = Path(path)
    argv = [*prefix, script, "--config_file", str(p.resolve()), *extra_argv]
    return check_argv(argv, environment=environment, gpu=gpu, sd_scripts_dir=sd_scripts_dir,
                      cwd=cwd if cwd is not None else (sd_scripts_dir or p.resolve().parent),
                      inspect_environment=inspect_environment, disk_usage=disk_usage)


def check_dataset_config(
    path: str | os.PathLike[str],
    *,
    sdxl: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> CheckReport:
    """Check a dataset TOML on its own (schema, folders, images, captions, SDXL rules).

    Relative folders resolve against ``cwd`` (the trainer's working directory), by default
    the TOML's own folder.
    """
    p = Path(path).resolve()
    ds = validate_dataset_config(p, sdxl=sdxl, cwd=cwd if cwd is not None else p.parent)
    facts: dict[str, Any] = {"dataset_config": str(p), "sdxl": sdxl}
    if ds.datasets:
        facts["train_images_with_repeats"] = ds.train_images_with_repeats
        facts["batches_per_epoch"] = ds.batches
        facts["datasets"] = [
            {"resolution": list(d.resolution) if d.resolution else None, "batch_size": d.batch_size,
             "enable_bucket": d.enable_bucket, "images": [s.images for s in d.subsets]}
            for d in ds.datasets
        ]
    findings = tuple(sorted(ds.findings, key=lambda f: f.rank))
    return CheckReport(findings=findings, facts=MappingProxyType(facts))


def check_launch(
    launch: LaunchConfig | str | os.PathLike[str],
    *,
    sd_scripts_dir: str | os.PathLike[str] | None = None,
    environment: Environment | None = None,
    gpu: GpuArg = None,
    inspect_environment: bool = True,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
    options_from_checkout: bool = True,
) -> CheckReport:
    """Check a launch config (a ``LaunchConfig`` or the path of its TOML).

    The trainer's working directory is the launch's ``sd_scripts_dir``. When that checkout
    exists (or ``sd_scripts_dir`` is given) its ``--help`` supplies the option list.
    """
    if isinstance(launch, (str, os.PathLike)):
        launch = load_launch_config(launch)
    argv = [str(a) for a in launch.argv()]
    checkout = sd_scripts_dir if sd_scripts_dir is not None else launch.sd_scripts_dir
    cwd = Path(str(checkout) if checkout else launch.cwd)
    script = launch.script
    prefix = list(launch.prefix)
    rest = argv[len(prefix):] if argv[: len(prefix)] == prefix else argv
    script_tok: str | None
    if script and rest and os.path.basename(rest[0]) == os.path.basename(script):
        script_tok, options = rest[0], rest[1:]
    elif not script and argv[: len(prefix)] == prefix:
        script_tok, options = None, rest
    else:
        _, script_tok, options = split_command(argv)
    extra: list[Finding] = []
    use_checkout = None
    if script:
        script_file = Path(script) if os.path.isabs(script) else (Path(str(checkout)) / script if checkout else None)
        if script_file is None:
            extra.append(Finding("note", "no-sd-scripts-dir",
                                 "the launch config has no sd_scripts_dir, so the trainer would run in "
                                 f"{cwd} and the script's own option list cannot be read",
                                 "set sd_scripts_dir = \"/path/to/sd-scripts\" in [launch]", None))
        elif not script_file.is_file():
            extra.append(Finding("error", "script-missing", f"trainer script {script_file} does not exist",
                                 "fix sd_scripts_dir / script in [launch]", str(script_file)))
        elif options_from_checkout and checkout:
            use_checkout = checkout
    env = dict(launch.env)
    if launch.backend == "slurm":
        from sdxl_tui.planning.slurm_check import check_slurm

        extra += check_slurm(launch.slurm)
        if gpu is None:  # this machine's GPUs say nothing about the node's
            gpu = False
    if environment is None:
        environment = environment_for_prefix(prefix, cwd=str(cwd)) if prefix else UnknownEnvironment()
    report = _core(
        _Input(prefix, script_tok, options, cwd, env),
        table=None, sd_scripts_dir=use_checkout, environment=environment,
        inspect_environment=inspect_environment, gpu=gpu, disk_usage=disk_usage,
    )
    if not extra:
        return report
    findings = sorted((*report.findings, *extra), key=lambda f: f.rank)
    return CheckReport(tuple(findings), report.facts, report.argv)


# ------------------------------------------------------------------------ rendering


def fact_lines(report: CheckReport) -> list[str]:
    """The report's facts as short lines: script, base model, steps, time, VRAM, disk.

    For views that show findings their own way (the dashboard's start dialog) and still want
    the numbers a user weighs before an overnight run.
    """
    facts = report.facts
    summary: list[str] = []
    if "script" in facts:
        summary.append(f"script: {facts['script']} (options from {facts.get('options_source')})")
    if "base_model_kind" in facts:
        summary.append(f"base model: {facts.get('base_model')} ({facts['base_model_kind']})")
    if "total_steps" in facts:
        summary.append(
            f"steps: {facts['train_images_with_repeats']} images x repeats, batch {facts['batch_size']}, "
            f"accumulation {facts['gradient_accumulation_steps']} (effective batch {facts['effective_batch']}) -> "
            f"{facts['batches_per_epoch']} batches = {facts['steps_per_epoch']} steps/epoch x {facts['epochs']} "
            f"epochs = {facts['total_steps']} steps"
        )
    elif "batches_per_epoch" in facts:
        summary.append(f"dataset: {facts.get('train_images_with_repeats')} images x repeats -> "
                       f"{facts['batches_per_epoch']} batches per epoch")
    if "time_estimate" in facts:
        summary.append(f"time: {facts['time_estimate']}")
    if "vram_estimate_gb" in facts:
        free = facts.get("gpu_free_gb")
        summary.append(f"VRAM: ~{facts['vram_estimate_gb']} GiB estimated" +
                       (f", {free} GiB free on {facts.get('gpu')}" if free is not None else ""))
    if "disk_needed_bytes" in facts:
        free_b = facts.get("disk_free_bytes")
        summary.append(
            f"disk: {facts['checkpoint_files']} x {format_bytes(facts['checkpoint_bytes'])} LoRA files"
            + (f" + {facts['state_dirs']} state folders" if facts.get("state_dirs") else "")
            + f" = {format_bytes(facts['disk_needed_bytes'])}"
            + (f", {format_bytes(free_b)} free" if free_b is not None else "")
        )
    return summary


def format_report(report: CheckReport, *, verbose: bool = False) -> str:
    """Plain-text report: findings with their fixes, then the facts, then the verdict."""
    lines: list[str] = []
    labels = {"error": "ERROR  ", "warning": "WARNING", "note": "note   "}
    for f in report.findings:
        lines.append(f"{labels[f.severity]} [{f.code}] {f.message}")
        if f.fix:
            lines.append(f"        fix: {f.fix}")
    summary = fact_lines(report)
    if summary:
        if lines:
            lines.append("")
        lines.extend(summary)
    n_e, n_w, n_n = len(report.errors), len(report.warnings), len(report.notes)
    verdict = {0: "OK", 1: "WARNINGS", 2: "ERRORS"}[report.exit_code]
    lines.append("")
    lines.append(f"{verdict}: {n_e} error(s), {n_w} warning(s), {n_n} note(s) (exit {report.exit_code})")
    return "\n".join(lines)
