"""Identity-checked tree kill and stop-after-checkpoint, with real processes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sdxl_tui.control.kill import (
    CheckpointWaiter,
    cancel_stop_after_checkpoint,
    complete_checkpoints,
    execute_kill,
    plan_kill,
    start_stop_after_checkpoint,
    watcher_status,
)
from sdxl_tui.control.launch import launch
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.formats.safetensors import is_complete
from sdxl_tui.sources.procs import find_trainer
from tests.helpers.proctools import (
    FAKE_ACCELERATE,
    FAKE_TRAINER,
    PY,
    Procs,
    accelerate_argv,
    alive,
    checkpoint_written,
    conda_argv,
    managed_procs,
    trainer_argv,
    wait_until,
)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes started by a test, all ended by PID afterwards."""
    yield from managed_procs()

FAST = {"timeouts": (3.0, 3.0), "kill_wait": 3.0}


def _tree(out: Path, children: int = 0):
    return wait_until(lambda: (t := find_trainer(out)) is not None and len(t.children) >= children and t, 10)


def _ids(tree) -> list[tuple[int, float]]:
    return [(p.pid, p.create_time) for p in tree.all()]


def test_kill_conda_tree_leaves_nothing_and_spares_the_decoy(procs: Procs, tmp_path: Path) -> None:
    out, decoy_out = tmp_path / "run", tmp_path / "decoy"
    procs.spawn(conda_argv(out, "--workers", "2"))
    decoy = procs.spawn(trainer_argv(decoy_out, "--workers", "1"))  # same script, other --output_dir
    tree = _tree(out, 2)
    ids = _ids(tree)
    assert len(ids) == 5  # conda, bash tmp script, trainer, 2 workers

    plan = plan_kill(out)
    assert {p.pid for p in plan.targets} == {pid for pid, _ in ids}
    assert all(p.username for p in plan.targets)
    assert decoy.pid not in {p.pid for p in plan.targets}
    assert any(f"pid {decoy.pid} trains into another output directory" in n for n in plan.notes)

    result = execute_kill(plan, **FAST)
    assert result.ok, result.describe()
    assert not any(alive(pid, ct) for pid, ct in ids)
    trainer = next(o for o in result.outcomes if o.role == "trainer")
    assert trainer.after == "SIGINT" and trainer.signals == ("SIGINT",)
    assert alive(decoy.pid)
    assert find_trainer(decoy_out) is not None
    # the kill is recorded for the dashboard
    last = json.loads((out / ".sdxl-tui" / "last-kill.json").read_text())
    assert last["ok"] is True
    assert last["stop"]["by"] == "sdxl-tui kill" and last["stop"]["signal"] == "SIGINT"
    assert last["stop"]["result"] == "stopped"


@pytest.mark.slow
def test_kill_accelerate_tree_escalates_when_sigint_is_ignored(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "run"
    procs.spawn(accelerate_argv(out, "--ignore_sigint"))
    tree = _tree(out)
    wait_until(out.is_dir, 10)  # it ignores SIGINT from then on
    ids = _ids(tree)
    result = execute_kill(plan_kill(out), timeouts=(0.5, 3.0), kill_wait=3.0)
    assert result.ok
    assert not any(alive(pid, ct) for pid, ct in ids)
    trainer = next(o for o in result.outcomes if o.role == "trainer")
    assert trainer.signals[:2] == ("SIGINT", "SIGTERM") and trainer.after == "SIGTERM"


def test_signal_kill_starts_at_sigkill(procs: Procs, tmp_path: Path) -> None:
    procs.spawn(trainer_argv(tmp_path, "--workers", "1"))
    ids = _ids(_tree(tmp_path, 1))
    result = execute_kill(plan_kill(tmp_path), start="KILL", **FAST)
    assert result.ok
    assert not any(alive(pid, ct) for pid, ct in ids)
    assert {o.after for o in result.outcomes} == {"SIGKILL"}


@pytest.mark.slow
def test_recorded_pid_reused_by_unrelated_process_is_refused(procs: Procs, tmp_path: Path) -> None:
    sleeper = procs.spawn(["sleep", "60"])
    ctime = psutil.Process(sleeper.pid).create_time()
    state = tmp_path / ".sdxl-tui"
    state.mkdir()
    (state / "run.json").write_text(json.dumps(
        {"pid": sleeper.pid, "create_time": ctime - 3600.0, "argv": trainer_argv(tmp_path)}))
    plan = plan_kill(tmp_path)
    assert plan.empty
    assert [r.pid for r in plan.refusals] == [sleeper.pid]
    assert "another process" in plan.refusals[0].reason
    result = execute_kill(plan, **FAST)
    assert result.outcomes == ()
    time.sleep(0.2)
    assert alive(sleeper.pid, ctime)
    # the CLI says so and exits 3
    cli = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "kill", str(tmp_path), "--yes"], capture_output=True, text=True)
    assert cli.returncode == 3
    assert f"{sleeper.pid}" in cli.stdout and "another process" in cli.stdout
    assert alive(sleeper.pid, ctime)


