"""The ranks of a multi-process launch: one run, rank 0 first (pure rules over found trees).

Why: ``accelerate launch --multi_gpu --num_processes N`` (``commands/launch.py:
multi_gpu_launcher``, which runs ``torch.distributed.run`` inside accelerate's own process) and
``torchrun --nproc_per_node N`` start N trainer processes with the same command line, each with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment. Discovery finds each one as a
trainer; they are one run. In sd-scripts only the main process (``accelerator.is_main_process``,
rank 0) saves checkpoints and state and writes the TensorBoard events, only the local main
process draws the tqdm bar (``disable=not accelerator.is_local_main_process``), and every rank
logs its own records. So rank 0 is the run's trainer (its exit and its output count) and the
others are listed beside it (``ProcessTree.ranks``); ``kill`` stops them all.

Note: ``accelerate launch --cpu --num_processes N`` starts ONE process (``simple_launcher``:
without ``--mpirun_hostfile`` the process count only sets ``MASTER_ADDR``/``MASTER_PORT``), so
it is a single trainer here, as it is in fact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sdxl_tui.model import ProcessTree, ProcInfo

__all__ = ["merge_ranks", "rank_fields", "rank_label", "role_label", "vram_by_owner", "vram_owners"]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def rank_fields(info: ProcInfo, env: Mapping[str, str]) -> ProcInfo:
    """``info`` with ``rank``, ``local_rank``, ``world_size`` from a rank environment."""
    if not env:
        return info
    return replace(info, rank=_int(env.get("RANK")), local_rank=_int(env.get("LOCAL_RANK")),
                   world_size=_int(env.get("WORLD_SIZE")))


def _order(info: ProcInfo) -> tuple[int, int, int]:
    rank = info.rank if info.rank is not None else info.local_rank
    return (rank if rank is not None else 1 << 30, info.local_rank or 0, info.pid)


def _is_rank(info: ProcInfo) -> bool:
    if info.world_size is not None:
        return info.world_size > 1
    return (info.rank or 0) > 0 or (info.local_rank or 0) > 0


def merge_ranks(trees: Sequence[ProcessTree]) -> tuple[list[ProcessTree], list[str]]:
    """Join the trees of one multi-process launch into one (rank 0 the trainer).

    Trees are ranks of one launch when their trainers carry rank variables and share the
    parent that started them (torchrun's agent, ``accelerate launch``'s process). Returns
    the trees (in their first member's place) and notes, e.g. when rank 0 is already gone.
    """
    groups: dict[int, list[ProcessTree]] = {}
    for tree in trees:
        if _is_rank(tree.trainer) and tree.trainer.ppid is not None:
            groups.setdefault(tree.trainer.ppid, []).append(tree)
    out: list[ProcessTree] = []
    notes: list[str] = []
    placed: set[int] = set()
    for tree in trees:
        group = groups.get(tree.trainer.ppid or -1, []) if _is_rank(tree.trainer) else []
        if not group:
            out.append(tree)
            continue
        if tree.trainer.ppid in placed:
            continue
        placed.add(tree.trainer.ppid or -1)
        members = sorted(group, key=lambda t: _order(t.trainer))
        first = members[0]
        out.append(replace(
            first,
            ranks=tuple(t.trainer for t in members[1:]),
            children=tuple(c for t in members for c in t.children),
            recorded=any(t.recorded for t in members),
        ))
        lead = first.trainer
        if (lead.rank if lead.rank is not None else lead.local_rank) not in (0, None):
            alive = ", ".join(f"{rank_label(t.trainer)} (pid {t.trainer.pid})" for t in members)
            notes.append(f"rank 0 of this multi-process run is gone; still alive: {alive} "
                         "(its launcher normally ends them)")
    return out, notes


def rank_label(info: ProcInfo) -> str:
    """``rank 1`` for a rank of a multi-process launch, else the process's role."""
    if _is_rank(info):
        return f"rank {info.rank if info.rank is not None else info.local_rank}"
    return info.role


def role_label(info: ProcInfo) -> str:
    """The role as shown in lists (kill's confirmation and outcome, ``describe_tree``): a
    trainer that is a rank of a multi-process launch is ``rank N``."""
    return rank_label(info) if info.role == "trainer" else info.role


def vram_owners(tree: ProcessTree | None) -> tuple[tuple[int, str], ...]:
    """(pid, owner) for every live process of the run: ``trainer``, or ``rank N`` for each rank
    of a multi-process run, a child counted with the rank (or trainer) above it."""
    if tree is None:
        return ()
    label = {p.pid: rank_label(p) for p in tree.trainers}
    owners = [(p.pid, label[p.pid]) for p in tree.trainers if p.alive]
    parent = {p.pid: p.ppid for p in tree.children}
    for child in tree.children:
        if not child.alive:
            continue
        up: int | None = child.ppid
        seen = {child.pid}
        while up is not None and up not in label and up in parent and up not in seen:
            seen.add(up)
            up = parent[up]
        if up in label:
            owners.append((child.pid, label[up]))
    return tuple(owners)


def vram_by_owner(process_memory: Mapping[int, int], owners: Sequence[tuple[int, str]]) -> tuple[tuple[str, int], ...]:
    """GPU memory of one device per owner (``trainer``, ``rank 0``, ``rank 1``...), owners in
    their first order; owners without memory on this device are left out."""
    total: dict[str, int] = {}
    for pid, owner in owners:
        used = process_memory.get(pid)
        if used:
            total[owner] = total.get(owner, 0) + int(used)
    return tuple(total.items())
