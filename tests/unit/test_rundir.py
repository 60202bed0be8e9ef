"""RunReader and the state machine: hand-built facts, the real sd-scripts run, edge directories."""

from __future__ import annotations

import math
import os
import shutil
import struct
import json
from pathlib import Path

import pytest

from sdxl_tui.model import CheckpointKind, CheckpointStatus, RunState, TrainConfig
from sdxl_tui.sources.rundir import (
    RunReader,
    StateInputs,
    decide_state,
    infer_save_every,
    merge_config,
    options_from_argv,
    read_run,
)

REAL = Path("/work/shared/real-sdxl-run")
NOW = 2_000_000_000.0


# ------------------------------------------------------------------ state machine (pure)


def st(**kw) -> tuple[RunState, str]:  # type: ignore[no-untyped-def]
    kw.setdefault("now", NOW)
    return decide_state(StateInputs(**kw))


def test_missing_and_waiting() -> None:
    assert st(exists=False)[0] is RunState.MISSING
    assert st(has_output=False, alive=None)[0] is RunState.WAITING
    state, reason = st(readable=False)
    assert state is RunState.WAITING and "permission denied" in reason


def test_live_phases_follow_the_log_while_the_process_lives() -> None:
    base = dict(has_output=True, has_log=True, alive=True, pid=42, last_write_at=NOW - 1, seconds_per_step=2.0)
    for phase, want in [("loading", RunState.LOADING), ("caching", RunState.CACHING),
                        ("training", RunState.TRAINING), ("sampling", RunState.SAMPLING),
                        ("saving", RunState.SAVING), (None, RunState.LOADING)]:
        state, reason = st(phase=phase, **base)
        assert state is want, phase
        assert "PID 42 is alive" in reason


def test_finished_beats_everything_once_model_saved() -> None:
    state, reason = st(has_output=True, model_saved=True, alive=False, final_name="x.safetensors")
    assert state is RunState.FINISHED and "model saved." in reason
    # a complete final file finishes a run only when it is not visibly still training
    live = dict(has_output=True, has_log=True, alive=True, phase="training", final_complete=True,
                last_write_at=NOW, step=10, total_steps=100)
    assert st(**live)[0] is RunState.TRAINING
    assert st(**{**live, "alive": False})[0] is RunState.FINISHED


def test_failed_on_error_lines() -> None:
    gone = dict(has_output=True, has_log=True, alive=False, pid=7, step=37)
    state, reason = st(oom="torch.OutOfMemoryError: CUDA out of memory.", **gone)
    assert state is RunState.FAILED and "CUDA out of memory at step 37" in reason
    state, reason = st(traceback="RuntimeError: boom", **gone)
    assert state is RunState.FAILED and "RuntimeError: boom" in reason
    state, reason = st(unrecognized_args=("--batch_size", "2"), **{**gone, "step": None})
    assert state is RunState.FAILED and "--batch_size 2" in reason
    # an error line with the process still alive: failed, still exiting
    state, reason = st(traceback="RuntimeError: boom", **{**gone, "alive": True})
    assert state is RunState.FAILED and "still exiting" in reason
    # exit status from the run record, no error line
    state, reason = st(has_output=True, exit_code=1)
    assert state is RunState.FAILED and "status 1" in reason


def test_interrupted_without_final_and_without_error() -> None:
    state, reason = st(has_output=True, alive=False, pid=9, step=12,
                       traceback="KeyboardInterrupt", keyboard_interrupt=True)
    assert state is RunState.INTERRUPTED and "SIGINT" in reason
    state, reason = st(has_output=True, exit_signal=15, pid=9)
    assert state is RunState.INTERRUPTED and "SIGTERM" in reason
    state, reason = st(has_output=True, alive=False)
    assert state is RunState.INTERRUPTED


