"""Derive :class:`~sdxl_tui.model.Alert` values, each with a fix fitted to *this* run.

Why pure functions of facts: alerts must be reproducible from a snapshot's parts (tests feed
hand-built values, the UI diffs them by ``key``), and the fix text depends only on what the
run reports about itself: its batch size, accumulation, precision, flags (sd-scripts' docs and the
card's troubleshooting section, corrected where the card is wrong: ``--batch_size``,
``--lowvram`` and ``--medvram`` do not exist in sd-scripts).

``key`` is stable for one condition across refreshes (``"oom"``, ``"nan"``, ``"stall:1234"``,
``"gpu_heat:0"``) so a UI can ring the bell only for new keys.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from sdxl_tui.formats.cmdline import OptionValues
from sdxl_tui.formats.dataset import dataset_config_fix
from sdxl_tui.formats.optiontable import suggest
from sdxl_tui.humanize import format_bytes
from sdxl_tui.model import (
    Alert,
    Checkpoint,
    GpuStatus,
    ProcessTree,
    RunState,
    Severity,
    StateDir,
    TrainConfig,
)
from sdxl_tui.sources.endalerts import EndFacts, end_alerts

#: Throttle reasons that mean the GPU is slowed by heat or power hardware, not by idling.
_BAD_THROTTLE = ("thermal", "hw_slowdown", "hw_thermal", "hw_power_brake", "sw_thermal")


@dataclass(frozen=True, slots=True)
class AlertInputs:
    """Everything the alert rules look at; built by :class:`~sdxl_tui.sources.rundir.RunReader`."""

    state: RunState
    config: TrainConfig = field(default_factory=TrainConfig)
    options: OptionValues = field(default_factory=dict)
    script: str | None = None  # trainer script basename from the command line
    now: float = 0.0
    step: int | None = None
    total_steps: int | None = None
    seconds_per_step: float | None = None
    last_step_at: float | None = None
    stall_after: float | None = None  # seconds without a step that count as a stall
    oom: str | None = None  # the CUDA OOM line
    host_oom: str | None = None  # evidence of the kernel OOM killer
    traceback: str | None = None  # the exception line
    keyboard_interrupt: bool = False
    nan_step: int | None = None
    unrecognized_args: tuple[str, ...] = ()
    exit_code: int | None = None
    exit_signal: int | None = None
    process: ProcessTree | None = None
    process_known: bool = True  # False with --no-procs
    checkpoints: tuple[Checkpoint, ...] = ()
    states: tuple[StateDir, ...] = ()
    remaining_saves: int = 0
    state_dir_size: int | None = None  # bytes of the newest complete -state dir, when measured
    disk_free: int | None = None
    gpu: GpuStatus = field(default_factory=lambda: GpuStatus(available=False))
    gpu_temp_warn: int = 85
    problems: tuple[str, ...] = ()
    log_name: str = "training.log"
    empty_image_dirs: tuple[str, ...] = ()  # LogFacts.empty_image_dirs
    state_reason: str = ""
    model_saved: bool = False
    resume: str | None = None  # sources/resume.py: how to go on


# --------------------------------------------------------------------------------------------
# helpers


def _flag(options: OptionValues, name: str) -> bool:
    value = options.get(name)
    return value is True or (isinstance(value, tuple) and value[:1] not in (("false",), ("False",)))


def _value(options: OptionValues, name: str) -> str | None:
    value = options.get(name)
    if isinstance(value, tuple) and value:
        return value[0]
    return None


def _batch_size(cfg: TrainConfig, options: OptionValues) -> int | None:
    if cfg.batch_size:
        return cfg.batch_size
    value = _value(options, "train_batch_size")
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _accum(cfg: TrainConfig, options: OptionValues) -> int:
    if cfg.gradient_accumulation_steps:
        return cfg.gradient_accumulation_steps
    value = _value(options, "gradient_accumulation_steps")
    try:
        return int(value) if value else 1
    except ValueError:
        return 1


def _attention(cfg: TrainConfig, options: OptionValues) -> str | None:
    if cfg.attention:
        return cfg.attention
    for name in ("xformers", "sdpa", "mem_eff_attn"):
        if _flag(options, name):
            return name
    return None


def _known(cfg_value: bool | None, options: OptionValues, name: str) -> bool:
    return bool(cfg_value) or _flag(options, name)


def _where_batch(options: OptionValues, size: int) -> str:
    if "dataset_config" in options:
        return f"batch_size = {size} in the dataset TOML ({_value(options, 'dataset_config')})"
    return f"--train_batch_size {size}"


# --------------------------------------------------------------------------------------------
# memory


def memory_fixes(cfg: TrainConfig, options: OptionValues, *, fragmentation: bool = False) -> list[str]:
    """The card's OOM remedies, fitted to this run and limited to options that exist.

    Why fitted: "batch 2 + accumulation 4" is only right for a run at batch 4 / accumulation 2;
    the rule behind it is "halve the batch, double the accumulation, keep the effective batch".
    """
    fixes: list[str] = []
    batch = _batch_size(cfg, options)
    accum = _accum(cfg, options)
    if batch and batch > 1:
        new_batch = max(1, batch // 2)
        new_accum = math.ceil(batch * accum / new_batch)
        fixes.append(
            f"set {_where_batch(options, new_batch)} and --gradient_accumulation_steps {new_accum} "
            f"(effective batch {batch * accum} -> {new_batch * new_accum}"
            f"{' unchanged' if new_batch * new_accum == batch * accum else ''})"
        )
    if not _known(cfg.gradient_checkpointing, options, "gradient_checkpointing"):
        fixes.append("add --gradient_checkpointing (missing)")
    if _attention(cfg, options) is None:
        fixes.append("add --xformers (or --sdpa, built into PyTorch)")
    unet_only = _known(cfg.network_train_unet_only, options, "network_train_unet_only")
    if not unet_only:
        fixes.append(
            "train the U-Net only and cache the text encoders: "
            "--network_train_unet_only --cache_text_encoder_outputs"
        )
    elif not _known(cfg.cache_text_encoder_outputs, options, "cache_text_encoder_outputs"):
        fixes.append("add --cache_text_encoder_outputs (you already train the U-Net only)")
    if not (_flag(options, "cache_latents") or _flag(options, "cache_latents_to_disk")) and options:
        fixes.append("add --cache_latents (keeps the VAE off the GPU during training)")
    if not (_flag(options, "fp8_base") or _flag(options, "fp8_base_unet")) and batch in (None, 1):
        fixes.append("last resort: --fp8_base (fp8 base weights)")
    if fragmentation:
        fixes.append("set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the environment")
    return fixes


def oom_alert(inp: AlertInputs) -> Alert | None:
    """CUDA out-of-memory (``torch.OutOfMemoryError``): the PyTorch line, the card's remedies fitted."""
    if not inp.oom:
        return None
    frag = "reserved but unallocated" in inp.oom or "expandable_segments" in inp.oom
    fixes = memory_fixes(inp.config, inp.options, fragmentation=frag)
    fixes.append("(--lowvram / --medvram from the card do not exist in sd-scripts)")
    return Alert(
        kind="oom",
        severity=Severity.ERROR,
        message=f"CUDA out of memory{_at_step(inp.step)}: {_shorten(inp.oom)}",
        fix="; ".join(fixes),
        key="oom",
        step=inp.step,
        at=inp.now,
    )


