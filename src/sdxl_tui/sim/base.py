"""The simulated trainer's shared state and helpers (time, log lines, progress bars).

:class:`TrainerBase` holds what every part of a simulated run reads and writes: the parsed
arguments, the console, the clock, the random stream (one stream, drawn in the real run's
order, so a seed gives the same bytes), the steps bar and the counters. The parts -
:mod:`~sdxl_tui.sim.startup`, :mod:`~sdxl_tui.sim.saving`, :mod:`~sdxl_tui.sim.sampling` - and
:class:`~sdxl_tui.sim.trainer.SimulatedTrainer` build on it.
"""

from __future__ import annotations

import logging
import random
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sdxl_tui.sim.console import SimConsole
from sdxl_tui.sim.dataset import DatasetGroup
from sdxl_tui.sim.options import SimOptions
from sdxl_tui.sim.progress import Bar
from sdxl_tui.sim.ranks import ProcessGroup, Ranks
from sdxl_tui.sim.schedule import LossRecorder
from sdxl_tui.sim.tfevents import EventWriter
from sdxl_tui.sim.workers import DataLoaderWorkers


class SimulatedFault(Exception):
    """Raised inside the loop to unwind to the top level, like the real exception would."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.text = text


@dataclass
class Hooks:
    """Time source and sleeping; replaced by a fake clock for bulk generation."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    fork_workers: bool = False  # real DataLoader-worker child processes (subprocess mode)
    ranks: Ranks = field(default_factory=Ranks)  # which rank of a multi-process launch (sim/ranks.py)


def _discard(_text: str) -> None:
    """Where a disabled tqdm bar writes."""


class TrainerBase:
    """The state of one simulated run and the helpers its parts share."""

    # set by SimulatedTrainer._train before the parts use them
    group: DatasetGroup
    session_id: int
    training_started_at: float
    metadata: dict[str, str]
    no_metadata: bool
    max_train_steps: int
    recorder: LossRecorder

    def __init__(self, args: Namespace, sim: SimOptions, console: SimConsole, hooks: Hooks | None = None) -> None:
        self.args = args
        self.sim = sim
        self.c = console
        self.h = hooks or Hooks()
        self.rng = random.Random(sim.seed)
        self.bar: Bar | None = None
        self.tb: EventWriter | None = None
        self.workers = DataLoaderWorkers()
        self._hanging = False
        self.current_epoch = 0
        self._val_bars: dict[bool, Bar] = {}
        self._val_recorders: dict[bool, LossRecorder] = {}
        self.global_step = 0
        self.true_offset = 0  # after --resume: the run's true step is global_step + true_offset
        self.output_dir = Path(args.output_dir or ".")
        self.ext = "." + (args.save_model_as or "safetensors")
        self.unet_only = bool(args.network_train_unet_only)
        self.ranks = self.h.ranks
        self.dist: ProcessGroup | None = None  # joined where Accelerator() would join it
        console.local_main = self.ranks.is_local_main_process
        self.te_only = bool(args.network_train_text_encoder_only)

    # -- helpers -------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.h.sleep(seconds)

    def log(self, key: str, msg: str, level: int = logging.INFO) -> None:
        self.c.log(key, msg, level)

    def new_bar(self, total: int | None, **kw: object) -> Bar:
        """A tqdm bar; drawn by the local main process only (``disable=not is_local_main_process``)."""
        if not self.ranks.is_local_main_process:
            return Bar(total, _discard, self.h.now, **kw)  # type: ignore[arg-type]
        return Bar(total, self.c.err, self.h.now, on_create=self.c.flush_all, **kw)  # type: ignore[arg-type]

    def simple_bar(self, total: int, seconds: float, desc: str = "") -> None:
        """A short bar that runs to completion and closes (caching, reading captions)."""
        bar = self.new_bar(total, desc=desc)
        for _ in range(total):
            self.sleep(seconds / max(1, total))
            bar.update(1)
        bar.close()
