"""`sdxl-tui check`: check a training launch against the real trainer's options and rules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DESCRIPTION = """\
Check an sd-scripts LoRA launch before it runs, and say how to fix each problem.

What it takes:
  sdxl-tui check RUN_DIR | sdxl-tui.toml     a launch config (or the run folder holding one)
  sdxl-tui check CONFIG.toml                 an sd-scripts --config_file TOML (and its dataset TOML)
  sdxl-tui check DATASET.toml                a dataset TOML alone (relative folders: from --cwd,
                                             else --sd-scripts, else the TOML's folder)
  sdxl-tui check -- python train_network.py --dataset_config ds.toml ...
                                             a raw command line, exactly as you would run it

It resolves the options the way sd-scripts' argparse does (unique prefixes, --opt=value,
choices, types), reads the base model's safetensors header (without loading it) to match it
to the script, validates the dataset TOML against sd-scripts' schema and looks at the image
and caption files, asks the trainer's Python which modules it can import, and estimates
steps, time, VRAM and disk. Options come from sd-scripts v0.10.1's own parsers, or from your
checkout's --help when it is known (launch config sd_scripts_dir, or --sd-scripts DIR).
"""

EPILOG = """\
severities:
  error    the run would fail (at start, or hours later)
  warning  it would run, but not as meant
  note     worth knowing; nothing to fix

rules (codes as printed):
  wrong-script              SDXL checkpoint given to train_network.py (or SD1.x/2.x to sdxl_train_network.py)  error
  unknown-option            an option the script does not have, with did-you-mean (--batch_size,
                            --lowvram, --medvram, --text_encoder_lr1/2 ...)                              error
  ambiguous-option, bad-value, missing-value, flag-with-value, stray-argument   argparse would reject  error
  repeated-option           an option given twice (the last wins)                                     warning
  config-key-unknown        --config_file key that is no option (sd-scripts ignores it silently)       warning
  config-value-type         --config_file value of the wrong type/choice (no argparse conversion)      error
  config-file-missing, config-file-invalid, dataset-config-missing, dataset-config-invalid             error
  clip-skip-sdxl            --clip_skip does nothing on SDXL                                          warning
  v2-sdxl                   --v2 with SDXL (sd-scripts asserts)                                       error
  fp16-vae                  --mixed_precision fp16 without --no_half_vae (NaN latents -> NaN loss)    warning
  bucket-without-bucketing  bucket options while bucketing is off                                     warning
  cli-fallback-ignored      a command-line dataset option the dataset TOML overrides                  note
  option-ignored            --train_data_dir/--reg_data_dir/--in_json next to --dataset_config        warning
  dataset-key-rejected      a dataset TOML key sd-scripts rejects ("extra keys not allowed")          error
  dataset-key-type, dataset-empty, dataset-no-image-dir, dataset-mixed-modes                          error
  dataset-no-resolution     no resolution in the dataset TOML nor --resolution                        error
  dataset-resolution        SDXL trained far from 1024x1024                                           warning
  bucket-steps, bucket-range  bucket_reso_steps not a multiple of 32 (SDXL) / resolution outside buckets  error
  dataset-folder-missing, dataset-no-images                                                           error
  dataset-captions-missing  images without caption files (caption_extension defaults to .caption)     warning
  base-model-missing, no-base-model, base-model-is-lora, base-model-refiner                           error
  missing-module            bitsandbytes (8-bit optimizers), xformers, tensorboard... not importable  error
  environment-unknown       the trainer's Python could not be asked                                   note
  cache-te-needs-unet-only  --cache_text_encoder_outputs without --network_train_unet_only             error
  logging-dir-required, no-output-dir, no-network-module, no-dataset, script-missing                  error
  disk-space                checkpoints (and states) do not fit / nearly fill the disk                error/warning
  vram                      estimated peak VRAM above what the GPU has free                           warning
  gpu-unknown               no NVML: the VRAM estimate is shown, not compared                          note
  warmup-too-long           --lr_warmup_steps not below the total steps                              warning
  base-model-unknown        the base model's kind cannot be read (not safetensors, hub id)            note
  text-encoder-lr-single, redundant-option, abbreviated-option, options-fallback, script-assumed,
  steps-by-max-train-steps, no-sd-scripts-dir, simulated-trainer                                       note
  script-unknown            a script other than (sdxl_)train_network.py                               warning
  slurm-no-sbatch           backend = "slurm" but sbatch is not on PATH (not a login node?)          error
  slurm-partition-unknown   [slurm] partition that sinfo does not list                                error
  slurm-time-over-limit     [slurm] time above the partition's MaxTime (sbatch refuses)               error
  slurm-partition-down      the partition is not up (jobs stay pending)                              warning
  slurm-no-gres             no [slurm] gres: the job may get no GPU                                   warning
  slurm-no-time             no [slurm] time: the partition's default limit applies                    note
  ([slurm] time, gres and mem syntax errors stop the launch config from loading: exit 2)