def host_oom_alert(inp: AlertInputs) -> Alert | None:
    """Kernel OOM killer: SIGKILL with no Python output, or a killed DataLoader worker."""
    evidence = inp.host_oom
    if not evidence and inp.exit_signal == 9 and not inp.traceback:
        evidence = "the trainer was killed by SIGKILL (the kernel OOM killer does that)"
    if not evidence:
        return None
    workers = _value(inp.options, "max_data_loader_n_workers")
    fixes = []
    if workers and workers not in ("0", "1"):
        fixes.append(f"lower --max_data_loader_n_workers {workers} -> 2 (each worker holds a copy)")
    if not _flag(inp.options, "cache_latents_to_disk"):
        fixes.append("use --cache_latents_to_disk instead of holding latents in RAM")
    if not _flag(inp.options, "lowram"):
        fixes.append("add --lowram (load the model straight to VRAM)")
    fixes.append("check `dmesg | grep -i 'killed process'`")
    return Alert(
        kind="host_oom",
        severity=Severity.ERROR,
        message=f"host memory exhausted: {_shorten(evidence)}",
        fix="; ".join(fixes),
        key="host_oom",
        step=inp.step,
        at=inp.now,
    )


# --------------------------------------------------------------------------------------------
# NaN, crash, arguments


def nan_alert(inp: AlertInputs) -> Alert | None:
    """NaN loss: sd-scripts never checks the loss and carries on, ``avr_loss`` stays NaN for good."""
    if inp.nan_step is None:
        return None
    fixes = []
    precision = inp.config.mixed_precision or _value(inp.options, "mixed_precision")
    if precision == "fp16" and not _flag(inp.options, "no_half_vae"):
        fix = "add --no_half_vae (the SDXL VAE overflows in fp16 while caching latents) or use --mixed_precision bf16"
        if _flag(inp.options, "cache_latents_to_disk"):
            fix += "; delete the cached *_sdxl.npz latents so they are re-made"
        fixes.append(fix)
    lr = inp.config.unet_lr or inp.config.learning_rate
    if lr:
        fixes.append(f"lower the learning rate ({lr:g} -> {lr / 2:g})")
    before = [c for c in inp.checkpoints if c.complete and c.step is not None and c.step < inp.nan_step]
    if before:
        last = max(before, key=lambda c: c.step or 0)
        fixes.append(f"restart from {last.name} (step {last.step}, before the NaN) "
                     f"with --network_weights {shlex.quote(last.path)}")
    if inp.state.is_live:
        fixes.insert(0, "stop the run: every later step and checkpoint is NaN")
    return Alert(
        kind="nan",
        severity=Severity.ERROR,
        message=f"loss became NaN at step {inp.nan_step}",
        fix="; ".join(fixes) or None,
        key="nan",
        step=inp.nan_step,
        at=inp.now,
    )


