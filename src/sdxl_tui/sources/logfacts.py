"""What a training log says, as facts, and the rules that read them from its messages.

Why separate from the line assembly in :mod:`sdxl_tui.sources.logparse`: joining RichHandler
records and tqdm redraws into lines is about the terminal format; knowing that ``saving
checkpoint: X`` is a save or ``CUDA out of memory`` a fault is about sd-scripts' messages
(``train_network.py``, ``library/train_util.py``), and those rules live here.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats.trainstate import SAVE_TRAIN_STATE
from sdxl_tui.model import LogLine, ScalarPoint, TrainConfig
from sdxl_tui.sources.launchlog import LaunchLines, LoggedLaunch
from sdxl_tui.sources.tqdm import TqdmBar, parse_number

__all__ = ["EXCEPTION_LINE", "LogFacts", "LogInterpreter", "SaveEvent", "StepPoints"]

#: The first line of a Python exception report (``ValueError: ...``).
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?::|$)")

_BATCH = re.compile(r"^\s*batch_size: (\d+)", re.MULTILINE)

_BLOCK_LABELS = {
    "num train images * repeats": "num_train_images",
    "num reg images": "num_reg_images",
    "num batches per epoch": "num_batches_per_epoch",
    "num epochs": "num_epochs",
    "batch size per device": "batch_size",
    "gradient accumulation steps": "gradient_accumulation_steps",
    "total optimization steps": "total_steps",
}

_BLOCK_VALUE = re.compile(r"(?:[:：]| =)\s*([0-9][0-9.,\s]*?)\s*$")

_EPOCH = re.compile(r"^epoch (\d+)/(\d+)\s*$")

_LORA = re.compile(r"create LoRA network\. base dim \(rank\): (\d+), alpha: ([\d.eE+-]+)")

_OPTIM = re.compile(r"^use (.+?) optimizer \|")

_OUTPUT_NAME = re.compile(r"^(?P<name>.+?)(?:-step\d{8}|-\d{6})?\.(?:safetensors|ckpt|pt)$")

_OVERRIDE = re.compile(r"^override steps\. steps for (\d+) epochs is .*?[:：]\s*(\d+)")

_REMOVE = re.compile(r"^removing old checkpoint: (.+?)\s*$")

_RESOLUTION = re.compile(r"resolution: \((\d+), (\d+)\)")

_SAMPLE = re.compile(r"generating sample images at step[^:]*:\s*(\d+)")

_SAVE = re.compile(r"^saving checkpoint: (.+?)\s*$")

_STATE_AT = re.compile(r"saving state at (epoch|step) (\d+)|saving last state")


_UNRECOGNIZED = re.compile(r"error: unrecognized arguments: (.*)$")


#: ``train_util.DreamBoothDataset.load_dreambooth_dir``: a subset folder that is not there, or holds no image
_EMPTY_DIR_RE = re.compile(r"^(?:not directory: (.+)|found directory (.+) contains 0 image files)$")

@dataclass(frozen=True, slots=True)
class SaveEvent:
    """A save the log announced."""

    kind: str  # "checkpoint" | "state" | "removed" | "removed_state"
    path: str | None
    step: int | None  # the steps bar's count when the line appeared
    epoch: int | None

@dataclass(frozen=True, slots=True)
class LogFacts:
    """Everything the log says, as of the segments fed so far."""

    phase: str | None = None  # loading|caching|training|sampling|saving|finished
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    tqdm_elapsed: float | None = None  # seconds (tqdm's elapsed excludes sampling/saving pauses)
    tqdm_remaining: float | None = None
    tqdm_rate: float | None = None  # seconds per optimizer step
    avr_loss: float | None = None
    avr_loss_points: tuple[ScalarPoint, ...] = ()  # by step, bounded (min/max downsampled)
    avr_loss_count: int = 0  # steps with an avr_loss (exact)
    postfix: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config: TrainConfig = field(default_factory=TrainConfig)
    saves: tuple[SaveEvent, ...] = ()  # checkpoints/states in order (bounded)
    model_saved: bool = False
    sample_step: int | None = None  # last "generating sample images at step"
    caching: tuple[int, int] | None = None  # latent caching bar (n, total) while caching
    traceback: str | None = None  # the last exception line
    traceback_lines: tuple[str, ...] = ()  # the last traceback (bounded)
    keyboard_interrupt: bool = False
    oom: str | None = None  # CUDA out of memory line
    host_oom: str | None = None  # DataLoader worker killed / SIGKILL
    nan_step: int | None = None  # same as first_nan_step (kept for the agreed name)
    first_nan_step: int | None = None  # first step whose avr_loss is nan
    nan_in_latents: bool = False
    unrecognized_args: tuple[str, ...] = ()
    no_data: bool = False
    #: ``image_dir`` folders the trainer found missing (``not directory: X``) or empty (``found
    #: directory X contains 0 image files``): what "No data found" is about (train_util.py)
    empty_image_dirs: tuple[str, ...] = ()
    invalid_config: bool = False
    errors: tuple[str, ...] = ()  # ERROR/CRITICAL records (bounded)
    warnings: tuple[str, ...] = ()  # distinct warnings, oldest first (bounded)
    last_record_time: str | None = None  # "YYYY-MM-DD HH:MM:SS" of the newest timestamped record
    lines: tuple[LogLine, ...] = ()  # the last N display lines, tqdm redraws collapsed
    line_count: int = 0  # logical lines so far (numbers run 0..line_count-1)
    segments: int = 0  # segments fed so far
    mid_file: bool = False  # the parser saw a skip marker (started inside a big file)
    launches: tuple[LoggedLaunch, ...] = ()  # one per "running training" block (sources/launchlog.py)

class StepPoints:
    """Bounded by-step series: exact last, min/max-preserving buckets of doubling width."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max(16, max_points)
        self.kept: list[ScalarPoint] = []
        self.pend: list[ScalarPoint] = []
        self.width = 1
        self.count = 0

    def add(self, p: ScalarPoint) -> None:
        self.count += 1
        self.pend.append(p)
        if len(self.pend) >= self.width:
            self.kept.extend(self.pend if self.width == 1 else _minmax(self.pend))
            self.pend = []
            if len(self.kept) > self.max_points:
                self.kept = [q for i in range(0, len(self.kept), 4) for q in _minmax(self.kept[i : i + 4])]
                self.width *= 2

    def add_many(self, steps: list[int], values: list[float]) -> None:
        """Add a batch: buckets are widened first, then reduced with C-level min/max."""
        n = len(steps)
        self.count += n
        while len(self.kept) + 2 * (len(self.pend) + n) // self.width > self.max_points:
            self.kept = [q for i in range(0, len(self.kept), 4) for q in _minmax(self.kept[i : i + 4])]
            self.width *= 2
        i = 0
        if self.pend:  # fill the open bucket first
            take = min(n, self.width - len(self.pend))
            for k in range(take):
                self.add(ScalarPoint(steps[k], values[k]))
            i = take
            self.count -= take
        w = self.width
        while i + w <= n and w > 2:
            vals = values[i : i + w]
            total = sum(vals)
            if total != total:
                self.kept.extend(_minmax([ScalarPoint(steps[k], values[k]) for k in range(i, i + w)]))
            else:
                lo = i + vals.index(min(vals))
                hi = i + vals.index(max(vals))
                a, b = (lo, hi) if lo <= hi else (hi, lo)
                self.kept.append(ScalarPoint(steps[a], values[a]))
                if b != a:
                    self.kept.append(ScalarPoint(steps[b], values[b]))
            i += w
        for k in range(i, n):
            self.add(ScalarPoint(steps[k], values[k]))
        self.count -= n - i

    def points(self, extra: ScalarPoint | None) -> tuple[ScalarPoint, ...]:
        pts = self.kept + (_minmax(self.pend) if len(self.pend) > 2 else self.pend)
        if extra is not None:
            pts.append(extra)
        return tuple(pts)

