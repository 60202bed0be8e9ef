"""Check an sd-scripts LoRA launch before it runs: options, files, environment, resources.

Why: sd-scripts reveals most mistakes late: an unknown option at start, an SDXL checkpoint given to
``train_network.py`` after minutes of loading, a missing bitsandbytes after latent caching, a full
disk at the fifth checkpoint, a NaN loss from an fp16 VAE hours in (see sd-scripts'
``docs/sdxl_train_network.md``). Every check here reads only headers, folders and the option table,
so a launch is checked in milliseconds (plus one optional probe of the trainer's Python).

Entry points (agreed API): :func:`check_argv` (a raw command line), :func:`check_launch` (a
``LaunchConfig`` or the path of a ``sdxl-tui.toml``) and :func:`check_config_file` (an
sd-scripts ``--config_file`` TOML). All return a :class:`CheckReport`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.cmdline import split_command
from sdxl_tui.formats.launch_config import LaunchConfig, load_launch_config
from sdxl_tui.formats.optiontable import (
    SDXL_SCRIPT,
    OptionTable,
)
from sdxl_tui.humanize import format_bytes
from sdxl_tui.planning.checkctx import Check, CheckInput, GpuArg
from sdxl_tui.planning.dataset import validate_dataset_config
from sdxl_tui.planning.environment import (
    Environment,
    UnknownEnvironment,
    environment_for_prefix,
)
from sdxl_tui.planning.findings import Finding, exit_code_for
from sdxl_tui.planning.rules import run_rules

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


# ------------------------------------------------------------------------ the core


def _core(
    inp: CheckInput,
    *,
    table: OptionTable | None,
    sd_scripts_dir: str | os.PathLike[str] | None,
    environment: Environment | None,
    inspect_environment: bool,
    gpu: GpuArg,
    disk_usage: Callable[[str], Any],
) -> CheckReport:
    """Run the table of rules (:data:`sdxl_tui.planning.rules.RULES`) over one launch."""
    ctx = Check(inp, sd_scripts_dir, environment, inspect_environment, gpu, disk_usage, table=table)
    run_rules(ctx)
    ctx.findings.sort(key=lambda f: f.rank)
    return CheckReport(
        findings=tuple(ctx.findings),
        facts=MappingProxyType(ctx.facts),
        argv=(*inp.prefix, *([inp.script] if inp.script else []), *inp.options),
    )


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
        CheckInput(prefix, script, options, base, dict(env or {})),
        table=table,
        sd_scripts_dir=sd_scripts_dir,
        environment=environment,
        inspect_environment=inspect_environment,
        gpu=gpu,
        disk_usage=disk_usage,
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
    return check_argv(
        argv,
        environment=environment,
        gpu=gpu,
        sd_scripts_dir=sd_scripts_dir,
        cwd=cwd if cwd is not None else (sd_scripts_dir or p.resolve().parent),
        inspect_environment=inspect_environment,
        disk_usage=disk_usage,
    )


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
            {
                "resolution": list(d.resolution) if d.resolution else None,
                "batch_size": d.batch_size,
                "enable_bucket": d.enable_bucket,
                "images": [s.images for s in d.subsets],
            }
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
    prefix = list(launch.prefix)
    script_tok, options = _script_and_options(argv, prefix, launch.script)
    extra, use_checkout = _script_file(launch.script, checkout, cwd)
    if not options_from_checkout:
        use_checkout = None
    env = dict(launch.env)
    if launch.backend == "slurm":
        from sdxl_tui.planning.slurm_check import check_slurm

        extra += check_slurm(launch.slurm)
        if gpu is None:  # this machine's GPUs say nothing about the node's
            gpu = False
    if environment is None:
        environment = environment_for_prefix(prefix, cwd=str(cwd)) if prefix else UnknownEnvironment()
    report = _core(
        CheckInput(prefix, script_tok, options, cwd, env),
        table=None,
        sd_scripts_dir=use_checkout,
        environment=environment,
        inspect_environment=inspect_environment,
        gpu=gpu,
        disk_usage=disk_usage,
    )
    if not extra:
        return report
    findings = sorted((*report.findings, *extra), key=lambda f: f.rank)
    return CheckReport(tuple(findings), report.facts, report.argv)


def _script_and_options(argv: list[str], prefix: list[str], script: str | None) -> tuple[str | None, list[str]]:
    """The script token and the trainer's options of a launch's argv (its prefix taken off)."""
    rest = argv[len(prefix) :] if argv[: len(prefix)] == prefix else argv
    if script and rest and os.path.basename(rest[0]) == os.path.basename(script):
        return rest[0], rest[1:]
    if not script and argv[: len(prefix)] == prefix:
        return None, rest
    _, script_tok, options = split_command(argv)
    return script_tok, list(options)


def _script_file(
    script: str | None, checkout: str | os.PathLike[str] | None, cwd: Path
) -> tuple[list[Finding], str | os.PathLike[str] | None]:
    """(findings about the launch's script file, the checkout whose ``--help`` lists its options)."""
    if not script:
        return [], None
    script_file = Path(script) if os.path.isabs(script) else (Path(str(checkout)) / script if checkout else None)
    if script_file is None:
        return [
            Finding(
                "note",
                "no-sd-scripts-dir",
                "the launch config has no sd_scripts_dir, so the trainer would run in "
                f"{cwd} and the script's own option list cannot be read",
                'set sd_scripts_dir = "/path/to/sd-scripts" in [launch]',
                None,
            )
        ], None
    if not script_file.is_file():
        return [
            Finding(
                "error",
                "script-missing",
                f"trainer script {script_file} does not exist",
                "fix sd_scripts_dir / script in [launch]",
                str(script_file),
            )
        ], None
    return [], checkout or None


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
        summary.append(
            f"dataset: {facts.get('train_images_with_repeats')} images x repeats -> "
            f"{facts['batches_per_epoch']} batches per epoch"
        )
    if "time_estimate" in facts:
        summary.append(f"time: {facts['time_estimate']}")
    if "vram_estimate_gb" in facts:
        free = facts.get("gpu_free_gb")
        summary.append(
            f"VRAM: ~{facts['vram_estimate_gb']} GiB estimated"
            + (f", {free} GiB free on {facts.get('gpu')}" if free is not None else "")
        )
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