#: Exception-line patterns -> a known fix.
_CRASH_FIXES: tuple[tuple[str, str], ...] = (
    ("size mismatch", "an SDXL checkpoint loaded by train_network.py: use sdxl_train_network.py"),
    ("No module named 'bitsandbytes'", "pip install bitsandbytes, or --optimizer_type AdamW"),
    ("No module named 'xformers'", "pip install xformers, or use --sdpa instead of --xformers"),
    ("No data found", "check the image folders in the dataset TOML (the parent of the N_name folders)"),
    ("logging_dir is required", "add --logging_dir DIR (needed with --log_with tensorboard)"),
    ("FileNotFoundError", "check the path named in the error"),
    ("No space left on device", "free disk space or lower how many checkpoints are kept (--save_last_n_epochs)"),
)


def crash_alert(inp: AlertInputs) -> Alert | None:
    """A Python exception ended the run (not OOM, not Ctrl-C): show its last line."""
    if not inp.traceback or inp.oom or inp.keyboard_interrupt or inp.host_oom:
        return None
    if inp.state.is_live and inp.state is not RunState.STALLED:
        severity = Severity.WARNING  # process still alive: maybe a worker, maybe exiting
    else:
        severity = Severity.ERROR
    fix = dataset_config_fix(inp.traceback)
    if fix is None and "No data found" in inp.traceback and inp.empty_image_dirs:
        named = ", ".join(shlex.quote(d) for d in inp.empty_image_dirs)
        fix = f"no images in image_dir {named} (missing or empty): fix image_dir in the dataset TOML"
    for pattern, text in _CRASH_FIXES:
        if fix is None and pattern in inp.traceback:
            fix = text
    if fix is None and inp.script == "train_network.py" and (inp.config.base_model_version or "").startswith("sdxl"):
        fix = _CRASH_FIXES[0][1]
    if fix is None:
        fix = f"read the traceback at the end of {inp.log_name}"
    exc_type = inp.traceback.split(":", 1)[0].strip()[:80]
    return Alert(
        kind="crash",
        severity=severity,
        message=f"crashed{_at_step(inp.step)}: {_shorten(inp.traceback)}",
        fix=fix,
        key=f"crash:{exc_type}",
        step=inp.step,
        at=inp.now,
    )


def bad_args_alert(inp: AlertInputs) -> Alert | None:
    """``error: unrecognized arguments: …`` at start (exit 2): name each option and its fix."""
    if not inp.unrecognized_args:
        return None
    bad = [a for a in inp.unrecognized_args if a.startswith("-")] or list(inp.unrecognized_args)
    parts = []
    for opt in bad:
        hint = suggest(opt, inp.script)
        parts.append(f"{opt}: {hint}" if hint else f"{opt}: remove it")
    return Alert(
        kind="bad_args",
        severity=Severity.ERROR,
        message="the trainer rejected its command line: unrecognized arguments: " + " ".join(inp.unrecognized_args),
        fix="; ".join(parts),
        key="bad_args",
        at=inp.now,
    )


# --------------------------------------------------------------------------------------------
# end of run, stall, disk, GPU, reader


def stall_alert(inp: AlertInputs) -> Alert | None:
    """The process lives but no step came for ``stall_factor`` times the usual step time."""
    if inp.state is not RunState.STALLED:
        return None
    since = None if inp.last_step_at is None else max(0.0, inp.now - inp.last_step_at)
    usual = f" (usual {inp.seconds_per_step:.1f} s/step)" if inp.seconds_per_step else ""
    pid = inp.process.pid if inp.process is not None else None
    message = f"no new step for {_minutes(since)}{usual}{_at_step(inp.step)}"
    if pid is not None:
        message += f" while PID {pid} is alive"
    fix = "check GPU utilisation and the log tail"
    if pid is not None:
        fix += f"; see where it hangs: py-spy dump --pid {pid}"
    fix += "; if it is stuck, stop it (sdxl-tui kill) and resume from the last checkpoint"
    return Alert(
        kind="stall",
        severity=Severity.WARNING,
        message=message,
        fix=fix,
        key=f"stall:{inp.step}",
        step=inp.step,
        at=inp.now,
    )