def test_stalled_when_alive_but_silent_for_stall_factor_step_times() -> None:
    base = dict(has_output=True, has_log=True, alive=True, phase="training", seconds_per_step=20.0,
                stall_factor=10.0, step=5)
    assert st(last_write_at=NOW - 199, **base)[0] is RunState.TRAINING
    state, reason = st(last_write_at=NOW - 201, **base)
    assert state is RunState.STALLED and "3 min" in reason and "20.0 s/step" in reason
    # the 120 s floor
    fast = {**base, "seconds_per_step": 1.0}
    assert st(last_write_at=NOW - 100, **fast)[0] is RunState.TRAINING
    assert st(last_write_at=NOW - 121, **fast)[0] is RunState.STALLED
    # loading has no stall (the model hash can take minutes)
    assert st(last_write_at=NOW - 5000, **{**base, "phase": "loading"})[0] is RunState.LOADING


def test_without_process_info_liveness_comes_from_the_log_age() -> None:
    base = dict(has_output=True, has_log=True, process_known=False, alive=None, phase="training",
                seconds_per_step=2.0)
    state, reason = st(last_write_at=NOW - 5, **base)
    assert state is RunState.TRAINING and "no process info" in reason
    state, reason = st(last_write_at=NOW - 3600, **base)
    assert state is RunState.INTERRUPTED and "no process info" in reason and "60 min" in reason


# ------------------------------------------------------------------ config and options


def test_options_from_argv_handles_prefixes_equals_lists_and_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[training]\nsave_every_n_epochs = 2\nxformers = true\nnetwork_dim = 16\n')
    argv = ["/usr/bin/python3", "sdxl_train_network.py", "--config_file", str(cfg), "--output_d=/out",
            "--network_dim", "64", "--text_encoder_lr", "1e-4", "2e-4", "--gradient_checkpointing"]
    opts = options_from_argv(argv)
    assert opts["output_dir"] == ("/out",)
    assert opts["network_dim"] == ("64",)  # the command line wins over the config file
    assert opts["text_encoder_lr"] == ("1e-4", "2e-4")
    assert opts["gradient_checkpointing"] is True and opts["xformers"] is True
    assert opts["save_every_n_epochs"] == ("2",)


def test_merge_config_first_layer_wins_and_spacing_inference() -> None:
    merged = merge_config(TrainConfig(batch_size=4), TrainConfig(batch_size=2, network_dim=64), None)
    assert merged.batch_size == 4 and merged.network_dim == 64


# ------------------------------------------------------------------ the real sd-scripts run


@pytest.mark.skipif(not REAL.is_dir(), reason="real run not present")
def test_real_run_reads_finished_with_three_checkpoints_and_writes_nothing() -> None:
    before = {p: p.stat().st_mtime_ns for p in REAL.rglob("*")}
    snap = read_run(REAL, gpu=False, procs=False)
    assert snap.state is RunState.FINISHED
    assert snap.progress.step == 9 and snap.progress.total_steps == 9 and snap.progress.epochs == 3
    assert [(c.name, c.kind, c.epoch, c.step, c.status) for c in snap.checkpoints] == [
        ("tiny_lora-000001.safetensors", CheckpointKind.EPOCH, 1, 3, CheckpointStatus.COMPLETE),
        ("tiny_lora-000002.safetensors", CheckpointKind.EPOCH, 2, 6, CheckpointStatus.COMPLETE),
        ("tiny_lora.safetensors", CheckpointKind.FINAL, 3, 9, CheckpointStatus.COMPLETE),
    ]
    cfg = snap.config
    assert (cfg.output_name, cfg.num_train_images, cfg.num_batches_per_epoch, cfg.num_epochs) == ("tiny_lora", 6, 6, 3)
    assert (cfg.batch_size, cfg.gradient_accumulation_steps, cfg.total_steps) == (1, 2, 9)
    assert (cfg.network_dim, cfg.network_alpha, cfg.base_model_version) == (4, 2.0, "sdxl_base_v1-0")
    assert cfg.steps_per_epoch == 3
    assert snap.progress.eta_seconds is None
    assert [a.kind for a in snap.alerts if a.kind != "reader"] == ["finished"]
    assert {p: p.stat().st_mtime_ns for p in REAL.rglob("*")} == before  # nothing written


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="real run not present")
def test_real_run_series_and_loss_at_save_equal_tbparse() -> None:
    """tbparse is the oracle (about 1 s to import pandas, hence slow)."""
    snap = read_run(REAL, gpu=False, procs=False)
    # loss at save time = loss/average at the checkpoint's ss_steps (last point at that step)
    tb = _tbparse_scalars(REAL)
    avg = [(s, v) for s, v in tb["loss/average"]]
    for c in snap.checkpoints:
        want = [v for s, v in avg if s <= c.step][-1]
        assert c.loss_at_save == pytest.approx(want)
    # the series equal tbparse's, value by value
    for tag, points in tb.items():
        series = snap.series[tag]
        assert series.count == len(points)
        assert [(p.step, p.value) for p in series.points] == pytest.approx(points)


