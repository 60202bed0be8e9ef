"""RunReader and the state machine: hand-built facts, the real sd-scripts run, edge directories."""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from sdxl_tui.formats.cmdline import options_from_argv
from sdxl_tui.model import CheckpointKind, CheckpointStatus, RunState, TrainConfig
from sdxl_tui.sources.runconfig import infer_save_every, merge_config
from sdxl_tui.sources.rundir import RunReader, read_run
from sdxl_tui.sources.state import StateInputs, decide_state
from tests.helpers.unprivileged import run_python
from tests.realrun import STORED, materialize

NOW = 2_000_000_000.0


# ------------------------------------------------------------------ state machine (pure)


def st(**kw) -> tuple[RunState, str]:  # type: ignore[no-untyped-def]
    kw.setdefault("now", NOW)
    return decide_state(StateInputs(**kw))


def test_missing_and_waiting() -> None:
    assert st(exists=False)[0] is RunState.MISSING
    assert st(has_output=False, alive=None)[0] is RunState.WAITING
    state, reason = st(readable=False)
    assert state is RunState.UNREADABLE and "permission denied" in reason


def test_live_phases_follow_the_log_while_the_process_lives() -> None:
    base = {"has_output": True, "has_log": True, "alive": True, "pid": 42, "last_write_at": NOW - 1, "seconds_per_step": 2.0}
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
    live = {"has_output": True, "has_log": True, "alive": True, "phase": "training", "final_complete": True,
                "last_write_at": NOW, "step": 10, "total_steps": 100}
    assert st(**live)[0] is RunState.TRAINING
    assert st(**{**live, "alive": False})[0] is RunState.FINISHED


def test_failed_on_error_lines() -> None:
    gone = {"has_output": True, "has_log": True, "alive": False, "pid": 7, "step": 37}
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


def test_not_found_process_with_fresh_log_is_live_briefly_unless_the_log_ended_in_a_traceback() -> None:
    base = {"has_output": True, "has_log": True, "process_known": True, "alive": None, "phase": "training",
                "seconds_per_step": 20.0, "step": 116}
    state, reason = st(last_write_at=NOW - 5, **base)
    assert state is RunState.TRAINING and "trainer process not found" in reason
    assert st(last_write_at=NOW - 90, **base)[0] is RunState.INTERRUPTED  # 60 s grace, not 200 s
    state, reason = st(last_write_at=NOW - 5, traceback="KeyboardInterrupt", keyboard_interrupt=True, **base)
    assert state is RunState.INTERRUPTED and "SIGINT" in reason


def test_stalled_when_alive_but_silent_for_stall_factor_step_times() -> None:
    base = {"has_output": True, "has_log": True, "alive": True, "phase": "training", "seconds_per_step": 20.0,
                "stall_factor": 10.0, "step": 5}
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
    base = {"has_output": True, "has_log": True, "process_known": False, "alive": None, "phase": "training",
                "seconds_per_step": 2.0}
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


def test_real_run_reads_finished_with_three_checkpoints_and_writes_nothing(real_run: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in real_run.rglob("*")}
    snap = read_run(real_run, gpu=False, procs=False)
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
    assert {p: p.stat().st_mtime_ns for p in real_run.rglob("*")} == before  # nothing written


@pytest.mark.slow
def test_real_run_series_and_loss_at_save_equal_tbparse(real_run: Path) -> None:
    """tbparse is the oracle (about 1 s to import pandas, hence slow)."""
    snap = read_run(real_run, gpu=False, procs=False)
    # loss at save = loss/average at the checkpoint's ss_steps, logged before the save: with
    # gradient accumulation 2 the second point at step 3 is epoch 2's first micro-batch
    tb = _tbparse_scalars(real_run)
    avg = [(s, v) for s, v in tb["loss/average"]]
    for c in snap.checkpoints:
        want = next(v for s, v in avg if s == c.step)  # the first point at that step
        assert c.loss_at_save == pytest.approx(want) and c.loss_step == c.step
    first = next(c for c in snap.checkpoints if c.name.endswith("-000001.safetensors"))
    assert round(first.loss_at_save or 0.0, 3) == 1.095  # not 1.101, logged after the save
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
    reader = RunReader(run, procs=False, clock=lambda: NOW)
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
    materialize(dst)