def _rank(v: float, high: bool) -> float:
    if v != v:
        return math.inf if high else -math.inf
    return v

def _minmax(chunk: list[ScalarPoint]) -> list[ScalarPoint]:
    lo = min(range(len(chunk)), key=lambda k: _rank(chunk[k].value, False))
    hi = max(range(len(chunk)), key=lambda k: _rank(chunk[k].value, True))
    if lo == hi:
        return [chunk[lo]]
    return [chunk[min(lo, hi)], chunk[max(lo, hi)]]


class LogInterpreter:
    """The message rules of :class:`~sdxl_tui.sources.logparse.LogParser`, which subclasses
    it and owns the state declared here."""

    _f: dict[str, Any]
    _cfg: dict[str, Any]
    _loss: StepPoints
    _loss_step: int | None
    _loss_value: float | None
    _warnings: dict[str, None]
    _saves: deque[SaveEvent]
    _errors: deque[str]
    _caching_armed: bool
    _saw_unet_lora: bool
    _saw_te_lora: bool
    _open: LogLine | None
    _tb: list[str]
    _in_tb: bool
    _lines: deque[LogLine]
    _line_no: int
    _segments: int
    _launches: LaunchLines

    def _scan_faults(self, line: str) -> None:
        if "CUDA out of memory" in line or "OutOfMemoryError" in line:
            self._f["oom"] = line.strip()
        if "is killed by signal: Killed" in line or "<Signals.SIGKILL: 9>" in line:
            self._f["host_oom"] = line.strip()
        m = _UNRECOGNIZED.search(line)
        if m:
            self._f["unrecognized_args"] = tuple(m.group(1).split())
        if "NaN found in latents" in line:
            self._f["nan_in_latents"] = True
        if "Warning:" in line and EXCEPTION_LINE.match(line.lstrip()):
            self._warn(line.strip())

    def _warn(self, msg: str) -> None:
        if msg in self._warnings:
            return
        self._warnings[msg] = None
        if len(self._warnings) > 50:
            del self._warnings[next(iter(self._warnings))]

    # -- meaning ------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        if self._f["model_saved"] and phase != "finished":
            return
        self._f["phase"] = phase

    def _on_bar(self, bar: TqdmBar) -> None:
        f = self._f
        if bar.desc == "steps":
            self._caching_armed = False
            f["caching"] = None
            self._set_phase("training")
            f["step"] = bar.n
            if bar.total is not None:
                f["total_steps"] = bar.total
            f["tqdm_elapsed"] = bar.elapsed
            f["tqdm_remaining"] = bar.remaining
            if bar.seconds_per_it is not None:
                f["tqdm_rate"] = bar.seconds_per_it
            if bar.postfix:
                f["postfix"] = bar.postfix
                raw = bar.postfix.get("avr_loss")
                if raw is not None:
                    v = parse_number(raw)
                    if v is not None:
                        self._avr(bar.n, v)
        elif bar.desc == "" and self._caching_armed:
            if bar.total is not None:
                f["caching"] = (bar.n, bar.total)
            if f["phase"] in (None, "loading"):
                self._set_phase("caching")
        elif bar.desc == "" and f["phase"] in ("saving",):
            pass

    def _avr_many(self, per_step: dict[int, str]) -> None:
        """Several steps' last ``avr_loss`` at once (steps in order of appearance)."""
        steps = list(per_step)
        if self._loss_step is not None and self._loss_value is not None and steps[0] != self._loss_step:
            self._loss.add(ScalarPoint(self._loss_step, self._loss_value))
        values = [parse_number(v) for v in per_step.values()]
        if any(v is None for v in values):
            for st, v in zip(steps, values, strict=False):
                if v is not None:
                    self._avr(st, v)
            return
        vals: list[float] = values  # type: ignore[assignment]
        if len(steps) > 1:
            self._loss.add_many(steps[:-1], vals[:-1])
        self._loss_step = steps[-1]
        self._loss_value = vals[-1]
        if self._f["first_nan_step"] is None:
            for st, v in zip(steps, vals, strict=False):
                if v != v:
                    self._f["first_nan_step"] = st
                    break

    def _avr(self, step: int, value: float) -> None:
        if self._loss_step is not None and step != self._loss_step and self._loss_value is not None:
            self._loss.add(ScalarPoint(self._loss_step, self._loss_value))
        self._loss_step = step
        self._loss_value = value
        if value != value and self._f["first_nan_step"] is None:
            self._f["first_nan_step"] = step

    def _image_dir(self, flat: str) -> None:
        m = _EMPTY_DIR_RE.match(flat)
        if m is not None:
            dirs = self._f["empty_image_dirs"]
            name = m.group(1) or m.group(2)
            if name not in dirs and len(dirs) < 20:
                self._f["empty_image_dirs"] = (*dirs, name)

    def _level(self, level: str, flat: str) -> None:
        """Errors and warnings, by the record's level."""
        if level in ("ERROR", "CRITICAL"):
            self._errors.append(flat)
            if flat.startswith("No data found"):
                self._f["no_data"] = True
            if flat.startswith("Invalid user config"):
                self._f["invalid_config"] = True
        elif level == "WARNING":
            self._warn(flat)

    def _on_record(self, level: str, msg: str) -> None:
        f = self._f
        flat = msg.replace("\n", " ")
        self._image_dir(flat)
        self._level(level, flat)
        if f["phase"] is None:
            self._set_phase("loading")
        kind = self._launches.record(flat, f["last_record_time"])
        if kind:
            if kind == "resume":  # a new launch (stderr: before its buffered "running training")
                f["step"], f["model_saved"], f["phase"] = None, False, "loading"
            return
        if flat == "model saved.":
            f["model_saved"] = True
            self._set_phase("finished")
            return
        if flat.startswith(("caching latents", "caching Text Encoder outputs", "caching text encoder outputs")):
            self._caching_armed = True
            if f["phase"] in (None, "loading"):
                self._set_phase("caching")
            return
        m = _SAMPLE.search(flat)
        if m:
            f["sample_step"] = int(m.group(1))
            self._set_phase("sampling")
            return
        m = _STATE_AT.search(flat)
        if m:
            self._set_phase("saving")
            return
        m = SAVE_TRAIN_STATE.search(flat)
        if m:
            folder = m.group(1).rsplit("/", 1)[0] if m.group(1).endswith("train_state.json") else m.group(1)
            self._saves.append(SaveEvent("state", folder, int(m.group(3)), int(m.group(2))))
            return
        if flat.startswith("removing old state: "):
            self._saves.append(
                SaveEvent("removed_state", flat[len("removing old state: ") :].strip(), f["step"], f["epoch"])
            )
            return
        self._config_record(flat, msg)

    def _config_record(self, flat: str, msg: str) -> None:
        """Records that state the configuration: network, attention, optimizer, dataset."""
        m = _LORA.search(flat)
        if m:
            self._cfg["network_dim"] = int(m.group(1))
            self._cfg["network_alpha"] = float(m.group(2))
            return
        if flat.startswith("Enable "):
            if "xformers" in flat:
                self._cfg["attention"] = "xformers"
            elif "SDPA" in flat:
                self._cfg["attention"] = "sdpa"
            elif "memory efficient attention" in flat:
                self._cfg["attention"] = "mem_eff_attn"
            return
        m = _OPTIM.search(flat)
        if m:
            self._cfg["optimizer"] = m.group(1)
            return
        if flat.startswith("enable LoRA for text encoder"):
            self._saw_te_lora = True
        elif flat.startswith("enable LoRA for U-Net"):
            self._saw_unet_lora = True
        elif flat.startswith("[Dataset ") and "resolution:" in msg:
            m = _RESOLUTION.search(msg)
            if m:
                self._cfg.setdefault("resolution", f"{m.group(1)}x{m.group(2)}")
            m = _BATCH.search(msg)
            if m:
                self._cfg.setdefault("batch_size", int(m.group(1)))

    def _on_print(self, line: str) -> None:
        self._image_dir(line.strip())
        f = self._f
        if f["phase"] is None:
            self._set_phase("loading")
        m = _EPOCH.match(line)
        if m:
            f["epoch"], f["epochs"] = int(m.group(1)), int(m.group(2))
            return
        m = _SAVE.match(line)
        if m:
            path = m.group(1)
            self._saves.append(SaveEvent("checkpoint", path, f["step"], f["epoch"]))
            n = _OUTPUT_NAME.match(path.replace("\\", "/").rsplit("/", 1)[-1])
            if n:
                self._cfg["output_name"] = n.group("name")
            self._set_phase("saving")
            return
        m = _REMOVE.match(line)
        if m:
            self._saves.append(SaveEvent("removed", m.group(1), f["step"], f["epoch"]))
            return
        if line.startswith("running training"):
            self._launches.running(f["last_record_time"])
            if f["model_saved"]:  # a new run appended to the same log
                f["model_saved"] = False
                f["phase"] = "loading"
            return
        if line.startswith("  ") and " / " in line:
            label = line.strip().split(" / ", 1)[0].strip()
            key = _BLOCK_LABELS.get(label)
            if key:
                m = _BLOCK_VALUE.search(line)
                if m:
                    raw = m.group(1).replace(" ", "")
                    try:
                        self._cfg[key] = int(raw.split(",")[0])
                    except ValueError:
                        pass
                    if key == "total_steps":
                        f["total_steps"] = f["total_steps"] or self._cfg[key]
                    if key == "num_epochs" and f["epochs"] is None:
                        f["epochs"] = self._cfg[key]
            return
        m = _OVERRIDE.match(line)
        if m:
            self._cfg["total_steps"] = int(m.group(2))
            return

    # -- facts --------------------------------------------------------------------------------

    def _build(self) -> LogFacts:
        f = self._f
        cfg = dict(self._cfg)
        if self._saw_unet_lora:
            cfg["network_train_unet_only"] = not self._saw_te_lora
        config = TrainConfig(**{k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__})
        extra = None
        if self._loss_step is not None and self._loss_value is not None:
            extra = ScalarPoint(self._loss_step, self._loss_value)
        lines = tuple(self._lines)
        if self._open is not None:
            lines = (*lines, self._open)
        first_nan = f["first_nan_step"]
        return LogFacts(
            phase=f["phase"],
            epoch=f["epoch"],
            epochs=f["epochs"],
            step=f["step"],
            total_steps=f["total_steps"] if f["total_steps"] is not None else cfg.get("total_steps"),
            tqdm_elapsed=f["tqdm_elapsed"],
            tqdm_remaining=f["tqdm_remaining"],
            tqdm_rate=f["tqdm_rate"],
            avr_loss=self._loss_value,
            avr_loss_points=self._loss.points(extra),
            avr_loss_count=self._loss.count + (1 if extra is not None else 0),
            postfix=f["postfix"],
            config=config,
            saves=tuple(self._saves),
            model_saved=f["model_saved"],
            sample_step=f["sample_step"],
            caching=f["caching"],
            traceback=f["traceback"],
            traceback_lines=tuple(self._tb[-60:]) if self._in_tb else f["traceback_lines"],
            keyboard_interrupt=f["keyboard_interrupt"],
            oom=f["oom"],
            host_oom=f["host_oom"],
            nan_step=first_nan,
            first_nan_step=first_nan,
            nan_in_latents=f["nan_in_latents"],
            unrecognized_args=f["unrecognized_args"],
            no_data=f["no_data"],
            empty_image_dirs=f["empty_image_dirs"],
            invalid_config=f["invalid_config"],
            errors=tuple(self._errors),
            warnings=tuple(self._warnings),
            last_record_time=f["last_record_time"],
            lines=lines,
            line_count=self._line_no,
            segments=self._segments,
            mid_file=f["mid_file"],
            launches=self._launches.launches,
        )
