"""The simulated ``sdxl_train_network.py`` run: phases, steps, saves, samples, faults.

The control flow mirrors ``train_network.py:NetworkTrainer.train`` (sd-scripts v0.10.1):
dataset preparation, model loading, latent caching, the "running training" block, the epoch
loop with gradient accumulation (TensorBoard points per micro-batch, tqdm update per
optimizer step, ``set_postfix`` per micro-batch), epoch/step saves with their removal rules,
``--save_state`` directories, sampling, the final save and ``model saved.``. Only the
numbers are invented (the loss curve); every name, line and format is the real one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shlex
import shutil
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.formats.names import (
    epoch_file_name,
    sample_file_name,
    state_dir_name,
    step_file_name,
)
from sdxl_tui.sim import lorafile, tracebacks
from sdxl_tui.sim.console import SD_SCRIPTS_DIR, SimConsole
from sdxl_tui.sim.dataset import (
    DatasetGroup,
    dataset_info_text,
    datasets_metadata,
    load_dataset_group,
)
from sdxl_tui.sim.options import SimOptions
from sdxl_tui.sim.png import png_bytes
from sdxl_tui.sim.progress import Bar
from sdxl_tui.sim.tfevents import EventWriter
from sdxl_tui.sim.workers import DataLoaderWorkers

SD_SCRIPTS_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"
TE_MODULES = 264
UNET_MODULES = 722


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


# -- learning rate schedules (diffusers/transformers get_scheduler shapes) -----------------------
def lr_lambda(name: str, step: int, total: int, warmup: int, cycles: int = 1, power: float = 1.0) -> float:
    """Multiplier of the base LR after ``step`` scheduler steps."""
    if name == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if name == "constant_with_warmup":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if name == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if name == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    if name == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))
    if name == "polynomial":
        if step > total:
            return 0.0
        return max(0.0, float((1 - progress) ** power))
    return 1.0


class LossRecorder:
    """``library/train_util.py:LossRecorder``: epoch-1 running mean, then a one-epoch window."""

    def __init__(self) -> None:
        self.loss_list: list[float] = []
        self.loss_total = 0.0

    def add(self, *, epoch: int, step: int, loss: float) -> None:
        if epoch == 0:
            self.loss_list.append(loss)
        else:
            while len(self.loss_list) <= step:
                self.loss_list.append(0.0)
            self.loss_total -= self.loss_list[step]
            self.loss_list[step] = loss
        self.loss_total += loss

    @property
    def moving_average(self) -> float:
        return self.loss_total / len(self.loss_list)


def _fmt_float(v: object) -> str:
    return str(v)


class SimulatedTrainer:
    """One simulated run. ``run()`` returns the exit status (raises nothing but KeyboardInterrupt)."""

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
        self.output_dir = Path(args.output_dir or ".")
        self.ext = "." + (args.save_model_as or "safetensors")
        self.unet_only = bool(args.network_train_unet_only)
        self.te_only = bool(args.network_train_text_encoder_only)

    # -- helpers -------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.h.sleep(seconds)

    def log(self, key: str, msg: str, level: int = logging.INFO) -> None:
        self.c.log(key, msg, level)

    def new_bar(self, total: int | None, **kw: object) -> Bar:
        return Bar(total, self.c.err, self.h.now, on_create=self.c.flush_all, **kw)  # type: ignore[arg-type]

    def simple_bar(self, total: int, seconds: float, desc: str = "") -> None:
        """A short bar that runs to completion and closes (caching, reading captions)."""
        bar = self.new_bar(total, desc=desc)
        for _ in range(total):
            self.sleep(seconds / max(1, total))
            bar.update(1)
        bar.close()

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self._train()
        except SimulatedFault as fault:
            self.c.err(fault.text)
            self._exit_cleanup()
            return 1
        except KeyboardInterrupt:
            self.c.err(tracebacks.keyboard_interrupt_traceback(during_step=self.bar is not None and not self._hanging))
            self._exit_cleanup()
            raise
        self._exit_cleanup()
        return 0

    def _exit_cleanup(self) -> None:
        """Interpreter exit: stdout is flushed, then tqdm's ``__del__`` closes the steps bar."""
        self.workers.stop()
        self.c.flush_stdout()
        if self.bar is not None:
            self.bar.close()
        for bar in self._val_bars.values():
            bar.close()
        if self.tb is not None:
            self.tb.close()

    def _train(self) -> None:
        a, sim = self.args, self.sim
        self.training_started_at = self.h.now()
        self.session_id = self.rng.randint(0, 2**32 - 1)
        startup = sim.startup_seconds
        if a.config_file:
            self.log("settings", f"Loading settings from {a.config_file if a.config_file.endswith('.toml') else a.config_file + '.toml'}...")
        if a.clip_skip is not None:
            self.log("clip_skip", "clip_skip will be unexpected / SDXL学習ではclip_skipは動作しません", logging.WARNING)
        self.c.setup_logging(a.console_log_level, a.console_log_file, a.console_log_simple)
        if a.log_with in ("tensorboard", "all") and not a.logging_dir:
            raise SimulatedFault("config", tracebacks.logging_dir_traceback())
        if a.tokenizer_cache_dir:
            for name in ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"):
                self.log("load_tokenizer", f"load tokenizer from cache: {os.path.join(a.tokenizer_cache_dir, name)}")
        group = load_dataset_group(a)
        self.group = group
        self._log_dataset(group, startup * 0.08)
        self.log("preparing_accelerator", "preparing accelerator")
        self.logging_ts = time.strftime("%Y%m%d%H%M%S", time.localtime(self.h.now()))
        self.c.print("accelerator device:", "cuda")
        self._log_model_loading(startup * 0.5)
        if a.xformers:
            self.log("attention", "Enable xformers for U-Net")
        elif a.sdpa:
            self.log("attention", "Enable SDPA for U-Net")
        elif a.mem_eff_attn:
            self.log("attention", "Enable memory efficient attention for U-Net")
        if a.cache_latents or a.cache_latents_to_disk:
            n_images = sum(s.img_count for d in group.datasets for s in d.subsets)
            for i, _ in enumerate(group.datasets):
                self.log("cache_dataset", f"[Dataset {i}]")
                self.log("caching_strategy", "caching latents with caching strategy.")
                self.log("caching_latents", "caching latents...")
                self.simple_bar(n_images, startup * 0.3 / len(group.datasets))
        self._log_network()
        self.sleep(startup * 0.05)
        self.c.print("prepare optimizer, data loader etc.")
        self.log("use_optimizer", self._optimizer_line())

        # steps and epochs, as train_network computes them
        batches = sim.batches_per_epoch or group.num_batches
        self.batches = max(1, batches)
        accum = max(1, a.gradient_accumulation_steps or 1)
        self.accum = accum
        self.steps_per_epoch = math.ceil(self.batches / accum)
        if a.max_train_epochs is not None:
            self.max_train_steps = a.max_train_epochs * self.steps_per_epoch
            self.c.print(f"override steps. steps for {a.max_train_epochs} epochs is / 指定エポックまでのステップ数: {self.max_train_steps}")
        else:
            self.max_train_steps = a.max_train_steps
        self.num_train_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch)
        if a.save_n_epoch_ratio is not None:
            a.save_every_n_epochs = math.floor(self.num_train_epochs / a.save_n_epoch_ratio) or 1
        warm = a.lr_warmup_steps or 0
        self.warmup = int(warm * self.max_train_steps) if isinstance(warm, float) else int(warm)
        if (a.lr_scheduler or "constant") == "constant" and self.warmup != 0:
            raise SimulatedFault("config", tracebacks.warmup_traceback("SchedulerType.CONSTANT"))

        self.epoch_to_start = 0
        self.lr_offset = 0  # a resumed scheduler continues from its saved step count
        if a.resume:
            self._resume(a.resume)
        self.c.print("running training / 学習開始")
        self.c.print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {group.num_train_images}")
        self.c.print(f"  num validation images * repeats / 学習画像の数×繰り返し回数: {group.num_validation_images}")
        self.c.print(f"  num reg images / 正則化画像の数: {group.num_reg_images}")
        self.c.print(f"  num batches per epoch / 1epochのバッチ数: {self.batches}")
        self.c.print(f"  num epochs / epoch数: {self.num_train_epochs}")
        self.c.print(f"  batch size per device / バッチサイズ: {', '.join(str(d.batch_size) for d in group.datasets)}")
        self.c.print(f"  gradient accumulation steps / 勾配を合計するステップ数 = {accum}")
        self.c.print(f"  total optimization steps / 学習ステップ数: {self.max_train_steps}")
        self.metadata = self._base_metadata()
        self.sleep(startup * 0.05)  # hashing the base model

        if a.logging_dir and a.log_with in (None, "tensorboard", "all"):
            tb_dir = os.path.join(a.logging_dir, (a.log_prefix or "") + self.logging_ts, a.log_tracker_name or "network_train")
            self.tb = EventWriter(tb_dir, wall_time=self.h.now(), hostname=sim.hostname)
        self.lr_descriptions = self._lr_tags()
        if a.sample_at_first:
            self._sample(epoch=0, steps=0)
        if self.tb is not None:
            self.tb.log({}, step=0)  # accelerator.log({}, step=0): writes nothing, flushes

        dtype = {"fp16": "torch.float16", "bf16": "torch.bfloat16"}.get(a.mixed_precision or "no", "torch.float32")
        if a.fp8_base or a.fp8_base_unet:
            unet_dtype = "torch.float8_e4m3fn"
        else:
            unet_dtype = dtype
        te_deleted = bool(a.cache_text_encoder_outputs and self.unet_only)
        if te_deleted:
            self.log("te_not_needed", "text_encoder is not needed for training. deleting to save memory.")
        self.log("unet_dtype", f"unet dtype: {unet_dtype}, device: cuda:0")
        for i in range(0 if te_deleted else 2):
            self.log("te_dtype", f"text_encoder [{i}] dtype: {dtype}, device: cuda:0")

        self.bar = self.new_bar(self.max_train_steps, desc="steps", smoothing=0)
        if sim.fault in ("oom", "crash", "hang") and sim.fault_step <= 0:
            self._fault(sim.fault)
        self.recorder = LossRecorder()
        self._loop()
        self._finish()

    # -- phases --------------------------------------------------------------------------------
    def _log_dataset(self, group: DatasetGroup, seconds: float) -> None:
        a = self.args
        if a.dataset_config:
            self.log("dataset_config", f"Loading dataset config from {a.dataset_config}")
        for ds in group.datasets:
            self.log("prepare_images", "prepare images.")
            for s in ds.subsets:
                self.log("image_size_from_cache", "get image size from name of cache files")
                self.simple_bar(s.img_count, 0.0)
                self.log("set_image_size", f"set image size from cache files: 0/{s.img_count}")
                self.log("found_directory", f"found directory {s.image_dir} contains {s.img_count} image files")
                self.simple_bar(s.img_count, seconds * 0.2 / max(1, len(ds.subsets)), desc="read caption")
            self.log("train_images", f"{ds.num_train_images} train images with repeats.")
            self.log("reg_images", f"{ds.num_reg_images} reg images with repeats.")
            if ds.num_reg_images == 0:
                self.log("no_reg", "no regularization images / 正則化画像が見つかりませんでした", logging.WARNING)
            if ds.num_validation_images:
                self.log("prepare_images", "prepare images.")
                for s in ds.subsets:
                    if s.val_count:
                        self.log("found_directory", f"found directory {s.image_dir} contains {s.img_count + s.val_count} image files")
                self.log("train_images", f"{ds.num_validation_images} validation images with repeats.")
                self.log("reg_images", "0 reg images with repeats.")
                self.log("no_reg", "no regularization images / 正則化画像が見つかりませんでした", logging.WARNING)
        for i, ds in enumerate(group.datasets):
            self.log("dataset_info", dataset_info_text(ds, i))
        for i, ds in enumerate(group.datasets):
            self.log("prepare_dataset", f"[Prepare dataset {i}]")
            self.log("loading_sizes", "loading image sizes.")
            self.simple_bar(sum(s.img_count for s in ds.subsets), seconds * 0.5)
            if ds.enable_bucket:
                self.log("make_buckets", "make buckets")
                self.log("bucket_counts", "number of images (including repeats) / 各bucketの画像枚数（繰り返し回数を含む）")
                for j, (reso, count) in enumerate(ds.buckets):
                    self.log("bucket", f"bucket {j}: resolution {reso}, count: {count}")
                self.log("mean_ar", f"mean ar error (without repeats): {ds.mean_ar_error}")
            else:
                self.log("make_buckets", "prepare dataset")

    def _log_model_loading(self, seconds: float) -> None:
        a = self.args
        self.log("loading_model", "loading model for process 0/1")
        self.log("load_checkpoint", f"load StableDiffusion checkpoint: {a.pretrained_model_name_or_path}")
        steps = [
            ("building_unet", "building U-Net", 0.0),
            ("loading_unet", "loading U-Net from checkpoint", 0.05),
            ("unet_keys", "U-Net: <All keys matched successfully>", 0.5),
            ("building_te", "building text encoders", 0.0),
            ("loading_te", "loading text encoders from checkpoint", 0.05),
            ("te1_keys", "text encoder 1: <All keys matched successfully>", 0.1),
            ("te2_keys", "text encoder 2: <All keys matched successfully>", 0.2),
            ("building_vae", "building VAE", 0.0),
            ("loading_vae", "loading VAE from checkpoint", 0.05),
            ("vae_keys", "VAE: <All keys matched successfully>", 0.05),
        ]
        for key, msg, frac in steps:
            self.sleep(seconds * frac)
            self.log(key, msg)

    def _log_network(self) -> None:
        a = self.args
        self.c.print(f"import network module: {a.network_module or 'networks.lora'}")
        dim = a.network_dim if a.network_dim is not None else 4
        alpha = float(a.network_alpha if a.network_alpha is not None else 1.0)
        self.log("create_network", f"create LoRA network. base dim (rank): {dim}, alpha: {alpha}")
        self.log("dropout", f"neuron dropout: p={a.network_dropout}, rank dropout: p=None, module dropout: p=None")
        self.log("create_te", "create LoRA for Text Encoder 1:")
        self.log("create_te", "create LoRA for Text Encoder 2:")
        self.log("create_te_total", f"create LoRA for Text Encoder: {TE_MODULES} modules.")
        self.log("create_unet", f"create LoRA for U-Net: {UNET_MODULES} modules.")
        if not self.unet_only:
            self.log("enable_te", f"enable LoRA for text encoder: {TE_MODULES} modules")
        if not self.te_only:
            self.log("enable_unet", f"enable LoRA for U-Net: {UNET_MODULES} modules")

    def _optimizer_name(self) -> tuple[str, str]:
        """(log description, ss_optimizer class path)."""
        t = (self.args.optimizer_type or "").lower()
        if self.args.use_8bit_adam or t == "adamw8bit":
            return "8-bit AdamW optimizer", "bitsandbytes.optim.adamw.AdamW8bit"
        if t in ("", "adamw"):
            return "AdamW optimizer", "torch.optim.adamw.AdamW"
        if t == "adafactor":
            return "Adafactor optimizer", "transformers.optimization.Adafactor"
        if t == "prodigy":
            return "Prodigy optimizer", "prodigyopt.prodigy.Prodigy"
        if t == "lion":
            return "Lion optimizer", "lion_pytorch.lion_pytorch.Lion"
        name = self.args.optimizer_type
        return f"{name} optimizer", name

    def _optimizer_kwargs(self) -> dict[str, object]:
        kw: dict[str, object] = {}
        for item in self.args.optimizer_args or []:
            if "=" in item:
                k, v = item.split("=", 1)
                try:
                    kw[k] = json.loads(v.lower() if v in ("True", "False") else v)
                except ValueError:
                    kw[k] = v
        return kw

    def _optimizer_line(self) -> str:
        desc, _ = self._optimizer_name()
        return f"use {desc} | {self._optimizer_kwargs()}"

    def _lr_tags(self) -> list[tuple[str, str]]:
        """(tag, which lr) in the order ``generate_step_logs`` produces them (REF §2.2)."""
        if self.unet_only:
            return [("lr/unet", "unet"), ("lr/group0", "unet")]
        if self.te_only:
            return [("lr/textencoder", "te"), ("lr/group0", "te")]
        return [("lr/textencoder", "te"), ("lr/unet", "unet"), ("lr/group1", "unet")]

    def _lr(self, which: str, step: int) -> float:
        a = self.args
        if which == "te":
            base = a.text_encoder_lr[0] if a.text_encoder_lr else a.learning_rate
        else:
            base = a.unet_lr if a.unet_lr is not None else a.learning_rate
        mult = lr_lambda(
            a.lr_scheduler or "constant",
            step,
            self.max_train_steps,
            self.warmup,
            a.lr_scheduler_num_cycles or 1,
            a.lr_scheduler_power or 1.0,
        )
        return float(base) * mult

    # -- the epoch loop ------------------------------------------------------------------------
    def _loss(self, step_progress: float) -> float:
        base = 0.125 - 0.035 * step_progress
        return max(0.005, base + self.rng.gauss(0.0, 0.025))

    def _loop(self) -> None:
        a, sim = self.args, self.sim
        assert self.bar is not None
        n_workers = min(a.max_data_loader_n_workers if a.max_data_loader_n_workers is not None else 8, os.cpu_count() or 1)
        micro_seconds = sim.step_seconds / self.accum
        nan_from = sim.fault_step if sim.fault == "nan" else None
        for epoch in range(self.epoch_to_start, self.num_train_epochs):
            self.c.print(f"\nepoch {epoch + 1}/{self.num_train_epochs}\n")
            self.metadata["ss_epoch"] = str(epoch + 1)
            self.current_epoch = epoch + 1
            forked = not a.persistent_data_loader_workers or epoch == 0
            if n_workers > 0:
                if forked:
                    if self.h.fork_workers:
                        self.workers.spawn(n_workers, self.c.flush_all)
                    else:
                        self.c.flush_all()  # multiprocessing flushes stdout/stderr before fork
                for w in range(n_workers):
                    current = 0 if forked and not a.persistent_data_loader_workers else epoch
                    self.c.worker_log(w, "epoch_incremented", f"epoch is incremented. current_epoch: {current}, epoch: {epoch + 1}", forked=forked)
            else:
                self.log("epoch_incremented", f"epoch is incremented. current_epoch: {epoch}, epoch: {epoch + 1}")
            for step in range(self.batches):
                sync = (step + 1) % self.accum == 0 or step == self.batches - 1
                completing = self.global_step + 1
                if sim.fault == "hang" and completing == sim.fault_step and step % self.accum == 0:
                    self._hang()
                if sim.fault in ("oom", "crash") and completing == sim.fault_step and sync:
                    self._fault(sim.fault)
                self.sleep(micro_seconds)
                progress = self.global_step / max(1, self.max_train_steps)
                loss = self._loss(progress)
                if sync:
                    self.bar.update(1)
                    self.global_step += 1
                if nan_from is not None and self.global_step >= nan_from:
                    loss = float("nan")
                if sync:
                    self._step_end(epoch)
                self.recorder.add(epoch=epoch, step=step, loss=loss)
                avr = self.recorder.moving_average
                norms: dict[str, float] = {}
                if a.scale_weight_norms:
                    keys_scaled = self.rng.randint(0, 12)
                    mean_norm = a.scale_weight_norms * (0.55 + 0.1 * self.rng.random())
                    max_norm = a.scale_weight_norms * (0.95 + 0.05 * self.rng.random())
                    self.bar.set_postfix(**{"Keys Scaled": keys_scaled, "Average key norm": mean_norm, "avr_loss": avr})
                    norms = {"max_norm/keys_scaled": keys_scaled, "max_norm/max_key_norm": max_norm, "norm/avg_key_norm": mean_norm}
                else:
                    self.bar.set_postfix(avr_loss=avr)
                if self.tb is not None:
                    logs = {"loss/current": loss, "loss/average": avr, **norms}
                    for tag, which in self.lr_descriptions:
                        logs[tag] = self._lr(which, self.global_step + self.lr_offset)
                    self.tb.log(logs, step=self.global_step, wall_time=self.h.now())
                if sync and a.validate_every_n_steps and self.global_step % a.validate_every_n_steps == 0:
                    self._validate(epoch, per_epoch=False)
                if self.global_step >= self.max_train_steps:
                    break
            if not a.persistent_data_loader_workers:
                self.workers.stop()  # the epoch's iterator is exhausted: workers shut down
            if a.validate_every_n_epochs is None or (epoch + 1) % a.validate_every_n_epochs == 0:
                self._validate(epoch, per_epoch=True)
            if self.tb is not None:
                self.tb.log({"loss/epoch_average": self.recorder.moving_average}, step=epoch + 1, wall_time=self.h.now())
            if a.save_every_n_epochs is not None:
                saving = (epoch + 1) % a.save_every_n_epochs == 0 and (epoch + 1) < self.num_train_epochs
                if saving:
                    name = epoch_file_name(a.output_name, epoch + 1, self.ext)
                    self._save_model(name, self.global_step, epoch + 1)
                    if a.save_last_n_epochs is not None:
                        r = epoch + 1 - a.save_every_n_epochs * a.save_last_n_epochs
                        if r >= 0:
                            self._remove_model(epoch_file_name(a.output_name, r, self.ext))
                    if a.save_state:
                        self._save_state_epoch(epoch + 1)
            self._sample(epoch=epoch + 1, steps=self.global_step)
            self.bar.unpause()
            if self.global_step >= self.max_train_steps:
                break

    def _step_end(self, epoch: int) -> None:
        """After an optimizer step: step sampling, then step saves (+ removal, state)."""
        a = self.args
        assert self.bar is not None
        self._sample(epoch=None, steps=self.global_step)
        self.bar.unpause()
        if a.save_every_n_steps is not None and self.global_step % a.save_every_n_steps == 0:
            name = step_file_name(a.output_name, self.global_step, self.ext)
            self._save_model(name, self.global_step, epoch)
            if a.save_state:
                self._save_state_step()
            if a.save_last_n_steps is not None:
                r = self.global_step - a.save_last_n_steps - 1
                r -= r % a.save_every_n_steps
                if r >= 0:
                    self._remove_model(step_file_name(a.output_name, r, self.ext))

    def _finish(self) -> None:
        a = self.args
        self.metadata["ss_epoch"] = str(self.num_train_epochs)
        if self.tb is not None:
            self.tb.close()  # accelerator.end_training()
            self.tb = None
        if a.save_state or a.save_state_on_train_end:
            self.log("state_empty", "")
            self.log("saving_last_state", "saving last state.")
            self._write_state(self.output_dir / f"{a.output_name or 'last'}-state", self.num_train_epochs, self.global_step)
        name = f"{a.output_name or 'last'}{self.ext}"
        self._save_model(name, self.global_step, self.num_train_epochs)
        self.c.flush_stdout()  # in the real run the final "saving checkpoint" precedes "model saved."
        self.log("model_saved", "model saved.")

    def _validate(self, epoch: int, *, per_epoch: bool) -> None:
        """Validation over the split-off images at 4 fixed timesteps (200, 400, 600, 800).

        The bar is never closed explicitly: CPython closes it (final redraw + newline) when the
        variable holding it is rebound to the next validation bar, or at exit.
        """
        a = self.args
        val_batches = self.group.num_validation_batches
        if not val_batches:
            return
        assert self.bar is not None
        steps = min(a.max_validation_steps, val_batches) if a.max_validation_steps is not None else val_batches
        timesteps = [200, 400, 600, 800]
        desc = "epoch validation steps" if per_epoch else "validation steps"
        key = "val_epoch_avg_loss" if per_epoch else "val_avg_loss"
        bar = self.new_bar(steps * len(timesteps), desc=desc, smoothing=0, position=1)
        previous = self._val_bars.get(per_epoch)
        self._val_bars[per_epoch] = bar
        if previous is not None:
            previous.close()
        recorder = self._val_recorders.setdefault(per_epoch, LossRecorder())
        i = 0
        for _ in range(steps):
            for t in timesteps:
                self.sleep(self.sim.step_seconds * 0.2 / self.accum)
                loss = self._loss(self.global_step / max(1, self.max_train_steps)) * (1.05 + t / 4000)
                recorder.add(epoch=epoch, step=i, loss=loss)
                bar.update(1)
                bar.set_postfix_ordered([(key, recorder.moving_average), ("timestep", t)])
                i += 1
        if self.tb is not None:
            avg = recorder.moving_average
            div = avg - self.recorder.moving_average
            if per_epoch:
                logs = {"loss/validation/epoch_average": avg, "loss/validation/epoch_divergence": div}
                self.tb.log(logs, step=epoch + 1, wall_time=self.h.now())
            else:
                logs = {"loss/validation/step_average": avg, "loss/validation/step_divergence": div}
                self.tb.log(logs, step=self.global_step, wall_time=self.h.now())
        self.bar.unpause()

    def _resume(self, state_dir: str) -> None:
        """``--resume DIR``: accelerate loads the state; only the epoch counter moves on.

        Without ``--skip_until_initial_step`` sd-scripts restarts ``global_step`` at 0, so the
        bar and the TensorBoard steps start from 0 again in a new timestamped log directory.
        """
        self.log("resume", f"resume training from local state: {state_dir}")
        self.log("load_state", f"Loading states from {state_dir}")
        for what, name in (("model", "model.safetensors"), ("optimizer", "optimizer.bin"), ("scheduler", "scheduler.bin")):
            self.log("load_state_part", f"All {what} weights loaded successfully" if what == "model" else f"All {what} states loaded successfully")
        try:
            with open(os.path.join(state_dir, "train_state.json"), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        self.log("load_train_state", f"load train state from {state_dir}/train_state.json: {state}")
        steps_from_state = int(state.get("current_step", 0) or 0)
        if self.args.initial_epoch is not None:
            steps_from_state = (self.args.initial_epoch - 1) * self.steps_per_epoch
        elif self.args.initial_step is not None:
            steps_from_state = self.args.initial_step
        self.epoch_to_start = steps_from_state // self.steps_per_epoch if steps_from_state > 0 else 0
        self.lr_offset = int(state.get("current_step", 0) or 0)

    def _hang(self) -> None:
        """Process alive, no output, no progress (a deadlocked NCCL call or a stuck loader)."""
        self._hanging = True
        if self.sim.hang_seconds > 0:
            self.sleep(self.sim.hang_seconds)
            self._hanging = False
            return
        while True:
            self.h.sleep(3600)

    def _fault(self, kind: str) -> None:
        if kind == "oom":
            raise SimulatedFault(kind, tracebacks.oom_traceback())
        if kind == "crash":
            raise SimulatedFault(kind, tracebacks.crash_traceback())
        if kind == "hang":
            self._hang()

    # -- saving --------------------------------------------------------------------------------
    def _base_metadata(self) -> dict[str, str]:
        a = self.args
        _, optimizer = self._optimizer_name()
        kw = self._optimizer_kwargs()
        if kw:
            optimizer += "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")"
        te_lr = a.text_encoder_lr[0] if a.text_encoder_lr else None
        values: dict[str, object] = {
            "ss_session_id": self.session_id,
            "ss_training_started_at": self.training_started_at,
            "ss_output_name": a.output_name,
            "ss_learning_rate": a.learning_rate,
            "ss_text_encoder_lr": te_lr,
            "ss_unet_lr": a.unet_lr,
            "ss_num_train_images": self.group.num_train_images,
            "ss_num_validation_images": self.group.num_validation_images,
            "ss_num_reg_images": self.group.num_reg_images,
            "ss_num_batches_per_epoch": self.batches,
            "ss_num_epochs": self.num_train_epochs,
            "ss_gradient_checkpointing": a.gradient_checkpointing,
            "ss_gradient_accumulation_steps": a.gradient_accumulation_steps,
            "ss_max_train_steps": self.max_train_steps,
            "ss_lr_warmup_steps": a.lr_warmup_steps,
            "ss_lr_scheduler": a.lr_scheduler,
            "ss_network_module": a.network_module,
            "ss_network_dim": a.network_dim,
            "ss_network_alpha": a.network_alpha,
            "ss_network_dropout": a.network_dropout,
            "ss_mixed_precision": a.mixed_precision,
            "ss_full_fp16": bool(a.full_fp16),
            "ss_v2": bool(a.v2),
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_clip_skip": a.clip_skip,
            "ss_max_token_length": a.max_token_length,
            "ss_cache_latents": bool(a.cache_latents),
            "ss_seed": a.seed,
            "ss_lowram": a.lowram,
            "ss_noise_offset": a.noise_offset,
            "ss_multires_noise_iterations": a.multires_noise_iterations,
            "ss_multires_noise_discount": a.multires_noise_discount,
            "ss_adaptive_noise_scale": a.adaptive_noise_scale,
            "ss_zero_terminal_snr": a.zero_terminal_snr,
            "ss_training_comment": a.training_comment,
            "ss_sd_scripts_commit_hash": SD_SCRIPTS_COMMIT,
            "ss_optimizer": optimizer,
            "ss_max_grad_norm": a.max_grad_norm,
            "ss_caption_dropout_rate": a.caption_dropout_rate,
            "ss_caption_dropout_every_n_epochs": a.caption_dropout_every_n_epochs,
            "ss_caption_tag_dropout_rate": a.caption_tag_dropout_rate,
            "ss_face_crop_aug_range": a.face_crop_aug_range,
            "ss_prior_loss_weight": a.prior_loss_weight,
            "ss_min_snr_gamma": a.min_snr_gamma,
            "ss_scale_weight_norms": a.scale_weight_norms,
            "ss_ip_noise_gamma": a.ip_noise_gamma,
            "ss_debiased_estimation": bool(a.debiased_estimation_loss),
            "ss_noise_offset_random_strength": a.noise_offset_random_strength,
            "ss_ip_noise_gamma_random_strength": a.ip_noise_gamma_random_strength,
            "ss_loss_type": a.loss_type,
            "ss_huber_schedule": a.huber_schedule,
            "ss_huber_scale": a.huber_scale,
            "ss_huber_c": a.huber_c,
            "ss_fp8_base": bool(a.fp8_base),
            "ss_fp8_base_unet": bool(a.fp8_base_unet),
            "ss_validation_seed": a.validation_seed,
            "ss_validation_split": a.validation_split,
            "ss_max_validation_steps": a.max_validation_steps,
            "ss_validate_every_n_epochs": a.validate_every_n_epochs,
            "ss_validate_every_n_steps": a.validate_every_n_steps,
            "ss_resize_interpolation": a.resize_interpolation,
        }
        md = {k: str(v) for k, v in values.items()}
        md.update(datasets_metadata(self.group))
        if a.network_args:
            net_args: dict[str, str] = {}
            for item in a.network_args:
                k, _, v = item.partition("=")
                net_args[k] = v
            md["ss_network_args"] = json.dumps(net_args)
        model = a.pretrained_model_name_or_path or "sd_xl_base_1.0.safetensors"
        digest = hashlib.sha256(("model:" + model).encode()).hexdigest()
        md["ss_sd_model_name"] = os.path.basename(model)
        md["ss_sd_model_hash"] = digest[:8]
        md["ss_new_sd_model_hash"] = digest
        if a.vae:
            vdigest = hashlib.sha256(("vae:" + a.vae).encode()).hexdigest()
            md["ss_vae_name"] = os.path.basename(a.vae)
            md["ss_vae_hash"] = vdigest[:8]
            md["ss_new_vae_hash"] = vdigest
        if a.no_metadata:
            keep = ("ss_v2", "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args")
            md = {k: md[k] for k in keep if k in md}
        self.no_metadata = bool(a.no_metadata)
        return md

    def _modelspec(self, now: float) -> dict[str, str]:
        a = self.args
        res = "1024x1024"
        if a.resolution:
            parts = [p.strip() for p in str(a.resolution).split(",")]
            res = f"{parts[0]}x{parts[-1]}"
        spec = {
            "modelspec.sai_model_spec": "1.0.1",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
            "modelspec.title": a.metadata_title or a.output_name or f"LoRA@{self.training_started_at}",
            "modelspec.resolution": res,
            "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
            "modelspec.prediction_type": "v" if a.v_parameterization else "epsilon",
            "modelspec.implementation_version": f"sd-scripts/{SD_SCRIPTS_COMMIT}",
        }
        if a.clip_skip is not None:
            spec["modelspec.encoder_layer"] = str(a.clip_skip)
        for opt in ("author", "description", "license", "tags", "usage_hint", "merged_from", "trigger_phrase", "preprocessor"):
            v = getattr(a, f"metadata_{opt}", None)
            if v:
                spec[f"modelspec.{opt}"] = v
        if a.min_timestep is not None or a.max_timestep is not None:
            spec["modelspec.timestep_range"] = f"{a.min_timestep or 0},{a.max_timestep or 1000}"
        return spec

    def _specs(self) -> list[tuple[str, list[int]]]:
        rank = self.args.network_dim if self.args.network_dim is not None else 4
        return lorafile.tensor_specs(rank=rank, unet=not self.te_only, text_encoders=not self.unet_only, real_size=self.sim.real_size)

    def _save_model(self, name: str, steps: int, epoch: int) -> None:
        path = self.output_dir / name
        self.c.print(f"\nsaving checkpoint: {os.path.join(str(self.args.output_dir), name)}")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        now = self.h.now()
        md = dict(self.metadata)
        if not self.no_metadata:
            md["ss_training_finished_at"] = str(now)
            md["ss_steps"] = str(steps)
            md["ss_epoch"] = str(epoch)
        md.update(self._modelspec(now))
        specs = self._specs()
        alpha = float(self.args.network_alpha if self.args.network_alpha is not None else 1.0)
        seed = self.sim.seed * 1000003 + steps
        dtype = lorafile.dtype_for(self.args.save_precision, bool(self.args.full_fp16), bool(self.args.full_bf16))
        if self.ext != ".safetensors":
            # .ckpt/.pt: a plain torch.save(state_dict) zip, no metadata
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04" + hashlib.sha256(str(seed).encode()).digest() * 64)
            return
        model_hash, legacy = lorafile.sshs_hashes(specs, md, alpha, seed, dtype)
        md["sshs_model_hash"] = model_hash
        md["sshs_legacy_hash"] = legacy
        order = list(md)
        random.Random(self.session_id).shuffle(order)  # a Rust HashMap: no defined order
        md = {k: md[k] for k in order}
        lorafile.write_lora(
            path, specs, md, alpha=alpha, seed=seed, seconds=self.sim.step_seconds * 0.5, sleep=self.h.sleep, dtype=dtype
        )

    def _remove_model(self, name: str) -> None:
        path = self.output_dir / name
        if path.exists():
            self.c.print(f"removing old checkpoint: {os.path.join(str(self.args.output_dir), name)}")
            path.unlink()

    def _write_state(self, state_dir: Path, epoch: int, step: int) -> None:
        a = self.args
        state_dir.mkdir(parents=True, exist_ok=True)
        self.log("save_current_state", f"Saving current state to {state_dir}")
        self.log("train_state", f"save train state to {state_dir}/train_state.json at epoch {epoch} step {step}")
        with open(state_dir / "train_state.json", "w", encoding="utf-8") as f:
            json.dump({"current_epoch": epoch, "current_step": step}, f)
        specs = self._specs()
        lorafile.write_lora(state_dir / "model.safetensors", specs, {"format": "pt"}, alpha=float(a.network_alpha or 1.0), seed=step)
        self.log("model_weights_saved", f"Model weights saved in {state_dir}/model.safetensors")
        (state_dir / "optimizer.bin").write_bytes(b"PK\x03\x04" + os.urandom(2048))
        self.log("optimizer_saved", f"Optimizer state saved in {state_dir}/optimizer.bin")
        (state_dir / "scheduler.bin").write_bytes(b"PK\x03\x04" + os.urandom(256))
        self.log("scheduler_saved", f"Scheduler state saved in {state_dir}/scheduler.bin")
        if a.mixed_precision == "fp16":
            (state_dir / "scaler.pt").write_bytes(b"PK\x03\x04" + os.urandom(128))
            self.log("scaler_saved", f"Gradient scaler state saved in {state_dir}/scaler.pt")
        import pickle

        (state_dir / "random_states_0.pkl").write_bytes(pickle.dumps({"step": step, "random_state": self.rng.getstate()}))
        self.log("random_saved", f"Random states saved in {state_dir}/random_states_0.pkl")

    def _save_state_epoch(self, epoch_no: int) -> None:
        a = self.args
        self.log("state_empty", "")
        self.log("saving_state", f"saving state at epoch {epoch_no}")
        self._write_state(self.output_dir / state_dir_name(epoch_file_name(a.output_name, epoch_no, "")),
                          epoch_no, self.global_step)
        last_n = a.save_last_n_epochs_state or a.save_last_n_epochs
        if last_n is not None:
            r = epoch_no - a.save_every_n_epochs * last_n
            old = self.output_dir / state_dir_name(epoch_file_name(a.output_name, r, ""))
            if r >= 0 and old.exists():
                self.log("removing_state", f"removing old state: {old}")
                shutil.rmtree(old, ignore_errors=True)

    def _save_state_step(self) -> None:
        a = self.args
        step = self.global_step
        self.log("state_empty", "")
        self.log("saving_state", f"saving state at step {step}")
        self._write_state(self.output_dir / state_dir_name(step_file_name(a.output_name, step, "")),
                          self.current_epoch, step)
        last_n = a.save_last_n_steps_state or a.save_last_n_steps
        if last_n is not None:
            r = step - last_n - 1
            r -= r % a.save_every_n_steps
            old = self.output_dir / state_dir_name(step_file_name(a.output_name, r, ""))
            if r >= 0 and old.exists():
                self.log("removing_state", f"removing old state: {old}")
                shutil.rmtree(old, ignore_errors=True)

    # -- sampling ------------------------------------------------------------------------------
    def _sample(self, *, epoch: int | None, steps: int) -> None:
        a = self.args
        if steps == 0:
            if not a.sample_at_first:
                return
        else:
            if a.sample_every_n_steps is None and a.sample_every_n_epochs is None:
                return
            if a.sample_every_n_epochs is not None:
                if epoch is None or epoch % a.sample_every_n_epochs != 0:
                    return
            elif steps % a.sample_every_n_steps != 0 or epoch is not None:
                return
        if not a.sample_prompts:
            return
        self.log("sample_empty", "")
        self.log("sample_header", f"generating sample images at step / サンプル画像生成 ステップ: {steps}")
        prompts = _read_prompts(a.sample_prompts)
        if prompts is None:
            self.log("no_prompt_file", f"No prompt file / プロンプトファイルがありません: {a.sample_prompts}", logging.ERROR)
            return
        sample_dir = self.output_dir / "sample"
        sample_dir.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(prompts):
            self.log("sample_prompt", f"prompt: {p['prompt']}")
            if p.get("negative_prompt") is not None:
                self.log("sample_negative", f"negative_prompt: {p['negative_prompt']}")
            h, w = int(p.get("height", 512)), int(p.get("width", 512))
            n_steps = int(p.get("sample_steps", 30))
            self.log("sample_height", f"height: {h}")
            self.log("sample_width", f"width: {w}")
            self.log("sample_steps", f"sample_steps: {n_steps}")
            self.log("sample_scale", f"scale: {p.get('scale', 7.5)}")
            self.log("sample_sampler", f"sample_sampler: {p.get('sample_sampler', a.sample_sampler)}")
            seed = p.get("seed")
            if seed is not None:
                self.log("sample_seed", f"seed: {seed}")
            bar = self.new_bar(n_steps, leave=False, position=1 if self.bar is not None else 0)
            per = self.sim.step_seconds * 1.5 / max(1, n_steps)
            for _ in range(n_steps):
                self.sleep(per)
                bar.update(1)
            bar.close()
            ts = time.strftime("%Y%m%d%H%M%S", time.localtime(self.h.now()))
            fname = sample_file_name(a.output_name, epoch=epoch, step=steps, index=i, timestamp=ts, seed=seed)
            (sample_dir / fname).write_bytes(png_bytes(w, h, i + steps))


def _read_prompts(path: str) -> list[dict[str, Any]] | None:
    """Prompt lines with sd-scripts' ``--n --w --h --d --l --s --ss`` options (.txt only)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError:
        return None
    out: list[dict[str, Any]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        parts = line.split(" --")
        d: dict[str, Any] = {"prompt": parts[0].strip()}
        for part in parts[1:]:
            key, _, val = part.partition(" ")
            val = val.strip()
            try:
                if key == "n":
                    d["negative_prompt"] = val
                elif key == "w":
                    d["width"] = int(val)
                elif key == "h":
                    d["height"] = int(val)
                elif key == "d":
                    d["seed"] = int(val)
                elif key == "l":
                    d["scale"] = float(val)
                elif key == "s":
                    d["sample_steps"] = int(val)
                elif key == "ss":
                    d["sample_sampler"] = val
            except ValueError:
                continue
        out.append(d)
    return out


def command_line(argv: list[str]) -> str:
    """For messages: the argv as a shell line."""
    return shlex.join(argv)


__all__ = ["SD_SCRIPTS_DIR", "Hooks", "LossRecorder", "SimulatedTrainer", "lr_lambda"]