def disk_alert(inp: AlertInputs) -> Alert | None:
    """Disk forecast: remaining saves x latest checkpoint size (+ state dirs) against free space."""
    if inp.disk_free is None or inp.remaining_saves <= 0 or not inp.state.is_live:
        return None
    sized = [c for c in inp.checkpoints if c.complete and c.size > 0]
    if not sized:
        return None
    per_save = max(sized, key=lambda c: c.mtime).size
    state_size = 0
    if inp.config.save_state or _flag(inp.options, "save_state"):
        state_size = _state_size_guess(inp, per_save)
    need = inp.remaining_saves * (per_save + state_size)
    if need < inp.disk_free * 0.9:
        return None
    severity = Severity.ERROR if need > inp.disk_free else Severity.WARNING
    keep = max(1, int(inp.disk_free // max(1, per_save + state_size)) - 1)
    every = inp.config.save_every_n_epochs or _value(inp.options, "save_every_n_epochs")
    fix = f"free {format_bytes(need - inp.disk_free * 0.9)} or more"
    if every:
        fix += f", or keep only the last {keep} with --save_last_n_epochs {keep} (restart needed)"
    if state_size:
        fix += "; --save_last_n_epochs_state 1 keeps one resumable state"
    return Alert(
        kind="disk",
        severity=severity,
        message=(
            f"{inp.remaining_saves} more saves x {format_bytes(per_save + state_size)} = {format_bytes(need)} "
            f"needed, {format_bytes(inp.disk_free)} free"
        ),
        fix=fix,
        key="disk",
        at=inp.now,
    )


def _state_size_guess(inp: AlertInputs, per_save: int) -> int:
    """The newest ``-state`` dir's size, else a guess: weights + optimizer, about 3x the LoRA."""
    if inp.state_dir_size:
        return inp.state_dir_size
    return per_save * 3


def gpu_alerts(inp: AlertInputs) -> list[Alert]:
    """Temperature at or above ``alerts.gpu_temp_warn``; heat or power throttling."""
    out: list[Alert] = []
    if not inp.gpu.available:
        return out
    for g in inp.gpu.gpus:
        if g.temperature is not None and g.temperature >= inp.gpu_temp_warn:
            limit = f" (slowdown at {g.temperature_slowdown} C)" if g.temperature_slowdown else ""
            out.append(Alert(
                kind="gpu_heat",
                severity=Severity.WARNING,
                message=f"GPU {g.index} {g.name} at {g.temperature} C{limit}",
                fix="improve airflow/fan curve, or cap power: sudo nvidia-smi -i "
                f"{g.index} -pl {int((g.power_limit or 300) * 0.85)}",
                key=f"gpu_heat:{g.index}",
                at=inp.now,
            ))
        bad = [r for r in g.throttle_reasons if any(b in r.lower() for b in _BAD_THROTTLE)]
        if bad:
            out.append(Alert(
                kind="gpu_throttle",
                severity=Severity.WARNING,
                message=f"GPU {g.index} {g.name} is throttling: {', '.join(bad)}",
                fix="the step rate will drop: check cooling and power (nvidia-smi -q -d PERFORMANCE)",
                key=f"gpu_throttle:{g.index}",
                at=inp.now,
            ))
    return out


def reader_alerts(problems: Sequence[str], *, now: float = 0.0) -> list[Alert]:
    """Reader-level notes (skipped bad records, permission denied) as quiet alerts."""
    out = []
    for text in dict.fromkeys(problems):
        low = text.lower()
        sev = Severity.WARNING if ("permission" in low or "denied" in low) else Severity.INFO
        out.append(Alert(kind="reader", severity=sev, message=text, fix=None, key=f"reader:{text[:120]}", at=now))
    return out


def derive_alerts(inp: AlertInputs) -> tuple[Alert, ...]:
    """All alerts for one moment, most severe first (stable order within a severity)."""
    found: list[Alert] = []
    for rule in (bad_args_alert, oom_alert, host_oom_alert, crash_alert, nan_alert, stall_alert, disk_alert):
        alert = rule(inp)
        if alert is not None:
            found.append(alert)
    found.extend(end_alerts(EndFacts(
        state=inp.state, state_reason=inp.state_reason, now=inp.now, step=inp.step, checkpoints=inp.checkpoints,
        keyboard_interrupt=inp.keyboard_interrupt, exit_signal=inp.exit_signal, model_saved=inp.model_saved,
        resume=inp.resume, states=inp.states, total_epochs=inp.config.num_epochs)))
    found.extend(gpu_alerts(inp))
    found.extend(reader_alerts(inp.problems, now=inp.now))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    found.sort(key=lambda a: order[a.severity])
    return tuple(found)


# --------------------------------------------------------------------------------------------


def _at_step(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _shorten(text: str, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "a long time"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
