"""Learning-rate schedules, the loss recorder and the optimizer's names as sd-scripts logs them.

``lr_lambda`` has the shapes of diffusers/transformers ``get_scheduler``; ``LossRecorder`` is
``library/train_util.py:LossRecorder``; the optimizer names are those of
``library/train_util.py:get_optimizer`` (its log line and the ``ss_optimizer`` class path).
"""

from __future__ import annotations

import json
import math
from argparse import Namespace


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



def optimizer_name(args: Namespace) -> tuple[str, str]:
    """(log description, ss_optimizer class path)."""
    t = (args.optimizer_type or "").lower()
    if args.use_8bit_adam or t == "adamw8bit":
        return "8-bit AdamW optimizer", "bitsandbytes.optim.adamw.AdamW8bit"
    if t in ("", "adamw"):
        return "AdamW optimizer", "torch.optim.adamw.AdamW"
    if t == "adafactor":
        return "Adafactor optimizer", "transformers.optimization.Adafactor"
    if t == "prodigy":
        return "Prodigy optimizer", "prodigyopt.prodigy.Prodigy"
    if t == "lion":
        return "Lion optimizer", "lion_pytorch.lion_pytorch.Lion"
    name = args.optimizer_type
    return f"{name} optimizer", name


def optimizer_kwargs(args: Namespace) -> dict[str, object]:
    """``--optimizer_args k=v ...`` as sd-scripts parses them (``ast.literal_eval``-like)."""
    kw: dict[str, object] = {}
    for item in args.optimizer_args or []:
        if "=" in item:
            k, v = item.split("=", 1)
            try:
                kw[k] = json.loads(v.lower() if v in ("True", "False") else v)
            except ValueError:
                kw[k] = v
    return kw


def optimizer_line(args: Namespace) -> str:
    """The ``use ... optimizer | {kwargs}`` log line."""
    desc, _ = optimizer_name(args)
    return f"use {desc} | {optimizer_kwargs(args)}"


def lr_tags(*, unet_only: bool, te_only: bool) -> list[tuple[str, str]]:
    """(tag, which lr) in the order ``generate_step_logs`` produces them
    (``train_network.py:NetworkTrainer.generate_step_logs``)."""
    if unet_only:
        return [("lr/unet", "unet"), ("lr/group0", "unet")]
    if te_only:
        return [("lr/textencoder", "te"), ("lr/group0", "te")]
    return [("lr/textencoder", "te"), ("lr/unet", "unet"), ("lr/group1", "unet")]


def learning_rate(args: Namespace, which: str, step: int, *, total: int, warmup: int) -> float:
    """The learning rate of the text encoders (``which == "te"``) or the U-Net after ``step``."""
    if which == "te":
        base = args.text_encoder_lr[0] if args.text_encoder_lr else args.learning_rate
    else:
        base = args.unet_lr if args.unet_lr is not None else args.learning_rate
    mult = lr_lambda(
        args.lr_scheduler or "constant",
        step,
        total,
        warmup,
        args.lr_scheduler_num_cycles or 1,
        args.lr_scheduler_power or 1.0,
    )
    return float(base) * mult
