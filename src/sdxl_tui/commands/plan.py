"""`sdxl-tui plan`: turn the SD1.5 optimisation's best trial into a checked SDXL launch."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdxl_tui.planning.plan import Plan
    from sdxl_tui.planning.trials import Pick, Trial

DESCRIPTION = """\
Take the best trial of the SD1.5 optimisation, move its parameters to SDXL with the card's
rules, write the files a run needs, and check them.

Writes (into --write-to, default the --output-dir):
  <output-name>.toml          sd-scripts --config_file (keys are sd-scripts' argparse dest names)
  <output-name>_dataset.toml  the SDXL dataset config (--dataset_config)
  sdxl-tui.toml               sdxl-tui's launch config (for `sdxl-tui check` and `sdxl-tui start`)
and prints the table "SD1.5 value -> SDXL value, rule", then the check report of what it wrote.

Where the trials come from (--from):
  a trial's params.json, a trial folder, or an optimisation folder of trial_* folders.
  Parameters: params.json (sd-scripts names or lr/dim/alpha/optimizer/scheduler/grad_accum/
  epochs/batch_size, BEST_ prefix allowed; or {"params": {...}}).
  Results: numeric fields of result.json, results.json, metrics.json, score.json, trial.json
  (top level or under "metrics"), or score.txt / loss.txt; "state": "FAIL" skips a trial.
  Best: by the first of score, objective, value, final_loss, loss, avr_loss, val_loss that all
  scored trials record (it says which; --metric picks another). Fields named *loss* are
  minimised, others maximised (--minimize / --maximize override).
Or an Optuna study: --study NAME --storage URL (needs optuna installed).
"""

EPILOG = """\
rules (the card's):
  kept               network_dim, network_alpha, optimizer_type, lr_scheduler (+ num_cycles,
                     warmup), max_train_epochs, seed, other real sd-scripts options the trial tuned
  learning rate      -> unet_lr; text_encoder_lr = learning rate x 0.67 (one value, both encoders)
  dataset            resolution 1024, enable_bucket, bucket_reso_steps 64 (a multiple of 32),
                     min/max_bucket_reso 512/2048; subsets kept
  batch by VRAM      >= 16 GB: batch_size 4, accumulation kept; < 16 GB: batch_size 2 with
                     gradient_accumulation_steps 4 (the table shows the effective batch)
  always             sdxl_train_network.py, max_token_length 225, gradient_checkpointing,
                     xformers if the target environment imports it (else sdpa), a checkpoint every
                     2 epochs, cached latents (to disk), TensorBoard logging under OUTPUT/logs,
                     fp16 (bf16 if the trial used it) with no_half_vae under fp16, fp16 files
  dropped            clip_skip (SDXL ignores it), names that are no sd-scripts option

examples:
  sdxl-tui plan --from /mnt/.../luca/optimization_overnight \\
      --dataset configs/training/luca_human_dataset.toml \\
      --base-model /models/sd_xl_base_1.0.safetensors \\
      --output-dir /mnt/data/ai_data/models/lora/luca/sdxl_v1 --output-name luca_sdxl_v1 \\
      --sd-scripts ~/sd-scripts --prefix "conda run --no-capture-output -n kohya_ss python"
  sdxl-tui start /mnt/data/ai_data/models/lora/luca/sdxl_v1

exit status:
  0  files written and the check is clean (notes only)
  1  files written; the check has warnings
  2  bad input (no trials, no score, unreadable dataset, no --vram without a GPU) or the
     written launch has check errors
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("where the SD1.5 trials come from")
    src.add_argument("--from", dest="source", metavar="PATH",
                     help="params.json, a trial folder, or an optimisation folder of trial_* folders")
    src.add_argument("--study", metavar="NAME", help="Optuna study name (with --storage)")
    src.add_argument("--storage", metavar="URL", help="Optuna storage URL, e.g. sqlite:///optuna.db")
    src.add_argument("--metric", metavar="FIELD", help="result field that ranks the trials (default: see above)")
    way = src.add_mutually_exclusive_group()
    way.add_argument("--minimize", action="store_true", help="lower --metric is better")
    way.add_argument("--maximize", action="store_true", help="higher --metric is better")
    src.add_argument("--trial", metavar="NAME", help="use this trial (e.g. trial_0025) instead of the best")

    dst = parser.add_argument_group("the SDXL run")
    dst.add_argument("--dataset", metavar="PATH", help="the SD1.5 dataset TOML, or the image folder (required)")
    dst.add_argument(
        "--base-model", metavar="FILE", help="SDXL base checkpoint, e.g. sd_xl_base_1.0.safetensors (required)"
    )
    dst.add_argument("--output-dir", metavar="DIR", help="the run's --output_dir (required)")
    dst.add_argument(
        "--output-name", metavar="NAME", help="the run's --output_name (default: the output folder's name)"
    )
    dst.add_argument(
        "--vram",
        type=float,
        metavar="GB",
        help="GPU memory in GB that decides the batch size (default: read from NVML; required without a GPU)",
    )
    dst.add_argument("--sd-scripts", metavar="DIR", dest="sd_scripts", help="the sd-scripts checkout the run starts in")
    dst.add_argument(
        "--prefix",
        default="python",
        metavar="CMD",
        help='how to start Python in the training environment (default "python"), e.g. '
        '"conda run --no-capture-output -n kohya_ss python"',
    )
    dst.add_argument(
        "--attention",
        choices=("auto", "xformers", "sdpa"),
        default="auto",
        help="auto: xformers if the target environment imports it, else sdpa",
    )
    dst.add_argument("--write-to", metavar="DIR", help="where to write the three files (default: --output-dir)")
    dst.add_argument("--dry-run", action="store_true", help="print the table and the files, write nothing")
    dst.add_argument(
        "--no-env", action="store_true", help="do not run the target Python (attention -> sdpa unless given)"
    )
    dst.add_argument("--no-gpu", action="store_true", help="do not ask NVML (for the VRAM default and the check)")


def _err(msg: str) -> None:
    print(f"sdxl-tui plan: {msg}", file=sys.stderr)


def _vram_from_nvml() -> float | None:
    try:
        from sdxl_tui.sources.gpu import sample_gpus

        status = sample_gpus()
    except Exception:  # noqa: BLE001 - no driver is a normal state
        return None
    total = status.gpus[0].memory_total if status.gpus else None
    return round(total / 1e9, 1) if total else None


class _Usage(Exception):
    """A bad or missing argument: the message is printed and ``plan`` exits 2."""


def run(args: argparse.Namespace) -> int:
    from sdxl_tui.planning.plan import format_rows, make_plan
    from sdxl_tui.planning.trials import PlanError

    try:
        _required(args)
        trial, pick = _pick_trial(args)
        vram = _vram(args)
        prefix = shlex.split(args.prefix)
        output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
        output_name = args.output_name or os.path.basename(output_dir.rstrip(os.sep)) or "lora_sdxl"
        plan = make_plan(
            trial,
            dataset=args.dataset,
            base_model=os.path.abspath(os.path.expanduser(args.base_model)),
            output_dir=output_dir,
            output_name=output_name,
            vram_gb=vram,
            xformers_available=_xformers(args, prefix),
            sd_scripts_dir=os.path.abspath(os.path.expanduser(args.sd_scripts)) if args.sd_scripts else None,
            prefix=prefix,
            pick=pick if trial is pick.trial else None,
        )
    except (_Usage, PlanError) as exc:
        _err(str(exc))
        return 2
    print()
    print(format_rows(plan.rows))
    return _write_and_check(plan, args)


def _required(args: argparse.Namespace) -> None:
    missing = [
        name
        for name, value in (
            ("--dataset", args.dataset),
            ("--base-model", args.base_model),
            ("--output-dir", args.output_dir),
        )
        if not value
    ]
    if not args.source and not args.study:
        missing.insert(0, "--from (or --study/--storage)")
    if missing:
        raise _Usage("missing " + ", ".join(missing))


def _pick_trial(args: argparse.Namespace) -> tuple[Trial, Pick]:
    """The best trial (or the one ``--trial`` names), and how the best was picked."""
    from sdxl_tui.planning.trials import load_optuna_trials, load_trials, pick_best

    minimize = True if args.minimize else False if args.maximize else None
    if args.study:
        if not args.storage:
            raise _Usage("--study needs --storage URL")
        trials, study_min = load_optuna_trials(args.storage, args.study)
        if minimize is None:
            minimize = study_min
    else:
        trials = load_trials(args.source)
    pick = pick_best(trials, args.metric, minimize=minimize)
    trial = pick.trial
    if args.trial:
        chosen = [t for t in trials if t.name == args.trial or (t.number is not None and str(t.number) == args.trial)]
        if not chosen:
            raise _Usage(f"no trial {args.trial!r}; trials: {', '.join(t.name for t in trials)}")
        trial = chosen[0]
    print(pick.describe())
    if trial is not pick.trial:
        print(f"using {trial.name} as asked (--trial)")
    return trial, pick


def _vram(args: argparse.Namespace) -> float:
    vram: float | None = args.vram
    if vram is None and not args.no_gpu:
        vram = _vram_from_nvml()
        if vram is not None:
            print(f"VRAM: {vram:g} GB (GPU 0, from NVML)")
    if vram is None:
        raise _Usage("no GPU visible to read its memory from: give --vram GB (e.g. --vram 24)")
    return vram


def _xformers(args: argparse.Namespace, prefix: list[str]) -> bool | None:
    """Whether xformers imports in the trainer's environment (None: not asked)."""
    if args.attention == "xformers":
        return True
    if args.attention == "sdpa" or args.no_env:
        return False if args.attention == "sdpa" else None
    from sdxl_tui.planning.environment import environment_for_prefix

    env = environment_for_prefix(prefix, cwd=args.sd_scripts)
    return env.has_modules(["xformers"]).get("xformers")


def _write_and_check(plan: Plan, args: argparse.Namespace) -> int:
    """Write the three files (or show them on a dry run) and check the written launch."""
    from sdxl_tui.formats import toml
    from sdxl_tui.planning.check import check_launch, format_report
    from sdxl_tui.planning.environment import UnknownEnvironment
    from sdxl_tui.planning.plan import write_plan

    if args.dry_run:
        print(f"\n# {plan.output_name}.toml\n{toml.dumps(plan.config)}")
        print(f"# {plan.output_name}_dataset.toml\n{toml.dumps(plan.dataset)}")
        print("dry run: nothing written")
        return 0
    files = write_plan(plan, args.write_to)
    print()
    for kind, path in files.items():
        print(f"wrote {kind:<8} {path}")
    if not args.sd_scripts:
        print("note: no --sd-scripts: set sd_scripts_dir in sdxl-tui.toml before `sdxl-tui start`")
    report = check_launch(
        str(files["launch"]),
        gpu=False if args.no_gpu else None,
        environment=UnknownEnvironment("not inspected (--no-env)") if args.no_env else None,
    )
    print("\ncheck of the written launch:")
    print(format_report(report))
    return report.exit_code
