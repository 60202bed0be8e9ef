"""Rules about the command line itself: script, options, base model, SDXL specifics.

Each rule reads and extends a :class:`~sdxl_tui.planning.checkctx.Check`; the table of rules
(and the codes each can report) is :data:`sdxl_tui.planning.rules.RULES`.
"""

from __future__ import annotations

import os
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.cmdline import python_command_from_prefix
from sdxl_tui.formats.optiontable import KNOWN_SCRIPTS, SD1_SCRIPT, SDXL_SCRIPT, load_packaged_table
from sdxl_tui.formats.simargs import split_args
from sdxl_tui.planning.basemodel import ModelKind, detect_model_kind, looks_like_hub_id, name_suggests_sdxl
from sdxl_tui.planning.checkctx import Check, flatten_config, is_simulator, resolve_path
from sdxl_tui.planning.findings import Finding
from sdxl_tui.planning.helptable import load_table_from_checkout
from sdxl_tui.planning.options import check_config_value, resolve_argv


def check_script(ctx: Check) -> None:
    """Which trainer script runs, and so which option table the options are checked against."""
    add, inp = ctx.add, ctx.inp
    script_name = os.path.basename(inp.script) if inp.script else SDXL_SCRIPT
    if inp.script is None and not is_simulator(inp.prefix):
        add(Finding("note", "script-assumed", f"no trainer script in the command; assuming {SDXL_SCRIPT}",
                    "put the script name before the options", None))
    elif script_name not in KNOWN_SCRIPTS:
        add(Finding("warning", "script-unknown",
                    f"{script_name} is not one of the LoRA trainers sdxl-tui knows ({', '.join(KNOWN_SCRIPTS)}); "
                    "options are checked against sdxl_train_network.py's",
                    "use sdxl_train_network.py for an SDXL LoRA", inp.script))
    table_script = script_name if script_name in KNOWN_SCRIPTS else SDXL_SCRIPT
    if ctx.table is None:
        if ctx.sd_scripts_dir is not None:
            python = python_command_from_prefix(inp.prefix)
            ctx.table, why = load_table_from_checkout(ctx.sd_scripts_dir, table_script, python=python)
            if why:
                add(Finding("note", "options-fallback", why, "pass --sd-scripts DIR pointing at a working checkout",
                            str(ctx.sd_scripts_dir)))
        else:
            ctx.table = load_packaged_table(table_script)
    ctx.script_name = script_name
    ctx.sdxl_script = script_name == SDXL_SCRIPT
    ctx.facts["script"] = script_name
    ctx.facts["options_source"] = ctx.table.source


def _config_file(ctx: Check, path_text: str) -> dict[str, Any]:
    """The ``--config_file`` values that are options of the script, with the right types."""
    table, add = ctx.options_table, ctx.add
    cfg_path = resolve_path(path_text, ctx.inp.cwd)
    assert cfg_path is not None
    if cfg_path.suffix != ".toml":
        cfg_path = cfg_path.with_name(cfg_path.name + ".toml")
    ctx.facts["config_file"] = str(cfg_path)
    try:
        cfg = flatten_config(toml.load(cfg_path))
    except FileNotFoundError:
        add(Finding("error", "config-file-missing", f"--config_file {cfg_path} not found; sd-scripts exits 1",
                    "fix the path (sd-scripts appends .toml when it is missing)", str(cfg_path)))
        return {}
    except (OSError, toml.TOMLDecodeError) as exc:
        add(Finding("error", "config-file-invalid", f"{cfg_path} does not parse: {exc}",
                    "fix the TOML syntax", str(cfg_path)))
        return {}
    good: dict[str, Any] = {}
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
        good[key] = value
    return good


def check_options(ctx: Check) -> None:
    """The options as argparse resolves them, with ``--config_file`` merged (the command line wins)."""
    options = list(ctx.inp.options)
    if is_simulator(ctx.inp.prefix):
        # The simulator takes its own --sim-* knobs beside the trainer's options; the
        # trainer's table must not call them unknown.
        try:
            _, options = split_args(options)
        except SystemExit:
            ctx.add(Finding("error", "bad-value", "a --sim-* option has a bad value",
                            "see `sdxl-tui simulate --help`", None))
            options = [o for o in options if not o.startswith("--sim-")]
    parsed = resolve_argv(options, ctx.options_table)
    for p in parsed.problems:
        ctx.add(Finding(p.severity, p.code, p.message, p.fix, p.option))
    ctx.values = ctx.options_table.defaults()
    cfg_path = parsed.values.get("config_file")
    from_file = _config_file(ctx, str(cfg_path)) if cfg_path else {}
    ctx.values.update(from_file)
    ctx.values.update(parsed.values)
    ctx.explicit = set(from_file) | set(parsed.values)


