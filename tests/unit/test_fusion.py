"""sources/fusion.py: the rules that turn observations into a snapshot, on hand-built data.

No files, no processes: every input is a frozen value built here, so each rule (config
precedence, step and epoch reconciliation, loss source, state, loss at save, memory across
refreshes) is pinned down in milliseconds.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    GpuSample,
    GpuStatus,
    ProcessTree,
    ProcInfo,
    RunState,
    ScalarPoint,
    Series,
    TrainConfig,
)
from sdxl_tui.sources.checkpoints import CheckpointScan
from sdxl_tui.sources.fusion import Observations, fuse, loss_at
from sdxl_tui.sources.logparse import LogFacts, SaveEvent
from sdxl_tui.sources.procs import ExitInfo

NOW = 2_000_000_000.0
RUN = "/runs/luca"


def ckpt(name: str, kind: CheckpointKind, *, epoch: int | None = None, step: int | None = None,
         metadata: dict[str, str] | None = None, mtime: float = NOW - 60,
         status: CheckpointStatus = CheckpointStatus.COMPLETE) -> Checkpoint:
    return Checkpoint(name, f"{RUN}/{name}", kind, epoch, step, 1000, mtime, status,
                      metadata=MappingProxyType(metadata or {}))


def series(tag: str, steps: range, value: float = 0.1, source: str = "tensorboard") -> Series:
    pts = tuple(ScalarPoint(s, value + s / 1000, NOW - 1000 + s) for s in steps)
    return Series(tag, pts, len(pts), pts[-1] if pts else None, source)


def alive_tree(pid: int = 4242) -> ProcessTree:
    return ProcessTree(trainer=ProcInfo(pid, NOW - 3600, ("python", "sdxl_train_network.py")))


def obs(**kw: object) -> Observations:
    base: dict[str, object] = {"run_dir": RUN, "now": NOW, "log_path": f"{RUN}/training.log"}
    base.update(kw)
    return Observations(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- configuration


def test_config_precedence_log_then_metadata_then_options() -> None:
    log = LogFacts(config=TrainConfig(batch_size=4))
    md = {"ss_batch_size_per_device": "2", "ss_network_dim": "64", "ss_output_name": "luca"}
    scan = CheckpointScan(checkpoints=(ckpt("luca-000002.safetensors", CheckpointKind.EPOCH, epoch=2, metadata=md),))
    options = {"train_batch_size": ("8",), "network_dim": ("32",), "network_alpha": ("16",)}
    snap = fuse(obs(log=log, log_mtime=NOW, scan=scan, options=options))
    assert snap.config.batch_size == 4  # the log's block wins
    assert snap.config.network_dim == 64  # then the checkpoint's metadata
    assert snap.config.network_alpha == 16.0  # then the command line
    assert snap.config.output_name == "luca"


def test_output_name_and_save_spacing_from_the_logged_saves() -> None:
    saves = tuple(SaveEvent("checkpoint", f"{RUN}/v1-{e:06d}.safetensors", e * 10, e) for e in (2, 4))
    snap = fuse(obs(log=LogFacts(saves=saves), log_mtime=NOW))
    assert snap.config.output_name == "v1"
    assert snap.config.save_every_n_epochs == 2 and snap.config.save_every_n_steps is None


# --------------------------------------------------------------------------- position


def test_step_and_speed_from_the_events_when_the_log_has_none() -> None:
    loss = series("loss/current", range(1, 101))
    snap = fuse(obs(series={"loss/current": loss}, event_files=("ev",), events_last_wall_time=NOW - 900))
    assert snap.progress.step == 100
    assert snap.progress.seconds_per_step is not None and math.isclose(snap.progress.seconds_per_step, 1.0)


def test_epoch_follows_the_step_when_the_epoch_line_was_not_read() -> None:
    log = LogFacts(step=250, epoch=1, epochs=12, config=TrainConfig(num_batches_per_epoch=100,
                                                                     gradient_accumulation_steps=2))
    snap = fuse(obs(log=log, log_mtime=NOW, process=alive_tree()))
    assert snap.progress.epoch == 5  # 50 steps per epoch: step 250 ends epoch 5
    assert snap.progress.total_steps == 600  # 12 epochs x 50 steps, no total in the log


def test_epoch_from_the_newest_complete_checkpoint_without_log_or_steps() -> None:
    scan = CheckpointScan(checkpoints=(ckpt("a-000002.safetensors", CheckpointKind.EPOCH, epoch=2, step=100),
                                       ckpt("a-000004.safetensors", CheckpointKind.EPOCH, epoch=4, step=200)))
    assert fuse(obs(scan=scan)).progress.epoch == 4


# --------------------------------------------------------------------------- loss source


def test_the_logs_avr_loss_stands_in_only_without_event_loss() -> None:
    pts = (ScalarPoint(1, 0.2), ScalarPoint(2, 0.19))
    log = LogFacts(avr_loss_points=pts, avr_loss_count=2)
    from_log = fuse(obs(log=log, log_mtime=NOW))
    assert from_log.series["loss/average"].source == "log" and from_log.series["loss/average"].count == 2
    with_events = fuse(obs(log=log, log_mtime=NOW, series={"loss/current": series("loss/current", range(1, 3))}))
    assert "loss/average" not in with_events.series


def test_loss_at_takes_the_point_at_or_before_the_step() -> None:
    s = {"loss/average": Series("loss/average", (ScalarPoint(10, 1.0), ScalarPoint(20, 2.0)), 2, ScalarPoint(20, 2.0))}
    assert loss_at(s, 5) is None
    assert loss_at(s, 10) == 1.0 and loss_at(s, 19) == 1.0 and loss_at(s, 25) == 2.0


def test_loss_at_save_is_remembered_once_the_series_passed_the_step() -> None:
    c = ckpt("a-step00000050.safetensors", CheckpointKind.STEP, step=50)
    first = fuse(obs(scan=CheckpointScan(checkpoints=(c,)), series={"loss/average": series("loss/average", range(1, 101))}))
    (saved,) = first.checkpoints
    assert saved.loss_at_save is not None and math.isclose(saved.loss_at_save, 0.15)
    # later the display points are downsampled and no longer hold step 50: the value stays
    thin = series("loss/average", range(1, 201, 40), value=5.0)
    later = fuse(obs(scan=CheckpointScan(checkpoints=(c,)), series={"loss/average": thin}), first)
    assert later.checkpoints[0].loss_at_save == saved.loss_at_save
    assert fuse(obs(scan=CheckpointScan(checkpoints=(c,)), series={"loss/average": thin})).checkpoints[0].loss_at_save != saved.loss_at_save


# --------------------------------------------------------------------------- state


def test_a_traceback_the_live_trainer_survived_is_not_the_state() -> None:
    log = LogFacts(phase="training", step=10, traceback="RuntimeError: sample generation failed")
    first = fuse(obs(log=log, log_mtime=NOW, process=alive_tree()))
    assert first.state is RunState.FAILED and "process still exiting" in first.state_reason
    assert first.traceback_seen == ("RuntimeError: sample generation failed", 10)
    later_log = LogFacts(phase="training", step=12, traceback=log.traceback)
    moved_on = fuse(obs(log=later_log, log_mtime=NOW, process=alive_tree()), first)
    assert moved_on.state is RunState.TRAINING
    assert any(a.kind == "crash" for a in moved_on.alerts)  # still an alert
    # without the memory of the first sighting the same facts read as a failure
    assert fuse(obs(log=later_log, log_mtime=NOW, process=alive_tree())).state is RunState.FAILED


def test_an_ended_run_reports_the_recorded_exit() -> None:
    ended = ExitInfo(pid=77, exit_code=None, signal=9, ended_at=NOW - 5)
    snap = fuse(obs(log=LogFacts(phase="training", step=3), log_mtime=NOW - 10, exit=ended))
    assert snap.state is RunState.INTERRUPTED and "SIGKILL" in snap.state_reason
    assert snap.process is not None and not snap.process.alive and snap.process.pid == 77


def test_no_data_and_invalid_config_read_as_crashes() -> None:
    snap = fuse(obs(log=LogFacts(no_data=True), log_mtime=NOW - 10, process_known=False))
    assert snap.state is RunState.FAILED and "No data found" in snap.state_reason


def test_the_gpu_status_and_problems_pass_through_to_the_alerts() -> None:
    hot = GpuStatus(available=True, gpus=(GpuSample(0, "RTX 4090", temperature=95),))
    snap = fuse(obs(gpu=hot, gpu_temp_warn=85, process=alive_tree(), problems=("a", "b", "a")))
    assert snap.gpu is hot and snap.problems == ("a", "b")
    assert any(a.kind.startswith("gpu") for a in snap.alerts)
