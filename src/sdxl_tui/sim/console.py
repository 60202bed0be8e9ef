"""The simulated trainer's two output streams, rendered the way the real trainer renders them.

Log records go through rich's real ``RichHandler`` (what ``library/utils.py:setup_logging``
installs), fed ``LogRecord``s whose ``pathname``/``lineno`` are the real sd-scripts ones, so
the 80-column layout, the blanked repeated times and the 29-space continuation indent are
rich's own. ``print``-style output goes to stdout and keeps Python's buffering: in a
subprocess it is the process's own ``sys.stdout`` (block-buffered when redirected unless
``PYTHONUNBUFFERED=1``); in-process it is an 8 KiB emulated buffer over the same file, so the
order of stdout and stderr in ``training.log`` is as messy as a real run's.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

SD_SCRIPTS_DIR = "/home/user/sd-scripts"
STDOUT_BUFFER = 8192

# Source locations of the records the simulator emits (sd-scripts 48d368fa / v0.10.1).
# Those marked "seen" appear in a real run's log; the others come from sd-scripts' code or are
# plausible neighbours and only their basename column is shown.
SRC: dict[str, tuple[str, int]] = {
    "load_tokenizer": ("library/strategy_base.py", 61),  # seen
    "settings": ("library/train_util.py", 4739),
    "dataset_config": ("train_network.py", 519),  # seen
    "prepare_images": ("library/train_util.py", 2112),  # seen
    "image_size_from_cache": ("library/train_util.py", 2005),  # seen
    "set_image_size": ("library/train_util.py", 2035),  # seen
    "found_directory": ("library/train_util.py", 2059),  # seen
    "train_images": ("library/train_util.py", 2158),  # seen
    "reg_images": ("library/train_util.py", 2162),  # seen
    "no_reg": ("library/train_util.py", 2167),  # seen
    "dataset_info": ("library/config_util.py", 580),  # seen
    "prepare_dataset": ("library/config_util.py", 592),  # seen
    "loading_sizes": ("library/train_util.py", 992),  # seen
    "make_buckets": ("library/train_util.py", 1015),  # seen
    "bucket_counts": ("library/train_util.py", 1061),  # seen
    "bucket": ("library/train_util.py", 1066),  # seen
    "mean_ar": ("library/train_util.py", 1074),  # seen
    "clip_skip": ("library/sdxl_train_util.py", 352),  # reference
    "preparing_accelerator": ("train_network.py", 593),  # seen
    "loading_model": ("library/sdxl_train_util.py", 32),  # seen
    "load_checkpoint": ("library/sdxl_train_util.py", 73),  # seen
    "building_unet": ("library/sdxl_model_util.py", 198),  # seen
    "loading_unet": ("library/sdxl_model_util.py", 202),  # seen
    "unet_keys": ("library/sdxl_model_util.py", 208),  # seen
    "building_te": ("library/sdxl_model_util.py", 211),  # seen
    "loading_te": ("library/sdxl_model_util.py", 264),  # seen
    "te1_keys": ("library/sdxl_model_util.py", 278),  # seen
    "te2_keys": ("library/sdxl_model_util.py", 282),  # seen
    "building_vae": ("library/sdxl_model_util.py", 285),  # seen
    "loading_vae": ("library/sdxl_model_util.py", 290),  # seen
    "vae_keys": ("library/sdxl_model_util.py", 293),  # seen
    "attention": ("library/train_util.py", 3375),  # seen (SDPA)
    "cache_dataset": ("library/train_util.py", 2627),  # seen
    "caching_strategy": ("library/train_util.py", 1120),  # seen
    "caching_latents": ("library/train_util.py", 1170),  # seen
    "create_network": ("networks/lora.py", 935),  # seen
    "dropout": ("networks/lora.py", 936),  # seen
    "create_te": ("networks/lora.py", 1027),  # seen
    "create_te_total": ("networks/lora.py", 1035),  # seen
    "create_unet": ("networks/lora.py", 1043),  # seen
    "enable_te": ("networks/lora.py", 1086),
    "enable_unet": ("networks/lora.py", 1089),  # seen
    "use_optimizer": ("library/train_util.py", 5096),  # seen
    "te_not_needed": ("train_network.py", 1325),
    "unet_dtype": ("train_network.py", 1347),  # seen
    "te_dtype": ("train_network.py", 1353),  # seen
    "epoch_incremented": ("library/train_util.py", 784),  # seen (DataLoader workers)
    "sample_empty": ("library/train_util.py", 6177),
    "sample_header": ("library/train_util.py", 6178),
    "no_prompt_file": ("library/train_util.py", 6185),
    "sample_prompt": ("library/train_util.py", 6355),
    "sample_negative": ("library/train_util.py", 6356),
    "sample_height": ("library/train_util.py", 6357),
    "sample_width": ("library/train_util.py", 6358),
    "sample_steps": ("library/train_util.py", 6359),
    "sample_scale": ("library/train_util.py", 6360),
    "sample_sampler": ("library/train_util.py", 6361),
    "sample_seed": ("library/train_util.py", 6363),
    "state_empty": ("library/train_util.py", 5478),
    "saving_state": ("library/train_util.py", 5479),
    "saving_last_state": ("library/train_util.py", 5526),
    "removing_state": ("library/train_util.py", 5491),
    "save_current_state": ("accelerate/accelerator.py", 3063),
    "train_state": ("train_network.py", 946),  # reference
    "model_weights_saved": ("accelerate/checkpointing.py", 107),
    "optimizer_saved": ("accelerate/checkpointing.py", 120),
    "scheduler_saved": ("accelerate/checkpointing.py", 132),
    "scaler_saved": ("accelerate/checkpointing.py", 156),
    "random_saved": ("accelerate/checkpointing.py", 181),
    "model_saved": ("train_network.py", 1729),  # seen
    "resume": ("library/train_util.py", 4781),
    "load_state": ("accelerate/accelerator.py", 3301),
    "load_state_part": ("accelerate/checkpointing.py", 221),
    "load_train_state": ("train_network.py", 966),
    "skipping_steps": ("train_network.py", 1265),
    "skipping_epoch": ("train_network.py", 1342),
}


class _TextSink:
    """A minimal text file for rich's Console: encodes and writes to a binary file at once."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def write(self, s: str) -> int:
        self._write(s)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