def check_simulated(ctx: Check) -> None:
    """A launch of sdxl-tui's simulated trainer: only its options are checked."""
    if is_simulator(ctx.inp.prefix):
        ctx.add(Finding("note", "simulated-trainer",
                        "the prefix runs sdxl-tui's simulated trainer: only the options are checked "
                        "(no base model, dataset, environment, VRAM or disk checks)", "", None))
        ctx.facts["simulated"] = True
        ctx.simulated = True


def check_base_model(ctx: Check) -> None:
    """The base model: present, what kind it is, and the right trainer script for it."""
    base = ctx.values.get("pretrained_model_name_or_path")
    kind = ModelKind("unknown", "not given")
    if not base:
        ctx.add(
            Finding(
                "error",
                "no-base-model",
                "no --pretrained_model_name_or_path",
                "give the SDXL base checkpoint, e.g. sd_xl_base_1.0.safetensors",
                None,
            )
        )
    else:
        kind = _base_model_kind(ctx, str(base))
        _script_for_kind(ctx, str(base), kind)
    ctx.sdxl = ctx.sdxl_script or kind.is_sdxl
    ctx.facts["sdxl"] = ctx.sdxl
    ctx.kind = kind


def _base_model_kind(ctx: Check, base: str) -> ModelKind:
    """What the base model is (from its header, or its name), with a finding for a wrong one."""
    add, sdxl_script = ctx.add, ctx.sdxl_script
    base_path = resolve_path(base, ctx.inp.cwd)
    kind = detect_model_kind(base_path if base_path is not None else base)
    if kind.kind == "missing" and looks_like_hub_id(base):
        kind = ModelKind("hub", "not a local path; a Hugging Face model id that sd-scripts downloads")
    ctx.facts["base_model"] = base
    ctx.facts["base_model_kind"] = kind.kind
    if kind.kind == "missing":
        add(
            Finding(
                "error",
                "base-model-missing",
                f"base model {base_path} does not exist",
                "fix --pretrained_model_name_or_path",
                base,
            )
        )
        if not sdxl_script and name_suggests_sdxl(base):
            kind = ModelKind("sdxl", "the file name says SDXL (file not found)")
    elif kind.kind == "lora":
        add(
            Finding(
                "error",
                "base-model-is-lora",
                f"{base} is a LoRA ({kind.evidence})",
                "give the SDXL base checkpoint as --pretrained_model_name_or_path; a LoRA to continue "
                "from goes in --network_weights",
                base,
            )
        )
    elif kind.kind == "sdxl-refiner":
        add(
            Finding(
                "error",
                "base-model-refiner",
                f"{base} is the SDXL refiner ({kind.evidence})",
                "train on sd_xl_base_1.0.safetensors",
                base,
            )
        )
    elif kind.kind in ("unknown", "hub"):
        add(
            Finding(
                "note",
                "base-model-unknown",
                f"cannot tell what {base} is: {kind.evidence}",
                "make sure it is an SDXL base model",
                base,
            )
        )
        if kind.kind == "hub" and not sdxl_script and name_suggests_sdxl(base):
            kind = ModelKind("sdxl", "the model id says SDXL")
    return kind


def _script_for_kind(ctx: Check, base: str, kind: ModelKind) -> None:
    """An SDXL model needs sdxl_train_network.py, an SD 1.x/2.x one train_network.py."""
    script_name, script = ctx.script_name, ctx.inp.script
    if kind.kind == "sdxl" and not ctx.sdxl_script:
        ctx.add(
            Finding(
                "error",
                "wrong-script",
                f"{base} is an SDXL checkpoint ({kind.evidence}) but {script_name} trains SD 1.x/2.x; "
                "it fails while loading with `size mismatch for ...`",
                f"run {SDXL_SCRIPT} instead of {script_name}",
                script,
            )
        )
    elif kind.is_sd12 and ctx.sdxl_script:
        ctx.add(
            Finding(
                "error",
                "wrong-script",
                f"{base} is an SD {kind.kind[2:]}.x checkpoint ({kind.evidence}) but {script_name} trains SDXL",
                f"use an SDXL base model, or run {SD1_SCRIPT} for SD {kind.kind[2:]}.x",
                script,
            )
        )


