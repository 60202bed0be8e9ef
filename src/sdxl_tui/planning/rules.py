"""The table of launch-check rules: what runs, in order, and every code each can report.

Why a table: ``sdxl-tui check --help`` lists the rules from it (it used to be a hand-kept
list that drifted), the check runs it in order, and a test compares the codes here with the
codes the rules' code actually emits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sdxl_tui.planning.checkctx import Check
from sdxl_tui.planning.rules_launch import (
    check_base_model,
    check_options,
    check_redundant,
    check_required,
    check_script,
    check_sdxl_options,
    check_simulated,
)
from sdxl_tui.planning.rules_resources import check_dataset, check_disk, check_environment, check_steps, check_vram
from sdxl_tui.planning.slurm_check import RULES as SLURM_RULES

__all__ = ["RULES", "Code", "Rule", "all_codes", "rules_help", "run_rules"]


@dataclass(frozen=True, slots=True)
class Code:
    """One finding code a rule can report, as ``check --help`` lists it."""

    code: str
    severity: str  # "error" | "warning" | "note" | "error/warning"
    meaning: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A step of the check: its function, the codes it reports, and whether it applies to
    sdxl-tui's simulated trainer (only the option rules do)."""

    name: str
    check: Callable[[Check], None]
    codes: tuple[Code, ...]
    simulated_too: bool = False


def _c(code: str, severity: str, meaning: str) -> Code:
    return Code(code, severity, meaning)


RULES: tuple[Rule, ...] = (
    Rule(
        "script",
        check_script,
        (
            _c("script-assumed", "note", "no script in the command: sdxl_train_network.py assumed"),
            _c("script-unknown", "warning", "a script other than (sdxl_)train_network.py"),
            _c("options-fallback", "note", "the checkout's --help could not be read: the packaged option list is used"),
        ),
        simulated_too=True,
    ),
    Rule(
        "options",
        check_options,
        (
            _c(
                "unknown-option",
                "error",
                "an option the script does not have, with did-you-mean (--batch_size, "
                "--lowvram, --medvram, --text_encoder_lr1/2 ...)",
            ),
            _c("ambiguous-option", "error", "a prefix argparse cannot resolve"),
            _c("bad-value", "error", "a value of the wrong type or not among the choices"),
            _c("missing-value", "error", "an option without its value"),
            _c("flag-with-value", "error", "a flag given a value (--flag=x)"),
            _c("stray-argument", "error", "a token that belongs to no option"),
            _c("repeated-option", "warning", "an option given twice (the last wins)"),
            _c("abbreviated-option", "note", "an abbreviation argparse accepts"),
            _c("help", "note", "-h/--help prints help and exits"),
            _c("config-file-missing", "error", "--config_file not found"),
            _c("config-file-invalid", "error", "--config_file is not valid TOML"),
            _c("config-key-unknown", "warning", "--config_file key that is no option (sd-scripts ignores it silently)"),
            _c("config-value-type", "error", "--config_file value of the wrong type/choice (no argparse conversion)"),
        ),
        simulated_too=True,
    ),
    Rule(
        "simulated",
        check_simulated,
        (_c("simulated-trainer", "note", "sdxl-tui's simulated trainer: only its options are checked"),),
        simulated_too=True,
    ),
    Rule(
        "base model",
        check_base_model,
        (
            _c("no-base-model", "error", "no --pretrained_model_name_or_path"),
            _c("base-model-missing", "error", "the base model file does not exist"),
            _c("base-model-is-lora", "error", "a LoRA given as the base model"),
            _c("base-model-refiner", "error", "the SDXL refiner given as the base model"),
            _c("base-model-unknown", "note", "the base model's kind cannot be read (not safetensors, hub id)"),
            _c(
                "wrong-script",
                "error",
                "SDXL checkpoint given to train_network.py (or SD1.x/2.x to sdxl_train_network.py)",
            ),
        ),
    ),
    Rule(
        "SDXL",
        check_sdxl_options,
        (
            _c("v2-sdxl", "error", "--v2 with SDXL (sd-scripts asserts)"),
            _c("clip-skip-sdxl", "warning", "--clip_skip does nothing on SDXL"),
            _c("fp16-vae", "warning", "--mixed_precision fp16 without --no_half_vae (NaN latents -> NaN loss)"),
            _c("cache-te-needs-unet-only", "error", "--cache_text_encoder_outputs without --network_train_unet_only"),
            _c("text-encoder-lr-single", "note", "one --text_encoder_lr for both SDXL text encoders"),
        ),
    ),
    Rule("redundant", check_redundant, (_c("redundant-option", "note", "an option implied by another (harmless)"),)),
    Rule(
        "required",
        check_required,
        (
            _c("no-network-module", "error", "no --network_module"),
            _c("no-output-dir", "error", "no --output_dir"),
            _c("logging-dir-required", "error", "--log_with tensorboard without --logging_dir"),
        ),
    ),
    Rule(
        "dataset",
        check_dataset,
        (
            _c("no-dataset", "error", "neither --dataset_config nor --train_data_dir"),
            _c("option-ignored", "warning", "--train_data_dir/--reg_data_dir/--in_json next to --dataset_config"),
            _c("cli-fallback-ignored", "note", "a command-line dataset option the dataset TOML overrides"),
            _c("bucket-without-bucketing", "warning", "bucket options while bucketing is off"),
            _c("dataset-config-missing", "error", "the dataset TOML does not exist"),
            _c("dataset-config-invalid", "error", "the dataset TOML does not parse"),
            _c("dataset-key-rejected", "error", 'a dataset TOML key sd-scripts rejects ("extra keys not allowed")'),
            _c("dataset-key-type", "error", "a dataset TOML value of the wrong type"),
            _c("dataset-empty", "error", "no [[datasets]] or no subsets"),
            _c("dataset-no-image-dir", "error", "a subset without image_dir"),
            _c("dataset-mixed-modes", "error", "DreamBooth and fine-tuning subsets in one dataset"),
            _c("dataset-no-resolution", "error", "no resolution in the dataset TOML nor --resolution"),
            _c("dataset-resolution", "warning", "SDXL trained far from 1024x1024"),
            _c("bucket-steps", "error", "bucket_reso_steps not a multiple of 32 (SDXL)"),
            _c("bucket-range", "error", "the resolution outside min/max_bucket_reso"),
            _c("dataset-folder-missing", "error", "an image folder that does not exist"),
            _c("dataset-no-images", "error", "an image folder without images"),
            _c(
                "dataset-captions-missing",
                "warning",
                "images without caption files (caption_extension defaults to .caption)",
            ),
        ),
    ),
    Rule(
        "environment",
        check_environment,
        (
            _c("missing-module", "error", "bitsandbytes (8-bit optimizers), xformers, tensorboard... not importable"),
            _c("environment-unknown", "note", "the trainer's Python could not be asked"),
        ),
    ),
    Rule(
        "steps",
        check_steps,
        (
            _c("steps-by-max-train-steps", "note", "no --max_train_epochs: the run stops by --max_train_steps"),
            _c("warmup-too-long", "warning", "--lr_warmup_steps not below the total steps"),
        ),
    ),
    Rule(
        "disk",
        check_disk,
        (_c("disk-space", "error/warning", "checkpoints (and states) do not fit / nearly fill the disk"),),
    ),
    Rule(
        "VRAM",
        check_vram,
        (
            _c("vram", "warning", "estimated peak VRAM above what the GPU has free"),
            _c("gpu-unknown", "note", "no NVML: the VRAM estimate is shown, not compared"),
        ),
    ),
)