def test_permission_denied_is_a_clear_state(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0)
    code = (
        "from sdxl_tui.sources.rundir import RunReader\n"
        f"snap = RunReader({str(run)!r}, procs=False, clock=lambda: {NOW!r}).refresh()\n"
        "print(snap.state.value, '|', snap.state_reason)\n"
    )
    try:
        out = run_python(code)
    finally:
        run.chmod(0o755)
    assert out.returncode == 0, out.stderr
    state, reason = out.stdout.strip().split(" | ", 1)
    assert (state, reason) == ("unreadable", "cannot read the run directory: permission denied")


def test_half_written_final_checkpoint_is_not_finished(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    header = json.dumps({"__metadata__": {"ss_output_name": "x", "ss_epoch": "1", "ss_steps": "3"},
                         "a": {"dtype": "F16", "shape": [1000], "data_offsets": [0, 2000]}}).encode()
    (run / "x.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    snap = RunReader(run, procs=False, clock=lambda: NOW).refresh()
    assert snap.state is not RunState.FINISHED
    assert snap.checkpoints[0].status is not CheckpointStatus.COMPLETE


def test_infer_save_every_from_spacing() -> None:
    from sdxl_tui.model import Checkpoint

    def ck(kind: CheckpointKind, epoch: int | None, step: int | None) -> Checkpoint:
        return Checkpoint("n", "p", kind, epoch, step, 1, 0.0, CheckpointStatus.COMPLETE)

    assert infer_save_every([ck(CheckpointKind.EPOCH, 2, 100), ck(CheckpointKind.EPOCH, 4, 200)]) == (2, None)
    assert infer_save_every([ck(CheckpointKind.STEP, None, 500)]) == (None, 500)
    assert not math.isnan(1.0)


# ------------------------------------------------------------------ simulator runs, every fault

SIM_BASE = ["--output_name", "luca", "--network_dim", "8", "--network_alpha", "4", "--max_train_epochs", "1",
            "--gradient_accumulation_steps", "2", "--train_batch_size", "4", "--mixed_precision", "fp16",
            "--log_with", "tensorboard", "--sim-step-seconds", "0", "--sim-startup-seconds", "0",
            "--sim-batches-per-epoch", "8"]


def _sim(tmp_path: Path, *extra: str) -> tuple[Path, int]:
    from sdxl_tui.sim import run_simulated

    run = tmp_path / "run"
    rc = run_simulated(run, [*SIM_BASE, "--logging_dir", str(run / "logs"), *extra])
    return run, rc


def _alert(snap, kind: str):  # type: ignore[no-untyped-def]
    found = [a for a in snap.alerts if a.kind == kind]
    assert found, f"no {kind} alert in {[a.kind for a in snap.alerts]}"
    return found[0]


def test_sim_oom_is_failed_with_a_fitted_fix(tmp_path: Path) -> None:
    run, rc = _sim(tmp_path, "--sim-fault", "oom", "--sim-fault-step", "3")
    assert rc == 1
    snap = read_run(run, gpu=False, procs=False)
    assert snap.state is RunState.FAILED and "CUDA out of memory" in snap.state_reason
    assert snap.progress.step == 2
    oom = _alert(snap, "oom")
    assert "--train_batch_size 2 and --gradient_accumulation_steps 4 (effective batch 8 -> 8 unchanged)" in oom.fix
    assert "--gradient_checkpointing (missing)" in oom.fix and "--xformers" in oom.fix
    assert "--network_train_unet_only --cache_text_encoder_outputs" in oom.fix


def test_sim_crash_is_failed_with_the_exception_line(tmp_path: Path) -> None:
    run, rc = _sim(tmp_path, "--sim-fault", "crash", "--sim-fault-step", "2")
    assert rc == 1
    snap = read_run(run, gpu=False, procs=False)
    assert snap.state is RunState.FAILED
    crash = _alert(snap, "crash")
    assert crash.message.startswith("crashed at step 1: RuntimeError: CUDA error")
    assert snap.config.batch_size == 4 and snap.config.gradient_accumulation_steps == 2
    assert snap.config.output_name is None  # no checkpoint, no command line: not known


def test_sim_bad_arguments_are_failed_with_did_you_mean(tmp_path: Path) -> None:
    run, rc = _sim(tmp_path, "--batch_size", "2", "--lowvram")
    assert rc == 2
    snap = read_run(run, gpu=False, procs=False)
    assert snap.state is RunState.FAILED and "unrecognized arguments" in snap.state_reason
    bad = _alert(snap, "bad_args")
    assert "--batch_size: did you mean --train_batch_size? there is no --batch_size" in bad.fix
    assert "--lowvram: did you mean --lowram?" in bad.fix


def test_sim_nan_reports_the_first_nan_step_and_finishes(tmp_path: Path) -> None:
    run, rc = _sim(tmp_path, "--sim-fault", "nan", "--sim-fault-step", "2")
    assert rc == 0
    snap = read_run(run, gpu=False, procs=False)
    assert snap.state is RunState.FINISHED
    nan = _alert(snap, "nan")
    assert nan.step == 2 and "step 2" in nan.message
    assert "--no_half_vae" in nan.fix  # fp16 without --no_half_vae
    assert snap.progress.step == snap.progress.total_steps == 4
    assert snap.checkpoints[-1].name == "luca.safetensors" and snap.checkpoints[-1].complete


def test_incremental_refresh_sees_new_steps_of_the_real_log(tmp_path: Path, real_run: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    data = (real_run / "training.log").read_bytes()
    cut = data.index(b"saving checkpoint: /tmp/runs/real-sdxl-run/tiny_lora-000002")
    (run / "training.log").write_bytes(data[:cut])
    clock = [NOW]
    reader = RunReader(run, procs=False, clock=lambda: clock[0])
    os.utime(run / "training.log", (NOW - 1, NOW - 1))
    first = reader.refresh()
    assert first.state is RunState.TRAINING and first.progress.step == 6 and first.progress.epoch == 2
    assert first.progress.total_steps == 9 and first.progress.eta_seconds is not None
    assert first.series["loss/average"].source == "log"
    # only the log: output name and save spacing come from its "saving checkpoint:" lines
    assert first.config.output_name == "tiny_lora" and first.config.save_every_n_epochs == 1
    assert first.progress.next_checkpoint == "tiny_lora-000002.safetensors"
    assert first.progress.next_checkpoint_eta_seconds is not None
    with open(run / "training.log", "ab") as f:
        f.write(data[cut:])
    os.utime(run / "training.log", (NOW, NOW))
    clock[0] = NOW + 1
    second = reader.refresh()
    assert second.progress.step == 9 and second.state is RunState.FINISHED
    assert second.log_line_count >= first.log_line_count


def test_launch_config_supplies_the_command_line_options(tmp_path: Path) -> None:
    run, _rc = _sim(tmp_path, "--sim-fault", "oom", "--sim-fault-step", "2")
    (run / "sdxl-tui.toml").write_text(
        '[launch]\nprefix = ["python"]\nscript = "sdxl_train_network.py"\n'
        f'output_dir = "{run}"\n'
        '[args]\noutput_name = "luca"\nsave_every_n_epochs = 2\nxformers = true\n'
        'gradient_checkpointing = true\nnetwork_train_unet_only = true\n'
    )
    snap = read_run(run, gpu=False, procs=False)
    assert snap.config.output_name == "luca" and snap.config.save_every_n_epochs == 2
    assert snap.config.attention == "xformers" and snap.config.gradient_checkpointing is True
    oom = _alert(snap, "oom")
    assert "--gradient_checkpointing" not in oom.fix and "--xformers" not in oom.fix
    assert "add --cache_text_encoder_outputs (you already train the U-Net only)" in oom.fix


# ------------------------------------------------------------------ real processes (simulator)


@pytest.fixture
def sim_proc(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start the simulator as its own process (like `nohup ... > training.log`); always ended by PID."""
    import signal
    import subprocess

    from sdxl_tui.sim import start_simulated

    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> tuple[Path, subprocess.Popen[bytes]]:
        run = tmp_path / "run"
        proc = start_simulated(run, [*SIM_BASE, "--logging_dir", str(run / "logs"), *extra])
        procs.append(proc)
        return run, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is only the simulator
        proc.wait(timeout=10)


def _wait_for_step(run: Path, step: int, timeout: float = 20.0) -> None:
    """Poll the real log until the bar shows ``step`` (the process runs on its own clock)."""
    import time

    deadline = time.monotonic() + timeout
    needle = f"| {step}/".encode()
    while time.monotonic() < deadline:
        try:
            if needle in (run / "training.log").read_bytes():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached: {(run / 'training.log').read_bytes()[-500:]!r}")


@pytest.mark.slow
def test_hung_process_is_stalled_with_a_stall_alert(sim_proc) -> None:  # type: ignore[no-untyped-def]
    import time

    from sdxl_tui.sources.procs import ProcessWatcher

    run, proc = sim_proc("--sim-fault", "hang", "--sim-fault-step", "2")
    _wait_for_step(run, 1)
    time.sleep(0.3)  # let the simulator reach its hang
    clock = [time.time()]
    reader = RunReader(run, procs=ProcessWatcher(run), clock=lambda: clock[0])
    snap = reader.refresh()
    assert snap.process is not None and snap.process.pid == proc.pid
    assert snap.state in (RunState.TRAINING, RunState.SAMPLING)
    clock[0] += 3600  # an hour later, nothing written, process alive
    snap = reader.refresh()
    assert snap.state is RunState.STALLED, snap.state_reason
    stall = _alert(snap, "stall")
    assert f"PID {proc.pid}" in stall.message and f"py-spy dump --pid {proc.pid}" in stall.fix


@pytest.mark.slow
def test_sigterm_killed_process_is_interrupted(sim_proc) -> None:  # type: ignore[no-untyped-def]
    import signal

    from sdxl_tui.sources.procs import ProcessWatcher

    run, proc = sim_proc("--sim-step-seconds", "0.2", "--max_train_epochs", "50")
    _wait_for_step(run, 1)
    from sdxl_tui.config import Settings

    every_time = Settings().replace(refresh__process_interval=0)
    reader = RunReader(run, procs=ProcessWatcher(run), settings=every_time)
    snap = reader.refresh()
    assert snap.state is RunState.TRAINING and snap.process is not None and snap.process.alive
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    snap = reader.refresh()
    assert snap.state is RunState.INTERRUPTED, snap.state_reason
    assert "no final checkpoint" in snap.state_reason
    assert _alert(snap, "interrupted").severity.value == "warning"
    # the process that is gone is still reported, not alive (exit status unknown without a record)
    assert snap.process is not None and snap.process.pid == proc.pid and not snap.process.alive


def _run_with_record(tmp_path: Path, **ended: object) -> Path:
    """A run cut mid-training whose run record (as control/launch writes it) says how it ended."""
    run = tmp_path / "run"
    (run / ".sdxl-tui").mkdir(parents=True)
    data = (STORED / "training.log").read_bytes()
    (run / "training.log").write_bytes(data[: data.index(b"saving checkpoint: /tmp/runs/real-sdxl-run/tiny_lora-000002")])
    # pid above the largest possible pid_max (2**22): never a live process
    record = {"pid": 2**22 + 12345, "create_time": 1.0,
              "argv": ["python", "sdxl_train_network.py", "--output_dir", str(run)],
              "cwd": str(run), "started_at": NOW - 100, "log": str(run / "training.log"), "ended_at": NOW - 10, **ended}
    (run / ".sdxl-tui" / "run.json").write_text(json.dumps(record))
    return run


def test_run_record_exit_status_makes_failed_and_is_reported(tmp_path: Path) -> None:
    from sdxl_tui.sources.procs import ProcessWatcher

    run = _run_with_record(tmp_path, exit_code=1, signal=None)
    snap = RunReader(run, procs=ProcessWatcher(run), clock=lambda: NOW).refresh()
    assert snap.state is RunState.FAILED and "status 1" in snap.state_reason
    assert snap.process is not None and not snap.process.alive and snap.process.trainer.exit_code == 1
    assert snap.process.recorded


def test_run_record_sigkill_is_interrupted_with_a_host_oom_hint(tmp_path: Path) -> None:
    from sdxl_tui.sources.procs import ProcessWatcher

    run = _run_with_record(tmp_path, exit_code=None, signal=9)
    snap = RunReader(run, procs=ProcessWatcher(run), clock=lambda: NOW).refresh()
    assert snap.state is RunState.INTERRUPTED and "SIGKILL" in snap.state_reason
    assert _alert(snap, "host_oom").severity.value == "error"
    assert _alert(snap, "interrupted")


def test_half_written_event_record_and_non_utf8_log_are_read_without_error(tmp_path: Path, real_run: Path) -> None:
    run = tmp_path / "run"
    (ev_src,) = real_run.rglob("events.out.tfevents.*")
    ev = run / ev_src.relative_to(real_run)
    ev.parent.mkdir(parents=True)
    data = ev_src.read_bytes()
    ev.write_bytes(data[:-7])  # the last record cut inside its data
    log = (real_run / "training.log").read_bytes()
    (run / "training.log").write_bytes(b"\xff\xfe garbage \x80\n" + log[:2000] + b"\xc3\n")
    reader = RunReader(run, procs=False, clock=lambda: NOW)
    snap = reader.refresh()
    assert snap.series["loss/epoch_average"].count == 2  # the cut record is waiting, not lost
    assert any(ln.text.startswith("\ufffd") for ln in snap.log_lines)
    with open(ev, "ab") as f:
        f.write(data[-7:])  # the writer finishes the record
    snap = reader.refresh()
    assert snap.series["loss/epoch_average"].count == 3
    assert {t: s.count for t, s in snap.series.items()}["loss/current"] == 18


def test_an_exception_the_live_trainer_survives_is_an_alert_not_the_state(tmp_path: Path, real_run: Path) -> None:
    import signal
    import subprocess
    import sys

    from sdxl_tui.config import Settings
    from sdxl_tui.sources.procs import ProcessWatcher

    run = tmp_path / "run"
    run.mkdir()
    helper = Path(__file__).resolve().parents[1] / "helpers" / "fake_train_network.py"
    proc = subprocess.Popen([sys.executable, str(helper), "--output_dir", str(run), "--save_every", "1000"],
                            start_new_session=True)
    try:
        data = (real_run / "training.log").read_bytes()
        first = data.index(b"saving checkpoint: /tmp/runs/real-sdxl-run/tiny_lora-000001")
        second = data.index(b"saving checkpoint: /tmp/runs/real-sdxl-run/tiny_lora-000002")
        tb = (b"\nTraceback (most recent call last):\n  File \"/x/train_util.py\", line 1, in f\n"
              b"    g()\nRuntimeError: transient worker hiccup\n")
        (run / "training.log").write_bytes(data[:first] + tb)
        reader = RunReader(run, procs=ProcessWatcher(run),
                           settings=Settings().replace(refresh__process_interval=0))
        snap = reader.refresh()
        assert snap.process is not None and snap.process.pid == proc.pid
        assert snap.state is RunState.FAILED and "still exiting" in snap.state_reason
        with open(run / "training.log", "ab") as f:
            f.write(data[first:second])  # ... and it trains on
        snap = reader.refresh()
        assert snap.state is RunState.TRAINING and snap.progress.step == 6
        crash = _alert(snap, "crash")
        assert crash.severity.value == "warning" and "transient worker hiccup" in crash.message
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_a_kill_the_user_asked_for_is_stopped_not_failed(sim_proc) -> None:  # type: ignore[no-untyped-def]
    """sd-scripts exits 1 on the SIGINT sdxl-tui kill sends (KeyboardInterrupt in its loop):
    the verdict is "stopped by you" with the last checkpoint and how to go on, never a failure."""
    from sdxl_tui.config import Settings
    from sdxl_tui.control.kill import execute_kill, plan_kill
    from sdxl_tui.sources.procs import ProcessWatcher

    run, proc = sim_proc("--sim-step-seconds", "0.05", "--max_train_epochs", "50", "--save_every_n_epochs", "1")
    _wait_for_step(run, 45)  # past the first epoch's checkpoint
    every_time = Settings().replace(refresh__process_interval=0)
    reader = RunReader(run, procs=ProcessWatcher(run), settings=every_time)
    assert reader.refresh().state is RunState.TRAINING
    plan = plan_kill(run)
    assert plan.trees, plan.notes
    result = execute_kill(plan, timeouts=(20.0, 10.0))
    assert result.ok, result.describe()
    proc.wait(timeout=10)  # (already reaped by the kill: its status is the kill's to see)
    assert b"KeyboardInterrupt" in (run / "training.log").read_bytes()
    snap = reader.refresh()
    assert snap.state is RunState.STOPPED, snap.state_reason
    assert snap.state_reason.startswith("stopped by you (sdxl-tui kill, SIGINT, "), snap.state_reason
    import re

    saved = re.search(r"; last checkpoint luca-(\d{6})\.safetensors; ", snap.state_reason)
    assert saved is not None, snap.state_reason
    left = 50 - int(saved.group(1))  # no --save_state: go on from the weights for the epochs left
    assert f"--network_weights {run}/luca-{saved.group(1)}.safetensors and --max_train_epochs {left}" in snap.state_reason


def test_verdict_rules_for_stops_and_vanished_trainers() -> None:
    base = StateInputs(now=NOW, has_output=True, has_log=True, phase="training", step=7, total_steps=90,
                       last_write_at=NOW - 5, seconds_per_step=1.0)
    # exit 1 after our SIGINT: stopped
    stopped = decide_state(replace(base, alive=False, exit_code=1, keyboard_interrupt=True,
                                   stopped="sdxl-tui kill, SIGINT, 03:12"))
    assert stopped == (RunState.STOPPED, "stopped by you (sdxl-tui kill, SIGINT, 03:12) at step 7")
    # the same exit without a stop record: a failure, as before
    assert decide_state(replace(base, alive=False, exit_code=1))[0] is RunState.FAILED
    # a crash still wins over a stop asked for afterwards
    assert decide_state(replace(base, alive=False, oom="CUDA out of memory", stopped="x"))[0] is RunState.FAILED
    # a trainer seen alive before and not found now is gone at once, log fresh or not
    gone = decide_state(replace(base, alive=None, seen_alive=True, pid=42))
    assert gone[0] is RunState.INTERRUPTED and "PID 42 is gone" in gone[1]
    # never seen (another PID namespace?): a fresh log keeps it live for the short grace
    assert decide_state(replace(base, alive=None))[0] is RunState.TRAINING


@pytest.mark.slow
def test_a_rotated_log_is_followed_where_the_trainer_writes(sim_proc) -> None:  # type: ignore[no-untyped-def]
    """logrotate-style: training.log moved aside, a new empty one created, the trainer still
    writing the old inode. The state follows the steps, not the new file's silence."""
    from sdxl_tui.config import Settings
    from sdxl_tui.sources.procs import ProcessWatcher

    run, _proc = sim_proc("--sim-step-seconds", "0.05", "--max_train_epochs", "50")
    _wait_for_step(run, 2)
    os.rename(run / "training.log", run / "training.log.1")
    (run / "training.log").write_bytes(b"")
    every_time = Settings().replace(refresh__process_interval=0)
    reader = RunReader(run, procs=ProcessWatcher(run), settings=every_time)
    first = reader.refresh()
    assert first.state is RunState.TRAINING, first.state_reason
    assert first.log_path == str(run / "training.log.1")
    import time

    deadline = time.monotonic() + 20
    while (later := reader.refresh()).progress.step == first.progress.step and time.monotonic() < deadline:
        time.sleep(0.1)
    assert later.progress.step is not None and first.progress.step is not None
    assert later.progress.step > first.progress.step and later.state is RunState.TRAINING