def _tbparse_scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    from tbparse import SummaryReader

    df = SummaryReader(str(root / "logs"), pivot=False, extra_columns={"wall_time"}).scalars
    df = df.sort_values(["wall_time"], kind="stable")
    out: dict[str, list[tuple[int, float]]] = {}
    for tag, step, value in zip(df["tag"], df["step"], df["value"]):
        out.setdefault(tag, []).append((int(step), float(value)))
    return out


# ------------------------------------------------------------------ directories that change


def test_missing_at_start_then_created_then_deleted_and_recreated(tmp_path: Path) -> None:
    run = tmp_path / "run"
    reader = RunReader(run, gpu=False, procs=False, clock=lambda: NOW)
    snap = reader.refresh()
    assert snap.state is RunState.MISSING and str(run) in snap.state_reason
    run.mkdir()
    assert reader.refresh().state is RunState.WAITING
    _copy_real(run)
    snap = reader.refresh()
    assert snap.state is RunState.FINISHED and len(snap.checkpoints) == 3
    shutil.rmtree(run)
    assert reader.refresh().state is RunState.MISSING
    run.mkdir()
    snap = reader.refresh()
    assert snap.state is RunState.WAITING and snap.checkpoints == () and dict(snap.series) == {}


def _copy_real(dst: Path) -> None:
    for p in REAL.rglob("*"):
        target = dst / p.relative_to(REAL)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_permission_denied_is_a_clear_state(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0)
    try:
        snap = RunReader(run, gpu=False, procs=False, clock=lambda: NOW).refresh()
        assert snap.state is RunState.WAITING and "permission denied" in snap.state_reason
    finally:
        run.chmod(0o755)


def test_half_written_final_checkpoint_is_not_finished(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    header = json.dumps({"__metadata__": {"ss_output_name": "x", "ss_epoch": "1", "ss_steps": "3"},
                         "a": {"dtype": "F16", "shape": [1000], "data_offsets": [0, 2000]}}).encode()
    (run / "x.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    snap = RunReader(run, gpu=False, procs=False, clock=lambda: NOW).refresh()
    assert snap.state is not RunState.FINISHED
    assert snap.checkpoints[0].status is not CheckpointStatus.COMPLETE


def test_infer_save_every_from_spacing() -> None:
    from sdxl_tui.model import Checkpoint

    def ck(kind: CheckpointKind, epoch: int | None, step: int | None) -> Checkpoint:
        return Checkpoint("n", "p", kind, epoch, step, 1, 0.0, CheckpointStatus.COMPLETE)

    assert infer_save_every([ck(CheckpointKind.EPOCH, 2, 100), ck(CheckpointKind.EPOCH, 4, 200)]) == (2, None)
    assert infer_save_every([ck(CheckpointKind.STEP, None, 500)]) == (None, 500)
    assert not math.isnan(1.0)