exit status:
  0  clean (notes only)
  1  warnings, no errors
  2  errors (or bad usage: unreadable input)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sd-scripts", metavar="DIR", dest="sd_scripts",
                        help="your sd-scripts checkout: use its own option list (from its --help) and run there")
    parser.add_argument("--script", default=None, metavar="NAME",
                        help="trainer for an sd-scripts config TOML (default: sdxl_train_network.py)")
    parser.add_argument("--cwd", metavar="DIR", help="working directory for relative paths of a raw command line "
                        "(default: --sd-scripts DIR, else the current directory)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-env", action="store_true",
                        help="do not run the trainer's Python to see which modules it can import")
    parser.add_argument("--no-gpu", action="store_true", help="do not ask NVML for the GPU's free memory")
    parser.add_argument("--gpu-free", type=float, metavar="GB",
                        help="free GPU memory to compare the VRAM estimate with (instead of NVML)")
    parser.add_argument("target", nargs="?", metavar="TARGET",
                        help="launch config, run folder, or sd-scripts config TOML; or `-- COMMAND...`")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _gpu_arg(args: argparse.Namespace) -> object:
    if args.gpu_free is not None:
        from sdxl_tui.model import GpuSample, GpuStatus

        total = int(args.gpu_free * 1024**3)
        return GpuStatus(available=True, gpus=(GpuSample(index=0, name="GPU (--gpu-free)", memory_total=total,
                                                          memory_used=0),))
    return False if args.no_gpu else None


def _toml_kind(path: Path) -> str:
    """"launch" (sdxl-tui.toml), "dataset" (a dataset TOML) or "config" (an sd-scripts config)."""
    from sdxl_tui.formats import toml

    try:
        data = toml.load(path)
    except (OSError, toml.TOMLDecodeError):
        return "config"
    if isinstance(data.get("launch"), dict):
        return "launch"
    if isinstance(data.get("datasets"), list):
        return "dataset"
    return "config"


def _reparse_trailing(args: argparse.Namespace, extra: list[str]) -> bool:
    """Options written after TARGET (``check x.toml --json``): parse them as ours if they all are."""
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    try:
        ns, unknown = p.parse_known_args(extra)
    except SystemExit:
        return False
    if unknown or ns.target is not None or ns.command:
        return False
    for key, value in vars(ns).items():
        if key in ("target", "command"):
            continue
        if value not in (None, False):
            setattr(args, key, value)
    return True


def run(args: argparse.Namespace) -> int:
    tokens = ([args.target] if args.target else []) + list(args.command or [])
    if tokens and tokens[0] == "--":
        tokens = tokens[1:]
    if not tokens:
        print("sdxl-tui check: give a launch config, a run folder, an sd-scripts config TOML, "
              "or `-- COMMAND...` (see --help)", file=sys.stderr)
        return 2

    from sdxl_tui.planning.check import check_argv, check_config_file, check_launch, format_report
    from sdxl_tui.planning.environment import UnknownEnvironment

    first = Path(os.path.expanduser(tokens[0]))
    file_mode = first.exists() and (first.is_dir() or first.suffix.lower() == ".toml")
    if file_mode and len(tokens) > 1 and not _reparse_trailing(args, tokens[1:]):
        print(f"sdxl-tui check: unexpected arguments after {tokens[0]}: {' '.join(tokens[1:])} "
              "(a raw command line goes after `--`)", file=sys.stderr)
        return 2
    environment = UnknownEnvironment("not inspected (--no-env)") if args.no_env else None
    gpu = _gpu_arg(args)
    try:
        if file_mode:
            path = first
            if path.is_dir():
                path = path / "sdxl-tui.toml"
                if not path.is_file():
                    print(f"sdxl-tui check: {first} holds no sdxl-tui.toml; give the launch config or "
                          "the sd-scripts config TOML", file=sys.stderr)
                    return 2
            kind = _toml_kind(path)
            if kind == "dataset":
                from sdxl_tui.planning.check import check_dataset_config

                report = check_dataset_config(path, sdxl=(args.script or "sdxl_train_network.py").startswith("sdxl"),
                                              cwd=args.cwd or args.sd_scripts)
            elif kind == "launch":
                from sdxl_tui.formats.launch_config import LaunchConfigError, load_launch_config

                try:
                    launch = load_launch_config(path)
                except LaunchConfigError as exc:
                    print(f"sdxl-tui check: {exc}", file=sys.stderr)
                    return 2
                report = check_launch(launch, sd_scripts_dir=args.sd_scripts, environment=environment, gpu=gpu)
            else:
                report = check_config_file(path, script=args.script or "sdxl_train_network.py",
                                           environment=environment, gpu=gpu, sd_scripts_dir=args.sd_scripts,
                                           cwd=args.cwd)
        else:
            argv = tokens
            if args.script and not any(t.endswith(".py") for t in argv):
                argv = [args.script, *argv]
            report = check_argv(argv, environment=environment, gpu=gpu, sd_scripts_dir=args.sd_scripts,
                                cwd=args.cwd)
    except OSError as exc:
        print(f"sdxl-tui check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(format_report(report))
    return report.exit_code