def test_pid_reused_between_plan_and_signal_is_skipped(procs: Procs, tmp_path: Path) -> None:
    procs.spawn(trainer_argv(tmp_path))
    _tree(tmp_path)
    plan = plan_kill(tmp_path)
    # pretend the plan was made for an older process with the same pid
    from dataclasses import replace

    forged = replace(plan, targets=tuple(replace(p, create_time=p.create_time - 100) for p in plan.targets))
    result = execute_kill(forged, **FAST)
    assert result.outcomes[0].result in ("gone", "skipped")
    assert find_trainer(tmp_path) is not None  # still alive: nothing was signalled
    assert alive(plan.targets[0].pid)


def test_other_users_processes_are_never_signalled(procs: Procs, tmp_path: Path) -> None:
    procs.spawn(trainer_argv(tmp_path))
    tree = _tree(tmp_path)
    plan = plan_kill(tmp_path, uid=os.geteuid() + 4242)  # as if we were another user
    assert plan.empty
    assert any("another user" in r.reason for r in plan.refusals)
    # and execute re-checks the owner right before signalling
    mine = plan_kill(tmp_path)
    result = execute_kill(mine, uid=os.geteuid() + 4242, **FAST)
    assert all(o.result == "skipped" for o in result.outcomes)
    assert alive(tree.trainer.pid)


@pytest.mark.slow
def test_cli_kill_needs_confirmation(procs: Procs, tmp_path: Path) -> None:
    procs.spawn(trainer_argv(tmp_path))
    tree = _tree(tmp_path)
    cli = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "kill", str(tmp_path)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    assert cli.returncode == 2
    assert "--yes" in cli.stderr
    assert f"{tree.trainer.pid}" in cli.stdout and "trainer" in cli.stdout
    assert alive(tree.trainer.pid)
    cli = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "kill", str(tmp_path), "--yes", "--timeout-int", "3"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "exited after SIGINT" in cli.stdout
    assert not alive(tree.trainer.pid, tree.trainer.create_time)


# --------------------------------------------------------------------------- checkpoints


def _safetensors(path: Path, size: int, *, truncate: int = 0) -> None:
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(size)
    path.write_bytes(data[: len(data) - truncate])


def test_safetensors_completeness(tmp_path: Path) -> None:
    _safetensors(tmp_path / "a.safetensors", 100)
    _safetensors(tmp_path / "b.safetensors", 100, truncate=10)
    (tmp_path / "c.safetensors").write_bytes(b"\x01\x00")  # the length is still being written
    (tmp_path / "d.safetensors").write_bytes(b"\xff" * 16)  # can never become valid
    assert is_complete(tmp_path / "a.safetensors") is True
    assert is_complete(tmp_path / "b.safetensors") is False
    assert is_complete(tmp_path / "c.safetensors") is False
    assert is_complete(tmp_path / "d.safetensors") is None
    assert complete_checkpoints(tmp_path) == ["a.safetensors"]


def test_checkpoint_waiter_waits_for_file_and_state(tmp_path: Path) -> None:
    now = [0.0]
    _safetensors(tmp_path / "r-000001.safetensors", 10)
    w = CheckpointWaiter(tmp_path, saves_state=True, settle=1.0, clock=lambda: now[0])
    _safetensors(tmp_path / "r-000002.safetensors", 10, truncate=3)
    assert w.poll() is None
    _safetensors(tmp_path / "r-000002.safetensors", 10)
    assert w.poll() is None  # complete, but the -state folder is missing
    state = tmp_path / "r-000002-state"
    state.mkdir()
    _safetensors(state / "model.safetensors", 10)
    (state / "train_state.json").write_text('{"current_epoch": 2, "current_step": 20}')
    assert w.poll() is None  # state folder just appeared: not settled yet
    now[0] = 1.5
    assert w.poll() == "r-000002.safetensors"
    # without state, a complete safetensors file counts at once
    assert CheckpointWaiter(tmp_path, baseline=["r-000001.safetensors"]).poll() == "r-000002.safetensors"


@pytest.mark.slow
def test_stop_after_checkpoint_leaves_exactly_one_more_complete_checkpoint(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path / "run")
    cfg = LaunchConfig(prefix=(PY, FAKE_ACCELERATE, "launch"), script=FAKE_TRAINER, output_dir=str(out),
                       args={"workers": 1, "save_every": 1.2, "write_seconds": 0.6, "save_state": True})
    res = launch(cfg)
    assert res.ok, res.message
    wait_until(checkpoint_written(out, 1), 15)
    tree = _tree(out, 1)
    ids = _ids(tree)
    before = complete_checkpoints(out)
    started = start_stop_after_checkpoint(out, timeouts=(3.0, 3.0), poll=0.1, settle=0.3)
    assert started.ok, started.message
    watcher_pid = started.pid
    assert watcher_pid is not None
    status = wait_until(lambda: (s := watcher_status(out)) and s["state"] not in ("waiting", "stopping") and s, 30)
    assert status["state"] == "done", status
    assert len(status["new_checkpoints"]) == 1, status
    assert status["baseline"] == before
    after = complete_checkpoints(out)
    assert len(after) == len(before) + 1
    assert set(before) < set(after)
    names = sorted(p.name for p in out.glob("*.safetensors"))
    assert names == after  # no half-written weights file
    new = (set(after) - set(before)).pop()
    assert json.loads((out / (new.rsplit(".", 1)[0] + "-state") / "train_state.json").read_text())
    assert not any(alive(pid, ct) for pid, ct in ids)
    wait_until(lambda: not alive(watcher_pid), 5)
    # the supervisor recorded how the trainer's launcher ended
    rec = json.loads((out / ".sdxl-tui" / "run.json").read_text())
    assert rec["ended_at"] is not None


