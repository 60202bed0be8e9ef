"""The simulated ``sdxl_train_network.py`` run: phases, steps, saves, samples, faults.

The control flow mirrors ``train_network.py:NetworkTrainer.train`` (sd-scripts v0.10.1):
dataset preparation, model loading, latent caching, the "running training" block, the epoch
loop with gradient accumulation (TensorBoard points per micro-batch, tqdm update per
optimizer step, ``set_postfix`` per micro-batch), epoch/step saves with their removal rules,
``--save_state`` directories, sampling, the final save and ``model saved.``. Only the
numbers are invented (the loss curve); every name, line and format is the real one.

The parts live beside it: :mod:`~sdxl_tui.sim.base` (state, clock, bars),
:mod:`~sdxl_tui.sim.startup` (the lines before training), :mod:`~sdxl_tui.sim.saving`,
:mod:`~sdxl_tui.sim.sampling`, :mod:`~sdxl_tui.sim.metadata` and :mod:`~sdxl_tui.sim.schedule`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

from sdxl_tui.formats.names import epoch_file_name, step_file_name
from sdxl_tui.formats.trainstate import TRAIN_STATE_FILE, epoch_to_start, parse_train_state, skip_start
from sdxl_tui.sim import tracebacks
from sdxl_tui.sim.base import Hooks, SimulatedFault
from sdxl_tui.sim.console import SD_SCRIPTS_DIR
from sdxl_tui.sim.dataset import load_dataset_group
from sdxl_tui.sim.metadata import base_metadata
from sdxl_tui.sim.ranks import ProcessGroup
from sdxl_tui.sim.sampling import Sampling
from sdxl_tui.sim.saving import Saving
from sdxl_tui.sim.schedule import LossRecorder, learning_rate, lr_lambda, lr_tags, optimizer_line
from sdxl_tui.sim.startup import StartupLog
from sdxl_tui.sim.tfevents import EventWriter


class SimulatedTrainer(StartupLog, Saving, Sampling):
    """One simulated run. ``run()`` returns the exit status (raises nothing but KeyboardInterrupt)."""

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
        if self.dist is not None:
            self.dist.close()
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
        self._prepare(sim.startup_seconds)
        self._count_steps()
        self.epoch_to_start = 0
        self.lr_offset = 0  # a resumed scheduler continues from its saved step count
        self.steps_from_state = 0
        self.true_offset = 0  # the run's true step is global_step + true_offset (the loss curve)
        self.skip_batches = 0  # --skip_until_initial_step: micro-batches skipped in the first epoch
        self.bar_total = self.max_train_steps
        if a.resume:
            self._resume(a.resume)
        self._print_running()
        self._initial_step()  # after the block, as in train_network.py
        self.metadata = base_metadata(
            a,
            self.group,
            session_id=self.session_id,
            started_at=self.training_started_at,
            batches=self.batches,
            epochs=self.num_train_epochs,
            max_steps=self.max_train_steps,
            sd1=sim.sd1,
        )
        self.no_metadata = bool(a.no_metadata)
        self.sleep(sim.startup_seconds * 0.05)  # hashing the base model
        self._start_tracking()
        self.bar = self.new_bar(self.bar_total, desc="steps", smoothing=0)
        if sim.fault in ("oom", "crash", "hang") and sim.fault_step <= 0:
            self._fault(sim.fault)
        self.recorder = LossRecorder()
        self._loop()
        self._finish()

    def _prepare(self, startup: float) -> None:
        """Settings, dataset, models, latents, network and optimizer, up to the step count."""
        a = self.args
        if a.config_file:
            path = a.config_file if a.config_file.endswith(".toml") else a.config_file + ".toml"
            self.log("settings", f"Loading settings from {path}...")
        if a.clip_skip is not None and not self.sim.sd1:  # SD1.5's train_network.py honours it
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
        self.dist = ProcessGroup(self.ranks)  # Accelerator(): a multi-rank launch joins its process group
        self.c.print_all("accelerator device:", self.ranks.device)
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
        self.log("use_optimizer", optimizer_line(a))

    def _count_steps(self) -> None:
        """Steps and epochs, as ``train_network.py:NetworkTrainer.train`` computes them."""
        a, sim = self.args, self.sim
        total = max(1, sim.batches_per_epoch or self.group.num_batches)
        self.batches = self.ranks.shard(total)  # per rank, after accelerator.prepare (sim/ranks.py)
        self.accum = max(1, a.gradient_accumulation_steps or 1)
        self.steps_per_epoch = math.ceil(self.batches / self.accum)
        if a.max_train_epochs is not None:
            self.max_train_steps = a.max_train_epochs * math.ceil(total / self.ranks.world_size / self.accum)
            self.c.print(
                f"override steps. steps for {a.max_train_epochs} epochs is / "
                f"指定エポックまでのステップ数: {self.max_train_steps}"
            )
        else:
            self.max_train_steps = a.max_train_steps
        self.num_train_epochs = math.ceil(self.max_train_steps / self.steps_per_epoch)
        if a.save_n_epoch_ratio is not None:
            a.save_every_n_epochs = math.floor(self.num_train_epochs / a.save_n_epoch_ratio) or 1
        warm = a.lr_warmup_steps or 0
        self.warmup = int(warm * self.max_train_steps) if isinstance(warm, float) else int(warm)
        if (a.lr_scheduler or "constant") == "constant" and self.warmup != 0:
            raise SimulatedFault("config", tracebacks.warmup_traceback("SchedulerType.CONSTANT"))

    def _print_running(self) -> None:
        """The ``running training / 学習開始`` block."""
        group = self.group
        self.c.print("running training / 学習開始")
        self.c.print(f"  num train images * repeats / 学習画像の数×繰り返し回数: {group.num_train_images}")
        self.c.print(f"  num validation images * repeats / 学習画像の数×繰り返し回数: {group.num_validation_images}")
        self.c.print(f"  num reg images / 正則化画像の数: {group.num_reg_images}")
        self.c.print(f"  num batches per epoch / 1epochのバッチ数: {self.batches}")
        self.c.print(f"  num epochs / epoch数: {self.num_train_epochs}")
        self.c.print(f"  batch size per device / バッチサイズ: {', '.join(str(d.batch_size) for d in group.datasets)}")
        self.c.print(f"  gradient accumulation steps / 勾配を合計するステップ数 = {self.accum}")
        self.c.print(f"  total optimization steps / 学習ステップ数: {self.max_train_steps}")

    def _start_tracking(self) -> None:
        """The TensorBoard writer, the first samples and the dtype lines before the first step."""
        a = self.args
        if a.logging_dir and a.log_with in (None, "tensorboard", "all") and self.ranks.is_main_process:
            tb_dir = os.path.join(
                a.logging_dir, (a.log_prefix or "") + self.logging_ts, a.log_tracker_name or "network_train"
            )
            self.tb = EventWriter(tb_dir, wall_time=self.h.now(), hostname=self.sim.hostname)
        self.lr_descriptions = lr_tags(unet_only=self.unet_only, te_only=self.te_only)
        if a.sample_at_first:
            self._sample(epoch=0, steps=0)
        if self.tb is not None:
            self.tb.log({}, step=0)  # accelerator.log({}, step=0): writes nothing, flushes
        self._log_skipped_epochs()

        dtype = {"fp16": "torch.float16", "bf16": "torch.bfloat16"}.get(a.mixed_precision or "no", "torch.float32")
        unet_dtype = "torch.float8_e4m3fn" if a.fp8_base or a.fp8_base_unet else dtype
        te_deleted = bool(a.cache_text_encoder_outputs and self.unet_only)
        if te_deleted:
            self.log("te_not_needed", "text_encoder is not needed for training. deleting to save memory.")
        self.log("unet_dtype", f"unet dtype: {unet_dtype}, device: cuda:0")
        for i in range(0 if te_deleted else 2):
            self.log("te_dtype", f"text_encoder [{i}] dtype: {dtype}, device: cuda:0")

    # -- phases --------------------------------------------------------------------------------
    def _lr(self, which: str, step: int) -> float:
        return learning_rate(self.args, which, step, total=self.max_train_steps, warmup=self.warmup)

    # -- the epoch loop ------------------------------------------------------------------------
    def _loss(self, step_progress: float) -> float:
        base = 0.125 - 0.035 * step_progress
        return max(0.005, base + self.rng.gauss(0.0, 0.025))

    def _loop(self) -> None:
        a, sim = self.args, self.sim
        assert self.bar is not None
        n_workers = min(
            a.max_data_loader_n_workers if a.max_data_loader_n_workers is not None else 8, os.cpu_count() or 1
        )
        nan_from = sim.fault_step if sim.fault == "nan" else None
        for epoch in range(self.epoch_to_start, self.num_train_epochs):
            self.c.print(f"\nepoch {epoch + 1}/{self.num_train_epochs}\n")
            self.metadata["ss_epoch"] = str(epoch + 1)
            self.current_epoch = epoch + 1
            self._start_epoch(epoch, n_workers)
            for step in range(self.batches):
                if self.skip_batches > 0:  # --skip_until_initial_step: data loaded and discarded
                    self.skip_batches -= 1
                    continue
                self._micro_step(epoch, step, nan_from)
                if self.global_step >= self.max_train_steps:
                    break
            self._end_epoch(epoch)
            self.bar.unpause()
            if self.global_step >= self.max_train_steps:
                break

    def _start_epoch(self, epoch: int, n_workers: int) -> None:
        """DataLoader workers (forked again each epoch unless persistent) log the new epoch."""
        a = self.args
        forked = not a.persistent_data_loader_workers or epoch == 0
        if n_workers > 0:
            if forked:
                if self.h.fork_workers:
                    self.workers.spawn(n_workers, self.c.flush_all)
                else:
                    self.c.flush_all()  # multiprocessing flushes stdout/stderr before fork
            for w in range(n_workers):
                current = 0 if forked and not a.persistent_data_loader_workers else epoch
                self.c.worker_log(
                    w,
                    "epoch_incremented",
                    f"epoch is incremented. current_epoch: {current}, epoch: {epoch + 1}",
                    forked=forked,
                )
        else:
            self.log("epoch_incremented", f"epoch is incremented. current_epoch: {epoch}, epoch: {epoch + 1}")

    def _micro_step(self, epoch: int, step: int, nan_from: int | None) -> None:
        """One micro-batch: faults, the optimizer step on sync, postfix, TensorBoard, validation."""
        a, sim = self.args, self.sim
        assert self.bar is not None
        sync = (step + 1) % self.accum == 0 or step == self.batches - 1
        completing = self.global_step + 1
        if sim.fault == "hang" and completing == sim.fault_step and step % self.accum == 0:
            self._hang()
        if sim.fault in ("oom", "crash") and completing == sim.fault_step and sync:
            self._fault(sim.fault)
        self.sleep(sim.step_seconds / self.accum)
        progress = (self.global_step + self.true_offset) / max(1, self.max_train_steps)
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
        norms = self._postfix(avr)
        if self.tb is not None:
            logs = {"loss/current": loss, "loss/average": avr, **norms}
            for tag, which in self.lr_descriptions:
                logs[tag] = self._lr(which, self.global_step + self.lr_offset)
            self.tb.log(logs, step=self.global_step, wall_time=self.h.now())
        if sync and a.validate_every_n_steps and self.global_step % a.validate_every_n_steps == 0:
            self._validate(epoch, per_epoch=False)

    def _postfix(self, avr: float) -> dict[str, float]:
        """The steps bar's postfix; with ``--scale_weight_norms`` also the norms TensorBoard logs."""
        assert self.bar is not None
        scale = self.args.scale_weight_norms
        if not scale:
            self.bar.set_postfix(avr_loss=avr)
            return {}
        keys_scaled = self.rng.randint(0, 12)
        mean_norm = scale * (0.55 + 0.1 * self.rng.random())
        max_norm = scale * (0.95 + 0.05 * self.rng.random())
        self.bar.set_postfix(**{"Keys Scaled": keys_scaled, "Average key norm": mean_norm, "avr_loss": avr})
        return {
            "max_norm/keys_scaled": keys_scaled,
            "max_norm/max_key_norm": max_norm,
            "norm/avg_key_norm": mean_norm,
        }

    def _end_epoch(self, epoch: int) -> None:
        """Workers stop, epoch validation, the epoch average, epoch saves (+ removal, state), samples."""
        a = self.args
        if not a.persistent_data_loader_workers:
            self.workers.stop()  # the epoch's iterator is exhausted: workers shut down
        if a.validate_every_n_epochs is None or (epoch + 1) % a.validate_every_n_epochs == 0:
            self._validate(epoch, per_epoch=True)
        if self.tb is not None:
            self.tb.log({"loss/epoch_average": self.recorder.moving_average}, step=epoch + 1, wall_time=self.h.now())
        if self.dist is not None:
            self.dist.wait_for_everyone()  # accelerator.wait_for_everyone() before the epoch's saves
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

    def _step_end(self, epoch: int) -> None:
        """After an optimizer step: step sampling, then step saves (+ removal, state)."""
        a = self.args
        assert self.bar is not None
        self._sample(epoch=None, steps=self.global_step)
        self.bar.unpause()
        if a.save_every_n_steps is not None and self.global_step % a.save_every_n_steps == 0:
            if self.dist is not None:
                self.dist.wait_for_everyone()
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
        if not self.ranks.is_main_process:
            return  # only the main process saves at the end (and logs "model saved.")
        if a.save_state or a.save_state_on_train_end:
            self.log("state_empty", "")
            self.log("saving_last_state", "saving last state.")
            self._write_state(
                self.output_dir / f"{a.output_name or 'last'}-state", self.num_train_epochs, self.global_step
            )
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
        """``--resume DIR``: accelerate loads the state, then the step to go on from is decided.

        Without ``--skip_until_initial_step`` sd-scripts restarts ``global_step`` at 0 and only
        the epoch counter moves on, so the bar and the TensorBoard steps start from 0 again in
        a new timestamped log directory (``formats/trainstate.py``).
        """
        self.log("resume", f"resume training from local state: {state_dir}")
        self.log("load_state", f"Loading states from {state_dir}")
        for what in ("model", "optimizer", "scheduler"):
            verb = "weights" if what == "model" else "states"
            self.log("load_state_part", f"All {what} {verb} loaded successfully")
        data: object
        try:
            with open(os.path.join(state_dir, TRAIN_STATE_FILE), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = None
        state = parse_train_state(data)
        if state is not None:
            self.log("load_train_state", f"load train state from {state_dir}/{TRAIN_STATE_FILE}: {data}")
        self.steps_from_state = state.step or 0 if state is not None else 0
        self.lr_offset = self.steps_from_state  # the scheduler's state was restored
        # the resumed launch draws other samples than the discarded branch did
        self.rng.seed(self.sim.seed * 7919 + self.steps_from_state + 1)

    def _initial_step(self) -> None:
        """``--initial_epoch``/``--initial_step`` win over the state; then where to start."""
        a = self.args
        initial = self.steps_from_state
        if a.initial_step is not None:
            initial = a.initial_step
        elif a.initial_epoch is not None:
            initial = (a.initial_epoch - 1) * self.steps_per_epoch
        self.true_offset = initial
        if not (a.skip_until_initial_step and initial > 0):
            self.epoch_to_start = epoch_to_start(initial, self.steps_per_epoch)
            return
        self.log("skipping_steps", f"skipping {initial} steps / {initial}ステップをスキップします")
        start = skip_start(initial, accumulation=self.accum, batches_per_epoch=self.batches,
                           max_train_steps=self.max_train_steps)
        self.epoch_to_start, self.skip_batches = start.epoch_to_start, start.skip_batches
        self.global_step, self.bar_total = start.global_step, start.bar_total
        self.true_offset = initial - start.global_step

    def _log_skipped_epochs(self) -> None:
        """The lines sd-scripts logs before the first step when it skips whole epochs."""
        if not self.skip_batches and self.bar_total == self.max_train_steps:
            return
        left = self.global_step + self.epoch_to_start * self.batches
        for e in range(self.epoch_to_start):
            self.log("skipping_epoch", f"skipping epoch {e + 1} because initial_step (multiplied) is {left}")
            left -= self.batches

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


__all__ = ["SD_SCRIPTS_DIR", "Hooks", "LossRecorder", "SimulatedTrainer", "lr_lambda"]