class SimConsole:
    """stdout/stderr of the simulated trainer plus its logging handler.

    Args:
        log_file: a binary file standing for ``> training.log 2>&1`` (in-process mode), or
            None to use the process's real ``sys.stdout``/``sys.stderr`` (subprocess mode).
        unbuffered: in-process only; default: ``PYTHONUNBUFFERED`` is set and non-empty.
        clock: ``time.time`` or a fake clock for bulk generation (record times).
    """

    def __init__(
        self,
        log_file: IO[bytes] | None = None,
        *,
        unbuffered: bool | None = None,
        clock: Callable[[], float] = time.time,
        width: int | None = None,
    ) -> None:
        from rich.console import Console
        from rich.logging import RichHandler

        self.clock = clock
        self._file = log_file
        if unbuffered is None:
            unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        self._unbuffered = unbuffered
        self._out_buf: list[str] = []
        self._out_len = 0
        if log_file is None:
            console = Console(stderr=True)
        else:
            if width is None:
                try:
                    width = int(os.environ.get("COLUMNS", "80"))
                except ValueError:
                    width = 80
            console = Console(
                file=_TextSink(self._raw_err),  # type: ignore[arg-type]
                width=width,
                force_terminal=False,
                color_system=None,
                force_jupyter=False,
                force_interactive=False,
            )
        self.handler = RichHandler(console=console)
        self.handler.setFormatter(logging.Formatter(fmt="%(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
        self._worker_last: dict[int, Any] = {}
        self.local_main = True
        """False on a rank other than LOCAL_RANK 0: ``accelerator.print`` prints nothing (sim/ranks.py)."""

    # -- raw streams ------------------------------------------------------------------------
    def _raw_err(self, s: str) -> None:
        if self._file is None:
            sys.stderr.write(s)
        else:
            self._file.write(s.encode("utf-8"))

    def err(self, s: str) -> None:
        """Write to stderr and flush (tqdm and tracebacks)."""
        if self._file is None:
            sys.stderr.write(s)
            sys.stderr.flush()
        else:
            self._file.write(s.encode("utf-8"))
            self._file.flush()

    def out(self, s: str) -> None:
        """Write to stdout with the process's buffering."""
        if self._file is None:
            sys.stdout.write(s)
            return
        if self._unbuffered:
            self._file.write(s.encode("utf-8"))
            self._file.flush()
            return
        data = s
        self._out_buf.append(data)
        self._out_len += len(data.encode("utf-8"))
        if self._out_len >= STDOUT_BUFFER:
            self.flush_stdout()

    def print(self, *parts: object) -> None:
        """``accelerator.print(...)``: nothing on a rank other than the local main process."""
        if self.local_main:
            self.out(" ".join(str(p) for p in parts) + "\n")

    def print_all(self, *parts: object) -> None:
        """A plain ``print(...)``: every rank writes it."""
        self.out(" ".join(str(p) for p in parts) + "\n")

    def flush_stdout(self) -> None:
        if self._file is None:
            sys.stdout.flush()
            return
        if self._out_buf:
            self._file.write("".join(self._out_buf).encode("utf-8"))
            self._out_buf.clear()
            self._out_len = 0
        self._file.flush()

    def flush_all(self) -> None:
        """What tqdm's status_printer and multiprocessing's fork do: flush stdout and stderr."""
        self.flush_stdout()
        if self._file is None:
            sys.stderr.flush()

    # -- logging -----------------------------------------------------------------------------
    def record(self, key: str, msg: str, level: int = logging.INFO, created: float | None = None) -> logging.LogRecord:
        path, line = SRC[key]
        rec = logging.LogRecord("sdxl", level, f"{SD_SCRIPTS_DIR}/{path}", line, msg, None, None, func="train")
        rec.created = self.clock() if created is None else created
        rec.msecs = (rec.created - int(rec.created)) * 1000
        return rec

    def setup_logging(self, level: str | None, log_file: str | None, simple: bool) -> None:
        """``setup_logging(args, reset=True)``: --console_log_level/_file/_simple.

        Records before this call (config loading, argument warnings) always went through the
        import-time RichHandler; after it, a FileHandler (file truncated), a plain stdout
        StreamHandler, or a fresh RichHandler on stderr.
        """
        self.level = getattr(logging, level or "INFO", logging.INFO)
        if log_file:
            self._log_file = open(log_file, "w", encoding="utf-8")  # noqa: SIM115 - like FileHandler
            self._mode = "file"
        elif simple:
            self._mode = "simple"
        else:
            self._mode = "rich"

    def log(self, key: str, msg: str, level: int = logging.INFO) -> None:
        """A record from the main process, through the handler sd-scripts installed."""
        mode = getattr(self, "_mode", "rich")
        if level < getattr(self, "level", logging.INFO):
            return
        if mode == "simple":
            self.out(msg + "\n")
            return
        if mode == "file":
            self._log_file.write(msg + "\n")
            self._log_file.flush()
            return
        self.handler.handle(self.record(key, msg, level))
        if self._file is not None:
            self._file.flush()

    def worker_log(self, worker: int, key: str, msg: str, *, forked: bool) -> None:
        """A record from DataLoader worker ``worker``: a separate process with its own handler.

        A freshly forked worker starts with a copy of the main handler's "last time", so its
        first record shows the time unless it equals the main's last one; later records of a
        persistent worker compare with that worker's own previous record.
        """
        render = self.handler._log_render
        main_last = render._last_time
        if forked or worker not in self._worker_last:
            render._last_time = main_last
        else:
            render._last_time = self._worker_last[worker]
        self.handler.handle(self.record(key, msg))
        self._worker_last[worker] = render._last_time
        render._last_time = main_last
        if self._file is not None:
            self._file.flush()
