"""The ranks of a multi-process launch as one run: grouping, VRAM per rank in status and JSON,
and the simulated trainer as rank 0 or rank 1 (in-process: the launch itself, with real
processes, is in ``test_launch_styles.py``)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import MappingProxyType

from sdxl_tui.commands.status import format_status
from sdxl_tui.model import GpuSample, GpuStatus, ProcessTree, ProcInfo, RunSnapshot, RunState
from sdxl_tui.sim.base import Hooks
from sdxl_tui.sim.console import SimConsole
from sdxl_tui.sim.ranks import Ranks
from sdxl_tui.sim.runner import run_argv
from sdxl_tui.sources.ranks import merge_ranks, vram_by_owner, vram_owners
from sdxl_tui.sources.rundir import read_run
from sdxl_tui.sources.snapshot_json import snapshot_to_json

GIB = 1024**3
CMD = ("python", "-u", "sdxl_train_network.py", "--output_dir", "/x")
AGENT = ProcInfo(4000, 1.0, ("python", "-m", "accelerate.commands.launch", "--multi_gpu"), role="launcher")


def _rank(pid: int, rank: int | None, world: int | None = 2, ppid: int = 4000) -> ProcessTree:
    local = rank
    return ProcessTree(ProcInfo(pid, 1.0, CMD, ppid=ppid, rank=rank, local_rank=local, world_size=world),
                       launchers=(AGENT,),
                       children=(ProcInfo(pid + 100, 1.0, CMD, role="worker", ppid=pid),))


def test_the_ranks_of_one_launch_are_one_tree_with_rank_0_as_trainer() -> None:
    single = ProcessTree(ProcInfo(9000, 1.0, CMD, ppid=1))
    trees, notes = merge_ranks([_rank(4243, 1), single, _rank(4242, 0)])
    assert not notes
    assert [t.trainer.pid for t in trees] == [4242, 9000]  # rank 0 leads, in the first member's place
    merged = trees[0]
    assert [p.pid for p in merged.ranks] == [4243]
    assert [p.pid for p in merged.children] == [4342, 4343]
    assert [p.pid for p in merged.all()] == [4000, 4242, 4243, 4342, 4343]


def test_rank_0_gone_is_said_and_separate_launches_stay_apart() -> None:
    trees, notes = merge_ranks([_rank(4243, 1), _rank(4244, 2, world=3)])
    assert [t.trainer.pid for t in trees] == [4243] and notes and "rank 0 of this multi-process run is gone" in notes[0]
    trees, notes = merge_ranks([_rank(4243, 1)])  # the last rank standing
    assert [t.trainer.pid for t in trees] == [4243] and "still alive: rank 1 (pid 4243)" in notes[0]
    # two agents (two launches for one folder): never joined
    trees, _ = merge_ranks([_rank(4242, 0), _rank(5243, 1, ppid=5000)])
    assert [(t.trainer.pid, t.ranks) for t in trees] == [(4242, ()), (5243, ())]
    # no rank variables (accelerate --cpu, a plain python): never grouped
    trees, _ = merge_ranks([_rank(4242, None, world=None), _rank(4243, None, world=None)])
    assert len(trees) == 2


def test_vram_is_attributed_per_rank_with_its_children() -> None:
    tree, = merge_ranks([_rank(4242, 0), _rank(4243, 1)])[0]
    owners = vram_owners(tree)
    assert owners == ((4242, "rank 0"), (4243, "rank 1"), (4342, "rank 0"), (4343, "rank 1"))
    assert vram_by_owner({4242: 9 * GIB, 4343: GIB, 4000: GIB, 7: GIB}, owners) == (("rank 0", 9 * GIB),
                                                                                 ("rank 1", GIB))
    single = ProcessTree(ProcInfo(9000, 1.0, CMD), children=(ProcInfo(9001, 1.0, CMD, role="worker", ppid=9000),))
    assert vram_owners(single) == ((9000, "trainer"), (9001, "trainer"))
    assert vram_owners(None) == ()


def _snapshot(tree: ProcessTree) -> RunSnapshot:
    gpus = (GpuSample(0, "NVIDIA A100", memory_used=30 * GIB, memory_total=80 * GIB,
                      process_memory=MappingProxyType({4242: 21 * GIB, 4000: GIB})),
            GpuSample(1, "NVIDIA A100", memory_used=20 * GIB, memory_total=80 * GIB,
                      process_memory=MappingProxyType({4243: 20 * GIB})))
    return RunSnapshot(run_dir="/runs/r", taken_at=1.0, state=RunState.TRAINING, process=tree,
                       gpu=GpuStatus(available=True, gpus=gpus, taken_at=1.0))


def test_status_text_and_json_name_each_ranks_vram() -> None:
    tree, = merge_ranks([_rank(4242, 0), _rank(4243, 1)])[0]
    snap = _snapshot(tree)
    text = format_status(snap)
    assert "process     PID 4242, alive, 2 ranks (PIDs 4242, 4243), 2 children" in text
    assert "gpu         0 NVIDIA A100, 30.0/80.0 GiB, rank 0 21.0 GiB\n" in text
    assert "gpu         1 NVIDIA A100, 20.0/80.0 GiB, rank 1 20.0 GiB\n" in text
    data = json.loads(json.dumps(snapshot_to_json(snap)))
    assert [g["run_memory"] for g in data["gpus"]] == [[{"owner": "rank 0", "memory_used": 21 * GIB}],
                                                       [{"owner": "rank 1", "memory_used": 20 * GIB}]]
    assert data["process"]["rank"] == 0 and [r["pid"] for r in data["process"]["ranks"]] == [4243]
    single = _snapshot(ProcessTree(ProcInfo(4242, 1.0, CMD)))
    assert "gpu         0 NVIDIA A100, 30.0/80.0 GiB, trainer 21.0 GiB\n" in format_status(single)


def _sim_as(rank: Ranks, out: Path, *extra: str) -> str:
    """The simulator in-process as one rank; returns what that rank wrote to its console."""
    buf = io.BytesIO()
    argv = ["--output_dir", str(out), "--output_name", "r", "--max_train_epochs", "2", "--save_every_n_epochs", "1",
            "--sim-batches-per-epoch", "5", "--sim-step-seconds", "0", "--sim-startup-seconds", "0",
            "--logging_dir", str(out / "logs"), "--log_with", "tensorboard", *extra]
    assert run_argv(argv, SimConsole(buf, unbuffered=True), in_process=True, hooks=Hooks(ranks=rank)) == 0
    return buf.getvalue().decode("utf-8")


def test_simulated_rank_1_logs_but_writes_no_file_and_no_bar(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = _sim_as(Ranks(rank=1, local_rank=1, world_size=2), out)
    assert not out.exists() or not os.listdir(out), "rank 1 wrote files"
    assert "accelerator device: cuda:1" in text and "preparing accelerator" in text  # its own lines
    for main_only in ("running training", "epoch 1/", "steps:", "saving checkpoint", "model saved."):
        assert main_only not in text, main_only


def test_simulated_rank_0_shards_the_batches_and_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = _sim_as(Ranks(rank=0, local_rank=0, world_size=2), out)
    # 5 batches over 2 ranks: 3 per rank (even batches); max_train_steps = 2 * ceil(5 / 2 / 1) = 6
    assert "num batches per epoch / 1epochのバッチ数: 3" in text and "学習ステップ数: 6" in text
    assert "accelerator device: cuda:0" in text and "model saved." in text
    snap = read_run(out, gpu=False)
    assert snap.state is RunState.FINISHED, snap.state_reason
    assert snap.progress.step == 6 and snap.progress.total_steps == 6
    assert [c.step for c in snap.checkpoints] == [3, 6]
    assert len(os.listdir(out / "logs")) == 1


def test_supervisor_counts_every_process_below_the_launch_for_the_gpu_history() -> None:
    """Every rank's VRAM goes into the GPU history, not only the first trainer's: the supervisor
    samples NVML for the launch and all its descendants (real processes: a launcher with two)."""
    import subprocess

    import psutil

    from sdxl_tui.control.supervisor import _run_pids
    from tests.helpers.proctools import wait_until

    launch = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"], stdin=subprocess.DEVNULL)
    try:
        pids = wait_until(lambda: (p := _run_pids(launch.pid)) and len(p) == 3 and p, timeout=20)
        assert pids[0] == launch.pid
        assert _run_pids(2**22 + 7) == [2**22 + 7]  # no such process: the launch alone
    finally:
        for child in psutil.Process(launch.pid).children(recursive=True):
            child.kill()
        launch.kill()
        launch.wait(timeout=10)