@pytest.mark.slow
def test_stop_after_checkpoint_can_be_cancelled(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path)
    procs.spawn(trainer_argv(out, "--save_every", "30"))
    tree = _tree(out)
    started = start_stop_after_checkpoint(out, poll=0.1)
    assert started.ok, started.message
    again = start_stop_after_checkpoint(out, poll=0.1)
    assert not again.ok and "already waiting" in again.message
    cli = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "kill", str(out), "--cancel"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "cancelled" in cli.stdout
    status = watcher_status(out)
    assert status is not None and status["state"] == "cancelled" and not status["alive"]
    assert alive(tree.trainer.pid, tree.trainer.create_time)  # the run continues
    res = cancel_stop_after_checkpoint(out)
    assert not res.ok and "not running" in res.message


def test_no_watcher_without_a_trainer(tmp_path: Path) -> None:
    res = start_stop_after_checkpoint(tmp_path)
    assert not res.ok and "no live trainer" in res.message



# --------------------------------------------------------------------------- with the simulator

SIM = [PY, "-m", "sdxl_tui", "simulate"]
SIM_FAST = ["--output_name", "sim", "--max_train_epochs", "200", "--save_every_n_epochs", "1",
            "--sim-batches-per-epoch", "10", "--sim-startup-seconds", "0.2"]


def test_simulator_through_accelerate_killed_decoy_simulator_survives(procs: Procs, tmp_path: Path) -> None:
    out, decoy_out = tmp_path / "run", tmp_path / "decoy"
    procs.spawn([PY, FAKE_ACCELERATE, "launch", "--num_cpu_threads_per_process", "1", "-m", "sdxl_tui",
                 "simulate", *SIM_FAST, "--sim-step-seconds", "0.2", "--output_dir", str(out)])
    decoy = procs.spawn([*SIM, *SIM_FAST, "--sim-step-seconds", "0.2", "--output_dir", str(decoy_out)])
    tree = _tree(out)
    assert len(tree.launchers) == 1 and tree.trainer.cmdline[1:4] == ("-m", "sdxl_tui", "simulate")
    ids = _ids(tree)
    result = execute_kill(plan_kill(out), **FAST)
    assert result.ok, result.describe()
    assert not any(alive(pid, ct) for pid, ct in ids)
    assert next(o for o in result.outcomes if o.role == "trainer").after == "SIGINT"
    assert alive(decoy.pid) and find_trainer(decoy_out) is not None
    # the simulator, like sd-scripts, leaves a KeyboardInterrupt traceback and saves nothing


@pytest.mark.slow
def test_stop_after_checkpoint_with_the_simulator_under_conda(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path / "run")
    from tests.helpers.proctools import FAKE_CONDA

    # prefix = conda run … python -m sdxl_tui simulate; no script; sd-scripts options in [args]
    cfg = LaunchConfig(prefix=(PY, FAKE_CONDA, "run", "--no-capture-output", "-n", "kohya_ss", *SIM),
                       script="", output_dir=str(out),
                       args={"output_name": "sim", "max_train_epochs": 200, "save_every_n_epochs": 1,
                             "save_state": True, "sim-batches-per-epoch": 10, "sim-step-seconds": 0.08,
                             "sim-startup-seconds": 0.2})
    res = launch(cfg)
    assert res.ok, res.message
    wait_until(checkpoint_written(out, 1), 20)
    tree = wait_until(lambda: (t := find_trainer(out)) and t.trainer.cmdline[1:4] == ("-m", "sdxl_tui", "simulate") and t, 10)
    ids = _ids(tree)
    before = complete_checkpoints(out)
    started = start_stop_after_checkpoint(out, timeouts=(3.0, 3.0), poll=0.1, settle=0.3)
    assert started.ok, started.message
    status = wait_until(lambda: (s := watcher_status(out)) and s["state"] not in ("waiting", "stopping") and s, 30)
    assert status["state"] == "done", status
    assert status["saves_state"] is True
    assert len(status["new_checkpoints"]) == 1, status
    assert status["baseline"] == before
    after = complete_checkpoints(out)
    assert len(after) == len(before) + 1, (before, after)
    assert sorted(p.name for p in out.glob("*.safetensors")) == after
    new = (set(after) - set(before)).pop()
    assert json.loads((out / (new.rsplit(".", 1)[0] + "-state") / "train_state.json").read_text())
    assert not any(alive(pid, ct) for pid, ct in ids)
