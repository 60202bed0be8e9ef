"""The verdict is true: a stop the user asked for reads "stopped", whatever the exit status;
a dead trainer is said at once; a stalled run keeps no ETA; a reused PID is never signalled.

The first tests hand-build the facts :func:`decide_state` weighs (its inputs are plain data);
the others run real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sdxl_tui.control.kill import execute_kill, plan_kill
from sdxl_tui.formats.statedir import StopRecord, read_stop_record, write_stop_record
from sdxl_tui.model import RunState
from sdxl_tui.sources.procs import discover
from sdxl_tui.sources.rundir import RunReader, read_run
from sdxl_tui.sources.state import StateInputs, decide_state
from sdxl_tui.sources.stops import applicable_stop, describe_stop
from tests.helpers.proctools import Procs, alive, managed_procs, trainer_argv, wait_until

NOW = 1_800_000_000.0
KILLED = NOW - 120.0


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from managed_procs()


def _stop(**kw: object) -> StopRecord:
    base: dict[str, object] = {"by": "sdxl-tui kill", "requested_at": KILLED, "signal": "SIGINT",
                               "ended_at": KILLED + 3.0, "trainer_pid": 4242, "trainer_create_time": KILLED - 600.0}
    base.update(kw)
    return StopRecord(**base)  # type: ignore[arg-type]


def _said(stop: StopRecord, **facts: object) -> str | None:
    """What the state machine is told about the stop (``sources/stops.py``)."""
    applies = applicable_stop(stop, alive=facts.get("alive", False), record=facts.get("record"),  # type: ignore[arg-type]
                              last_write_at=facts.get("last_write_at", KILLED + 1.0))  # type: ignore[arg-type]
    return describe_stop(applies) if applies is not None else None


def _gone(**kw: object) -> StateInputs:
    base: dict[str, object] = {
        "now": NOW, "has_output": True, "has_log": True, "phase": "training", "step": 3, "total_steps": 9,
        "alive": False, "pid": 4242, "last_write_at": KILLED + 1.0, "seconds_per_step": 1.5,
    }
    base.update(kw)
    return StateInputs(**base)  # type: ignore[arg-type]


def _hhmm(t: float) -> str:
    return time.strftime("%H:%M", time.localtime(t))


@pytest.mark.parametrize(("exit_code", "exit_signal", "ki"), [
    (1, None, True),      # real sd-scripts: KeyboardInterrupt in its loop, exit 1
    (1, None, False),     # accelerate launch: CalledProcessError, exit 1
    (254, None, False),   # a wrapper script's own status
    (130, None, True),    # a shell wrapper's 128 + SIGINT
    (None, signal.SIGINT, True),  # died by SIGINT (uncaught KeyboardInterrupt)
    (None, signal.SIGTERM, False),
])
def test_a_stop_we_sent_reads_stopped_whatever_the_exit(exit_code: int | None, exit_signal: int | None,
                                                         ki: bool) -> None:
    state, reason = decide_state(_gone(exit_code=exit_code, exit_signal=exit_signal, keyboard_interrupt=ki,
                                       traceback="Traceback ...\nKeyboardInterrupt" if ki else None,
                                       stopped=_said(_stop())))
    assert state is RunState.STOPPED, reason
    assert reason == f"stopped by you (sdxl-tui kill, SIGINT, {_hhmm(KILLED)}) at step 3", reason


def test_a_launcher_traceback_after_our_stop_does_not_make_it_a_crash() -> None:
    tb = "subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 1."
    state, reason = decide_state(_gone(exit_code=1, traceback=tb, stopped=_said(_stop())))
    assert state is RunState.STOPPED, reason


def test_without_our_stop_the_same_exit_is_a_failure() -> None:
    state, reason = decide_state(_gone(exit_code=1))
    assert state is RunState.FAILED and "exited with status 1" in reason


def test_a_stop_record_of_an_earlier_launch_does_not_explain_this_end() -> None:
    from sdxl_tui.formats.statedir import RunRecord

    # launched again after the stop (the record's started_at)
    assert _said(_stop(), record=RunRecord(pid=1, started_at=KILLED + 60.0)) is None
    # files written long after the kill returned: another launch wrote them and ended on its own
    assert _said(_stop(), last_write_at=KILLED + 3600.0) is None
    # a trainer alive: nothing is explained yet
    assert _said(_stop(), alive=True) is None


def test_an_oom_before_the_stop_stays_the_story() -> None:
    state, reason = decide_state(_gone(exit_code=1, oom="CUDA out of memory", stopped=_said(_stop())))
    assert state is RunState.FAILED and "CUDA out of memory" in reason


def test_stop_after_checkpoint_names_the_checkpoint() -> None:
    stop = _stop(by="sdxl-tui kill --after-checkpoint", how="stop-after-checkpoint", checkpoint="r-000002.safetensors")
    state, reason = decide_state(_gone(exit_signal=signal.SIGINT, keyboard_interrupt=True, stopped=_said(stop)))
    assert state is RunState.STOPPED
    assert reason.startswith(f"stopped by you (sdxl-tui kill --after-checkpoint, SIGINT, {_hhmm(KILLED)})")


def test_a_dead_trainer_without_any_record_is_said_at_once() -> None:
    # trainer not found, log 20 s old, 1.5 s per step: not "training" for another 40 s
    state, reason = decide_state(_gone(alive=None, pid=None, last_write_at=NOW - 20.0))
    assert state is RunState.INTERRUPTED, reason
    # our kill returned: no grace at all
    stop = _stop(requested_at=NOW - 3.0, ended_at=NOW - 0.5)
    state, reason = decide_state(_gone(alive=None, pid=None, last_write_at=NOW - 1.0,
                                       stopped=_said(stop, alive=None, last_write_at=NOW - 1.0)))
    assert state is RunState.STOPPED, reason


def test_stop_record_round_trip(tmp_path: Path) -> None:
    stop = _stop(step=7, checkpoint="x.safetensors", result="stopped", signals=("SIGINT", "SIGTERM"))
    write_stop_record(tmp_path, stop, {"result": {"ok": True}})
    assert read_stop_record(tmp_path) == stop
    (tmp_path / ".sdxl-tui" / "last-kill.json").write_text('{"stop": {"by": 3}}')
    assert read_stop_record(tmp_path) is None


# ------------------------------------------------------------------ real processes


@pytest.mark.slow
def test_kill_refuses_a_pid_whose_start_time_changed(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path / "run")
    p = procs.spawn(trainer_argv(out))
    wait_until(lambda: discover(out).tree, timeout=30)
    plan = plan_kill(out)
    # the same pid, another start time: what a reused PID looks like to a stale plan
    stale = replace(plan, targets=tuple(replace(t, create_time=t.create_time - 100.0) for t in plan.targets))
    result = execute_kill(stale, timeouts=(1.0, 1.0), kill_wait=1.0, respawn_watch=0.0, write_record=False)
    assert all(o.result in ("gone", "exited", "skipped") and not o.signals for o in result.outcomes), result.describe()
    assert alive(p.pid), "a process with another start time was signalled"


@pytest.mark.slow
def test_supervisor_killed_with_the_trainer_reads_ended_at_once(procs: Procs, tmp_path: Path) -> None:
    """``kill -KILL`` of the supervisor and the trainer (nothing recorded the end): no grace,
    no ETA: 'ended unexpectedly … how was never recorded'."""
    from sdxl_tui.control.launch import launch
    from sdxl_tui.formats.launch_config import LaunchConfig
    from tests.helpers.proctools import HELPERS, PY

    out = procs.watch_dir(tmp_path / "run")
    cfg = LaunchConfig(prefix=(PY,), sd_scripts_dir=str(HELPERS), script="fake_train_network.py",
                       output_dir=str(out), args={"save_every": 0.3})
    res = launch(cfg, python=sys.executable)
    assert res.ok, res.message
    tree = wait_until(lambda: discover(out).tree, timeout=30)
    for p in tree.all():
        os.kill(p.pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p.pid, p.create_time) for p in tree.all()), timeout=20)
    snap = read_run(out, gpu=False)
    assert snap.state is RunState.INTERRUPTED, snap.state_reason
    assert "is gone (no exit status" in snap.state_reason
    assert snap.progress.eta_seconds is None


@pytest.mark.slow
def test_a_stalled_run_has_no_eta(procs: Procs, tmp_path: Path) -> None:
    from sdxl_tui.sim import simulate_command

    out = procs.watch_dir(tmp_path / "run")
    out.mkdir()
    argv = simulate_command(out, ["--output_name", "s", "--max_train_epochs", "20", "--save_every_n_epochs", "1",
                                  "--sim-batches-per-epoch", "4", "--sim-startup-seconds", "0",
                                  "--sim-step-seconds", "0.05", "--sim-fault", "hang", "--sim-fault-step", "3"])
    with open(out / "training.log", "ab") as log:
        procs.spawn(argv, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: "| 2/80 [" in (out / "training.log").read_text(errors="replace"), timeout=60)
    later = time.time() + 3600.0  # an hour without a step
    reader = RunReader(out, clock=lambda: later)
    try:
        snap = reader.refresh()
    finally:
        reader.close()
    assert snap.state is RunState.STALLED, snap.state_reason
    assert snap.progress.eta_seconds is None and snap.progress.eta_at is None
    assert snap.progress.next_checkpoint_eta_seconds is None


# ------------------------------------------------------------------ the final model and half-written files


def _saved_run(tmp_path: Path, final_bytes: bytes | None, *, saved: bool = True) -> Path:
    from tests.helpers.fake_train_network import _write_safetensors

    out = tmp_path / "run"
    out.mkdir()
    _write_safetensors(str(out / "fake-000001.safetensors"), 4096, 0.0, 1)
    if final_bytes is not None:
        (out / "fake.safetensors").write_bytes(final_bytes)
    lines = ["epoch 1/1", f"saving checkpoint: {out / 'fake.safetensors'}"]
    if saved:
        lines.append("2026-12-05 07:03:06 INFO     model saved.                  train_network.py:1729")
    (out / "training.log").write_text("\n".join(lines) + "\n")
    old = time.time() - 3600
    for f in out.iterdir():
        os.utime(f, (old, old))
    return out


@pytest.mark.parametrize("final", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":"])
def test_model_saved_with_an_empty_or_truncated_final_is_an_error(tmp_path: Path, final: bytes) -> None:
    snap = read_run(_saved_run(tmp_path, final), gpu=False, procs=False)
    assert snap.state is RunState.FAILED, snap.state_reason
    assert "fake.safetensors is unusable" in snap.state_reason
    errors = [a for a in snap.alerts if a.kind == "final_broken"]
    assert errors and errors[0].severity.value == "error", snap.alerts
    assert "fake-000001.safetensors" in (errors[0].fix or "")
    assert not any(a.kind == "finished" for a in snap.alerts)


def test_a_half_written_file_of_a_dead_run_is_incomplete_at_once(tmp_path: Path) -> None:
    """The trainer is gone: its half-written file is labelled the same everywhere, at once
    (not "writing" in one view and "corrupt" in another)."""
    from sdxl_tui.model import CheckpointStatus
    from tests.helpers.fake_train_network import _write_safetensors

    out = _saved_run(tmp_path, None, saved=False)
    path = out / "fake-000002.safetensors"
    _write_safetensors(str(path), 4096, 0.0, 2)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)  # just written, then the writer died
    write_stop_record(out, _stop(requested_at=time.time() - 2, ended_at=time.time() - 1))
    snap = read_run(out, gpu=False)  # no trainer in the process table; our kill returned
    assert snap.state.is_over, snap.state_reason
    half = next(c for c in snap.checkpoints if c.name == "fake-000002.safetensors")
    assert half.status is CheckpointStatus.CORRUPT and half.problem and half.problem.startswith("incomplete"), half


def test_loss_at_save_is_the_value_logged_before_the_save() -> None:
    from sdxl_tui.model import ScalarPoint, Series
    from sdxl_tui.sources.fusion import loss_point

    pts = (ScalarPoint(2, 1.10, 100.0), ScalarPoint(3, 1.095, 110.0), ScalarPoint(3, 1.101, 125.0),
           ScalarPoint(4, 1.08, 135.0))
    series = {"loss/average": Series("loss/average", pts, count=4, last=pts[-1])}
    saved = loss_point(series, 3)  # the first at that step; 1.101 is the next epoch's first micro-batch
    assert saved is not None and (saved.step, saved.value) == (3, 1.095)
    # no wall times: the same point
    bare = tuple(ScalarPoint(p.step, p.value) for p in pts)
    p = loss_point({"loss/average": Series("loss/average", bare, count=4, last=bare[-1])}, 3)
    assert p is not None and p.value == 1.095
    # the event file ends before the save: the value is older, and says so by its step
    older = loss_point(series, 9)
    assert older is not None and older.step == 4
