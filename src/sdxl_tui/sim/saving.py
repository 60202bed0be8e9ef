"""Saving a simulated run: LoRA files with sd-scripts' metadata, ``-state`` folders, removals.

``train_network.py:NetworkTrainer.train`` (``save_model``, ``remove_model``) and
``library/train_util.py`` (``save_and_remove_state_on_epoch_end``, ``..._stepwise``,
``save_state_on_train_end``) decide the names and the removal rules; the names come from
:mod:`sdxl_tui.formats.names`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import shutil
from pathlib import Path

from sdxl_tui.formats.names import epoch_file_name, state_dir_name, step_file_name
from sdxl_tui.formats.trainstate import TRAIN_STATE_FILE, train_state_json
from sdxl_tui.sim import lorafile
from sdxl_tui.sim.base import TrainerBase
from sdxl_tui.sim.metadata import modelspec
from sdxl_tui.sim.ranks import main_process_only


class Saving(TrainerBase):
    """Checkpoint and state saves of one simulated run."""

    def _specs(self) -> list[tuple[str, list[int]]]:
        rank = self.args.network_dim if self.args.network_dim is not None else 4
        return lorafile.tensor_specs(
            rank=rank, unet=not self.te_only, text_encoders=not self.unet_only, real_size=self.sim.real_size,
            sd1=self.sim.sd1,
        )

    @main_process_only
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
        md.update(modelspec(self.args, now, self.training_started_at, sd1=self.sim.sd1))
        specs = self._specs()
        alpha = float(self.args.network_alpha if self.args.network_alpha is not None else 1.0)
        seed = self.sim.seed * 1000003 + steps + self.true_offset  # other weights than the discarded branch's
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
            path,
            specs,
            md,
            alpha=alpha,
            seed=seed,
            seconds=self.sim.step_seconds * 0.5,
            sleep=self.h.sleep,
            dtype=dtype,
        )

    @main_process_only
    def _remove_model(self, name: str) -> None:
        path = self.output_dir / name
        if path.exists():
            self.c.print(f"removing old checkpoint: {os.path.join(str(self.args.output_dir), name)}")
            path.unlink()

    def _write_state(self, state_dir: Path, epoch: int, step: int) -> None:
        a = self.args
        state_dir.mkdir(parents=True, exist_ok=True)
        self.log("save_current_state", f"Saving current state to {state_dir}")
        self.log("train_state", f"save train state to {state_dir}/{TRAIN_STATE_FILE} at epoch {epoch} step {step}")
        (state_dir / TRAIN_STATE_FILE).write_text(train_state_json(epoch, step), encoding="utf-8")
        specs = self._specs()
        lorafile.write_lora(
            state_dir / "model.safetensors", specs, {"format": "pt"}, alpha=float(a.network_alpha or 1.0), seed=step
        )
        self.log("model_weights_saved", f"Model weights saved in {state_dir}/model.safetensors")
        (state_dir / "optimizer.bin").write_bytes(b"PK\x03\x04" + os.urandom(2048))
        self.log("optimizer_saved", f"Optimizer state saved in {state_dir}/optimizer.bin")
        (state_dir / "scheduler.bin").write_bytes(b"PK\x03\x04" + os.urandom(256))
        self.log("scheduler_saved", f"Scheduler state saved in {state_dir}/scheduler.bin")
        if a.mixed_precision == "fp16":
            (state_dir / "scaler.pt").write_bytes(b"PK\x03\x04" + os.urandom(128))
            self.log("scaler_saved", f"Gradient scaler state saved in {state_dir}/scaler.pt")
        (state_dir / "random_states_0.pkl").write_bytes(
            pickle.dumps({"step": step, "random_state": self.rng.getstate()})
        )
        self.log("random_saved", f"Random states saved in {state_dir}/random_states_0.pkl")

    @main_process_only
    def _save_state_epoch(self, epoch_no: int) -> None:
        a = self.args
        self.log("state_empty", "")
        self.log("saving_state", f"saving state at epoch {epoch_no}")
        self._write_state(
            self.output_dir / state_dir_name(epoch_file_name(a.output_name, epoch_no, "")), epoch_no, self.global_step
        )
        last_n = a.save_last_n_epochs_state or a.save_last_n_epochs
        if last_n is not None:
            r = epoch_no - a.save_every_n_epochs * last_n
            old = self.output_dir / state_dir_name(epoch_file_name(a.output_name, r, ""))
            if r >= 0 and old.exists():
                self.log("removing_state", f"removing old state: {old}")
                shutil.rmtree(old, ignore_errors=True)

    @main_process_only
    def _save_state_step(self) -> None:
        a = self.args
        step = self.global_step
        self.log("state_empty", "")
        self.log("saving_state", f"saving state at step {step}")
        self._write_state(
            self.output_dir / state_dir_name(step_file_name(a.output_name, step, "")), self.current_epoch, step
        )
        last_n = a.save_last_n_steps_state or a.save_last_n_steps
        if last_n is not None:
            r = step - last_n - 1
            r -= r % a.save_every_n_steps
            old = self.output_dir / state_dir_name(step_file_name(a.output_name, r, ""))
            if r >= 0 and old.exists():
                self.log("removing_state", f"removing old state: {old}")
                shutil.rmtree(old, ignore_errors=True)
