"""The simulated trainer as one rank of a multi-process launch (torchrun, ``accelerate launch``).

Why: ``accelerate launch --multi_gpu --num_processes N`` starts N copies of the trainer, told
apart only by ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment, and sd-scripts
behaves differently in each (``train_network.py:NetworkTrainer.train``):

* only the main process (``accelerator.is_main_process``, rank 0) saves checkpoints and state,
  writes ``model saved.`` and the TensorBoard events (``init_trackers`` and ``accelerator.log``
  act on the main process only);
* only the local main process (``LOCAL_RANK`` 0) prints through ``accelerator.print`` (the
  ``running training`` block, ``epoch N/M``, ``saving checkpoint:``) and draws the tqdm bars
  (``disable=not accelerator.is_local_main_process``);
* every rank logs its own records and prints ``accelerator device: cuda:N``;
* each rank gets ``ceil(batches / N)`` batches per epoch (the prepared DataLoader is sharded),
  and ``max_train_steps = epochs * ceil(batches / N / accumulation)``;
* ranks wait for each other (``accelerator.wait_for_everyone()``) before each save; sample
  prompts are shared out, rank r draws prompts r, r+N, ... (``sample_images_common``).

Readers depend on exactly this (which process's output counts, which files exist), so the
simulator does it too. With torch importable and ``MASTER_ADDR`` set, the ranks join a real
``gloo`` process group (what ``Accelerator()`` does on CPU) and the waits are real barriers;
without torch the waits are skipped.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["ProcessGroup", "Ranks", "main_process_only"]

_P = ParamSpec("_P")


class _HasRanks(Protocol):
    ranks: Ranks


_T = TypeVar("_T", bound=_HasRanks)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Ranks:
    """Which process of the launch this is (a single process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ranks:
        world = max(1, _int(env, "WORLD_SIZE", 1))
        rank = _int(env, "RANK", 0)
        return cls(rank=rank, local_rank=_int(env, "LOCAL_RANK", rank), world_size=world)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main_process(self) -> bool:
        return self.local_rank == 0

    @property
    def device(self) -> str:
        """``accelerator.device`` as printed: ``cuda`` alone, ``cuda:N`` per rank."""
        return "cuda" if self.world_size == 1 else f"cuda:{self.local_rank}"

    def shard(self, batches: int) -> int:
        """Batches per epoch of this rank: the prepared DataLoader's length (even batches)."""
        return max(1, math.ceil(batches / self.world_size))


class ProcessGroup:
    """``torch.distributed`` on ``gloo`` for a multi-rank launch, or nothing.

    Joined where ``Accelerator()`` would join it; :meth:`wait_for_everyone` is a barrier.
    """

    def __init__(self, ranks: Ranks, env: Mapping[str, str] | None = None) -> None:
        self.ranks = ranks
        self._dist: Any = None
        env = os.environ if env is None else env
        if ranks.world_size < 2 or not env.get("MASTER_ADDR"):
            return
        try:
            import torch.distributed as dist
        except ImportError:
            return  # no torch: the ranks run unsynchronised
        dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size,
                                timeout=timedelta(minutes=10))
        self._dist = dist

    @property
    def joined(self) -> bool:
        return self._dist is not None

    def wait_for_everyone(self) -> None:
        if self._dist is not None:
            self._dist.barrier()

    def close(self) -> None:
        if self._dist is not None:
            dist, self._dist = self._dist, None
            dist.destroy_process_group()


def main_process_only(method: Callable[Concatenate[_T, _P], None]) -> Callable[Concatenate[_T, _P], None]:
    """``if accelerator.is_main_process:`` around a save: other ranks skip it."""

    @functools.wraps(method)
    def wrapper(self: _T, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        if self.ranks.is_main_process:
            method(self, *args, **kwargs)

    return wrapper