def check_sdxl_options(ctx: Check) -> None:
    """Options SDXL ignores, rejects or needs (``sdxl_train_network.py``'s asserts and warnings)."""
    values, sdxl = ctx.values, ctx.sdxl
    if sdxl and values.get("v2"):
        ctx.add(
            Finding(
                "error",
                "v2-sdxl",
                "--v2 is for SD 2.x; SDXL training asserts `v2 cannot be enabled in SDXL training`",
                "remove --v2",
                "--v2",
            )
        )
    if sdxl and ctx.given("clip_skip"):
        ctx.add(
            Finding(
                "warning",
                "clip-skip-sdxl",
                f"--clip_skip {values.get('clip_skip')} has no effect on SDXL (sd-scripts warns "
                "`clip_skip will be unexpected`) but is written into the LoRA metadata",
                "remove --clip_skip",
                "--clip_skip",
            )
        )
    if sdxl and values.get("mixed_precision") == "fp16" and not values.get("no_half_vae"):
        _fp16_vae(ctx, str(values.get("vae") or ""))
    if (
        sdxl
        and (values.get("cache_text_encoder_outputs") or values.get("cache_text_encoder_outputs_to_disk"))
        and not values.get("network_train_unet_only")
    ):
        ctx.add(
            Finding(
                "error",
                "cache-te-needs-unet-only",
                "--cache_text_encoder_outputs needs --network_train_unet_only (sd-scripts asserts "
                "`network for Text Encoder cannot be trained with caching Text Encoder outputs`)",
                "add --network_train_unet_only, or drop --cache_text_encoder_outputs",
                "--cache_text_encoder_outputs",
            )
        )
    ctx.te_lr = values.get("text_encoder_lr")
    if sdxl:
        _one_text_encoder_lr(ctx, ctx.te_lr)


def _fp16_vae(ctx: Check, vae: str) -> None:
    """``--mixed_precision fp16`` without ``--no_half_vae``: NaN latents unless the VAE is fp16-fixed."""
    if "fp16" in vae.lower():
        ctx.add(
            Finding(
                "note",
                "fp16-vae",
                f"fp16 VAE {vae} is used without --no_half_vae",
                "keep it only if it is the fp16-fixed SDXL VAE",
                "--no_half_vae",
            )
        )
    else:
        ctx.add(
            Finding(
                "warning",
                "fp16-vae",
                "--mixed_precision fp16 without --no_half_vae: the SDXL VAE runs in fp16 while caching "
                "latents and can produce NaNs, which are cached silently and turn the loss to NaN",
                "add --no_half_vae (or use --mixed_precision bf16 on a GPU that supports it)",
                "--no_half_vae",
            )
        )


def _one_text_encoder_lr(ctx: Check, te_lr: Any) -> None:
    """networks.lora gives both SDXL text encoders one learning rate."""
    module = str(ctx.values.get("network_module") or "")
    if te_lr in (None, []) or module != "networks.lora" or ctx.values.get("network_train_unet_only"):
        return
    first = te_lr[0] if isinstance(te_lr, list) else te_lr
    extra = " (the other values are ignored)" if isinstance(te_lr, list) and len(te_lr) > 1 else ""
    ctx.add(
        Finding(
            "note",
            "text-encoder-lr-single",
            f"--text_encoder_lr {first} is used for both SDXL text encoders{extra}: networks.lora has one "
            "`textencoder` parameter group; --text_encoder_lr1/--text_encoder_lr2 do not exist",
            "nothing to do unless you wanted different rates per encoder (that needs another network module)",
            "--text_encoder_lr",
        )
    )


def check_redundant(ctx: Check) -> None:
    """Options implied by others: harmless, noted."""
    add = ctx.add
    given = ctx.given
    values, te_lr = ctx.values, ctx.te_lr
    if given("cache_latents") and values.get("cache_latents_to_disk"):
        add(
            Finding(
                "note",
                "redundant-option",
                "--cache_latents is implied by --cache_latents_to_disk",
                "drop --cache_latents (harmless)",
                "--cache_latents",
            )
        )
    if given("save_model_as") and values.get("save_model_as") == "safetensors":
        add(
            Finding(
                "note",
                "redundant-option",
                "--save_model_as safetensors is the default",
                "drop it (harmless)",
                "--save_model_as",
            )
        )
    if (
        given("learning_rate")
        and values.get("unet_lr") is not None
        and (te_lr not in (None, []) or values.get("network_train_unet_only"))
    ):
        add(
            Finding(
                "note",
                "redundant-option",
                "--learning_rate is only a fallback when --unet_lr and --text_encoder_lr are set",
                "drop --learning_rate (harmless)",
                "--learning_rate",
            )
        )


def check_required(ctx: Check) -> None:
    """What every LoRA run needs: a network module, an output folder, a logging folder."""
    add = ctx.add
    values, inp, out_dir = ctx.values, ctx.inp, ctx.out_dir
    if not values.get("network_module"):
        add(
            Finding(
                "error",
                "no-network-module",
                "no --network_module; train_network cannot import a network",
                "add --network_module networks.lora",
                None,
            )
        )
    out_dir = resolve_path(values.get("output_dir"), inp.cwd)
    if out_dir is None:
        add(Finding("error", "no-output-dir", "no --output_dir; the first save fails", "add --output_dir DIR", None))
    if values.get("log_with") in ("tensorboard", "all") and not values.get("logging_dir"):
        add(
            Finding(
                "error",
                "logging-dir-required",
                f"--log_with {values.get('log_with')} without --logging_dir raises `logging_dir is required`",
                "add --logging_dir OUTPUT_DIR/logs",
                "--logging_dir",
            )
        )
    ctx.out_dir = out_dir