#: Codes of a launch config itself (``check_launch``), found before the rules run.
LAUNCH_CODES: tuple[Code, ...] = (
    _c("script-missing", "error", "the launch config's script does not exist"),
    _c("no-sd-scripts-dir", "note", "no sd_scripts_dir: the script's own option list cannot be read"),
)


#: Codes of a ``backend = "slurm"`` launch (``planning/slurm_check.py``, run by ``check_launch``).
SLURM_CODES: tuple[Code, ...] = tuple(_c(code, severity, meaning) for code, severity, meaning in SLURM_RULES)


def run_rules(ctx: Check) -> None:
    """Every rule in order (only the option rules for the simulated trainer)."""
    for rule in RULES:
        if ctx.simulated and not rule.simulated_too:
            continue
        rule.check(ctx)


def all_codes() -> tuple[Code, ...]:
    return tuple(c for rule in RULES for c in rule.codes) + LAUNCH_CODES + SLURM_CODES


def rules_help() -> str:
    """The rules section of ``sdxl-tui check --help``, from the table."""
    lines = ["rules (in the order they run; codes as printed):"]
    for rule in RULES:
        lines.append(f"  {rule.name}:")
        lines.extend(f"    {c.code:<26}{c.severity:<14}{c.meaning}" for c in rule.codes)
    lines.append("  launch config:")
    lines.extend(f"    {c.code:<26}{c.severity:<14}{c.meaning}" for c in LAUNCH_CODES)
    lines.append(
        "  Slurm (backend = \"slurm\"; time, gres and mem syntax errors stop the launch config loading: exit 2):"
    )
    lines.extend(f"    {c.code:<26}{c.severity:<14}{c.meaning}" for c in SLURM_CODES)
    return "\n".join(lines)
