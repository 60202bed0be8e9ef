"""The working state of one launch check, shared by the rules (see :mod:`sdxl_tui.planning.rules`).

Why a context object: the rules run in order and later ones use what earlier ones found (the
base model decides whether the run is SDXL, the dataset gives the batches that the step, time
and disk estimates need). The state lives here, typed, instead of in one long function's locals.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxl_tui.formats.cmdline import runs_simulator
from sdxl_tui.formats.optiontable import OptionTable
from sdxl_tui.model import GpuStatus
from sdxl_tui.planning.basemodel import ModelKind
from sdxl_tui.planning.dataset import DatasetCheck
from sdxl_tui.planning.environment import Environment
from sdxl_tui.planning.findings import Finding
from sdxl_tui.sources.gpu import GpuMonitor, sample_gpus

__all__ = ["BUCKET_OPTIONS", "Check", "CheckInput", "GpuArg"]

BUCKET_OPTIONS = ("bucket_reso_steps", "bucket_no_upscale", "min_bucket_reso", "max_bucket_reso")


@dataclass(frozen=True)
class CheckInput:
    """A launch to check: the prefix, the script token, the trainer's options, where it runs."""

    prefix: Sequence[str]
    script: str | None
    options: Sequence[str]
    cwd: Path
    env: Mapping[str, str]


@dataclass
class Check:
    """What the rules know so far about one launch, and what they found."""

    inp: CheckInput
    sd_scripts_dir: str | os.PathLike[str] | None
    environment: Environment | None
    inspect_environment: bool
    gpu: GpuArg
    disk_usage: Callable[[str], Any]
    table: OptionTable | None = None
    script_name: str = ""
    sdxl_script: bool = True
    values: dict[str, Any] = field(default_factory=dict)  # effective option values by dest
    explicit: set[str] = field(default_factory=set)  # dests set on the command line or in --config_file
    simulated: bool = False
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    sdxl: bool = False
    kind: ModelKind = field(default_factory=lambda: ModelKind("unknown", "not given"))
    te_lr: Any = None
    out_dir: Path | None = None
    ds: DatasetCheck | None = None
    need: dict[str, str] = field(default_factory=dict)
    batch_size: int = 1
    accum: int = 1
    resolution: tuple[int, int] = (1024, 1024)
    bucketing: bool = False
    batches: int = 0
    images: int = 0
    epochs: int = 0
    dim: int = 4
    unet_only: bool = False
    te_only: bool = False

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def given(self, dest: str) -> bool:
        """Was the option set explicitly (not just its default)?"""
        return dest in self.explicit

    @property
    def options_table(self) -> OptionTable:
        assert self.table is not None, "the option table is chosen by the first rule"
        return self.table


def flatten_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """sd-scripts' ``read_config_from_file``: tables flattened one level, scalars kept."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                flat[k] = v
        else:
            flat[key] = value
    return flat


def nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def resolve_path(path: str | None, cwd: Path) -> Path | None:
    if not path:
        return None
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else cwd / p


#: What a check is told about GPUs: a status, a monitor to sample, None (probe NVML) or False.
GpuArg = GpuStatus | GpuMonitor | bool | None


def gpu_status(gpu: GpuArg) -> GpuStatus | None:
    """The GPUs now (a monitor or NVML is sampled once); None when told not to look."""
    if isinstance(gpu, GpuStatus):
        return gpu
    if gpu is False or gpu is True:
        return None if gpu is False else gpu_status(None)
    return sample_gpus() if gpu is None else gpu.sample()


def required_modules(values: Mapping[str, Any]) -> dict[str, str]:
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


def is_simulator(prefix: Sequence[str]) -> bool:
    """``python -m sdxl_tui simulate`` / ``sdxl-tui simulate``: a test or demo launch."""
    return runs_simulator(prefix)
