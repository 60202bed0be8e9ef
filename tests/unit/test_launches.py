"""A resumed run: launches found, stitched at the step of the state each resumed from, the
redone branch kept apart, checkpoints attributed to their launch (sources/launches.py).

The fast tests build the reader's output by hand; the last ones run the simulator twice as
real processes, the second resumed from the first's ``-000001-state`` and appending to its
log, as a user does with ``>>``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sdxl_tui.formats.trainstate import TrainState
from sdxl_tui.model import Checkpoint, CheckpointKind, CheckpointStatus, ScalarPoint, Series, StateDir
from sdxl_tui.sources.events import EventRun
from sdxl_tui.sources.launches import attribute_checkpoints, describe_launch, find_launches, log_offset, stitch
from sdxl_tui.sources.launchlog import LaunchLines, LoggedLaunch
from tests.oracles import read_safetensors_header, scalar_points

# -- a hand-built resumed run: launch 1 ran steps 1-9 (walls 100-108), launch 2 resumed from
# the state at step 3 / epoch 1 and counted 1-6 again (walls 200-205); the reader stitched it
# at the previous end (+9, epochs +3)

RUNS = (
    EventRun("20261205010000", "/o/logs/20261205010000", 100.0, 100.0, {"loss/current": 0, "loss/epoch_average": 0}),
    EventRun("20261205020000", "/o/logs/20261205020000", 200.0, 200.0, {"loss/current": 9, "loss/epoch_average": 3}),
)
FIRST = [ScalarPoint(s, 1.0 + s / 100, 99.0 + s) for s in range(1, 10)]
SECOND = [ScalarPoint(9 + s, 2.0 + s / 100, 199.0 + s) for s in range(1, 7)]
EPOCH1 = [ScalarPoint(e, 10.0 + e, 100.0 + 3 * e - 0.5) for e in (1, 2, 3)]
EPOCH2 = [ScalarPoint(3 + e, 20.0 + e, 200.0 + 3 * (e - 1) - 0.5) for e in (2, 3)]
SERIES = {
    "loss/current": Series("loss/current", tuple(FIRST + SECOND), 15, SECOND[-1]),
    "loss/epoch_average": Series("loss/epoch_average", tuple(EPOCH1 + EPOCH2), 5, EPOCH2[-1]),
}
LOGGED = (LoggedLaunch(), LoggedLaunch("/o/rs-000001-state", TrainState(1, 3)))


def _ckpt(name: str, step: int, started: float) -> Checkpoint:
    return Checkpoint(name, f"/o/{name}", CheckpointKind.EPOCH, 2, step, 10, started + 50,
                      CheckpointStatus.COMPLETE, metadata={"ss_training_started_at": str(started)})


def test_stitched_at_the_state_step_with_the_redone_branch_apart() -> None:
    launches = find_launches(RUNS, LOGGED)
    assert [(la.resume_step, la.offset, la.source) for la in launches] == [(None, 0, ""), (3, 3, "log")]
    got = stitch(SERIES, RUNS, launches, (9,))
    main = got.series["loss/current"]
    assert [p.step for p in main.points] == list(range(1, 10))
    assert [p.value for p in main.points[:3]] == [1.01, 1.02, 1.03]  # the first launch up to the state
    assert [p.value for p in main.points[3:]] == [2.01, 2.02, 2.03, 2.04, 2.05, 2.06]
    assert main.last is not None and (main.last.step, main.last.value) == (9, 2.06)
    gone = got.discarded["loss/current"]
    assert [(p.step, p.value) for p in gone.points] == [(s, 1.0 + s / 100) for s in range(4, 10)]
    # epoch numbers are absolute: epoch 2 and 3 of the first launch were redone
    assert [(p.step, p.value) for p in got.series["loss/epoch_average"].points] == [(1, 11.0), (2, 22.0), (3, 23.0)]
    assert [(p.step, p.value) for p in got.discarded["loss/epoch_average"].points] == [(2, 12.0), (3, 13.0)]
    assert got.resume_steps == (3,)
    first, second = got.launches
    assert (first.first_step, first.last_step, first.discarded_after) == (1, 9, 3)
    assert (second.first_step, second.last_step, second.discarded_after) == (4, 9, None)
    assert "redone by a later launch" in describe_launch(first)
    assert describe_launch(second).startswith("resumed from rs-000001-state at step 3")


def test_without_event_files_the_logs_times_place_launches_and_checkpoints() -> None:
    t1, t2 = "20261205010000", "20261205020000"
    logged = (LoggedLaunch(at=t1), LoggedLaunch("/o/rs-000001-state", TrainState(1, 3), at=t2))
    launches = find_launches((), logged)
    began = time.mktime(time.strptime(t2, "%Y%m%d%H%M%S")) - 30  # before its "running training"
    (ck,) = attribute_checkpoints([_ckpt("rs-000002.safetensors", 3, began)], launches)
    assert (ck.launch, ck.step, ck.trainer_step) == (1, 6, 3)


def test_checkpoints_belong_to_the_launch_that_wrote_them() -> None:
    launches = find_launches(RUNS, LOGGED)
    old, new = attribute_checkpoints([_ckpt("rs-000001.safetensors", 3, 95.0),
                                      _ckpt("rs-000002.safetensors", 3, 195.0)], launches)
    assert (old.launch, old.step, old.trainer_step) == (0, 3, None)
    assert (new.launch, new.step, new.trainer_step) == (1, 6, 3)


def test_the_command_lines_resume_and_the_state_folder_when_the_log_says_nothing() -> None:
    states = (StateDir("rs-000001-state", "/o/rs-000001-state", 1, 3, True),)
    launches = find_launches(RUNS, (), resume_arg="/o/rs-000001-state", states=states)
    assert [(la.resume_step, la.resume_epoch, la.source) for la in launches] == [(None, None, ""),
                                                                                 (3, 1, "command line")]


def test_one_launch_never_resumed_is_left_alone() -> None:
    assert find_launches(RUNS[:1], (LoggedLaunch(),)) == ()
    assert stitch(SERIES, RUNS, ()).series is SERIES


def test_skip_until_initial_step_keeps_the_trainers_counts() -> None:
    logged = (LoggedLaunch(), LoggedLaunch("/o/rs-000001-state", TrainState(1, 3), skip=True))
    launches = find_launches(RUNS, logged)
    assert launches[1].own_counts and launches[1].offset == 0
    got = stitch(SERIES, RUNS, launches)
    assert [p.step for p in got.series["loss/current"].points] == [1, 2, 3, *range(10, 16)]
    assert "the trainer's own" in describe_launch(got.launches[1])


# -- real processes --------------------------------------------------------------------------

COMMON = ["--output_name", "rs", "--max_train_epochs", "3", "--save_every_n_epochs", "1",
          "--sim-batches-per-epoch", "3", "--sim-step-seconds", "0.02", "--sim-startup-seconds", "0", "--save_state"]


def _launch(out: Path, extra: list[str], mode: str, common: list[str]) -> None:
    from sdxl_tui.sim import simulate_command

    with open(out / "training.log", mode) as log:  # "> training.log", then ">> training.log"
        done = subprocess.run(simulate_command(out, [*common, "--logging_dir", str(out / "logs"), *extra]),
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0


def _after_first(out: Path, extra: list[str], common: list[str] = COMMON) -> None:
    """The first launch to completion, then the second once the clock has moved on a second
    (sd-scripts names its TensorBoard folder by the second)."""
    out.mkdir()
    _launch(out, [], "wb", common)
    first = next((out / "logs").iterdir()).name
    deadline = time.monotonic() + 5
    while time.strftime("%Y%m%d%H%M%S") <= first and time.monotonic() < deadline:
        time.sleep(0.05)
    _launch(out, ["--resume", str(out / "rs-000001-state"), *extra], "ab", common)


@pytest.mark.slow
def test_a_resumed_run_read_at_its_true_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxl_tui.commands.status import format_status
    from sdxl_tui.sources.rundir import read_run
    from sdxl_tui.sources.snapshot_json import snapshot_to_json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "out"
    _after_first(out, [])
    # the cached log and event states (a second status) say the same
    for _ in range(2):
        cached = read_run(out, gpu=False, procs=False, cache=True)
        assert [la.resume_step for la in cached.launches] == [None, 3] and cached.progress.step == 9
    # what the trainer wrote: its own count restarted at 0
    assert json.loads((out / "rs-state" / "train_state.json").read_text()) == {"current_epoch": 3, "current_step": 6}
    assert read_safetensors_header(out / "rs-000002.safetensors").metadata["ss_steps"] == "3"
    second = scalar_points(next(sorted((out / "logs").iterdir())[1].glob("network_train/events.*")))
    assert [s for s, _ in second["loss/current"]] == list(range(1, 7))

    snap = read_run(out, gpu=False, procs=False)
    assert (snap.state.value, snap.progress.step, snap.progress.total_steps) == ("finished", 9, 9)
    ck = {c.name: c for c in snap.checkpoints}["rs-000002.safetensors"]
    assert (ck.launch, ck.step, ck.trainer_step) == (1, 6, 3)
    assert ck.loss_at_save == pytest.approx(second["loss/average"][2][1])  # the resumed launch's, at its step 3
    assert [p.step for p in snap.discarded["loss/current"].points] == list(range(4, 10))
    assert [p.step for p in snap.series["loss/current"].points] == list(range(1, 10))
    assert snap.resume_steps == (3,)
    text = format_status(snap)
    assert "step 9/9 (100.0%)" in text and "resumed from rs-000001-state at step 3" in text
    assert "steps after 3 redone by a later launch (discarded branch)" in text
    data = snapshot_to_json(snap)
    assert data["step"] == 9 and [la["resume_step"] for la in data["launches"]] == [None, 3]
    assert data["discarded"]["loss/current"]["first_step"] == 4
    # the state folders at true steps too: rs-000002-state and rs-state were saved by the resumed launch
    assert {s.name: s.step for s in snap.states} == {"rs-000001-state": 3, "rs-000002-state": 6, "rs-state": 9}
    from sdxl_tui.report import charts  # the report's chart draws the redone branch too

    plain = charts.loss_chart(snap.series, theme=charts.LIGHT)
    assert plain is not None and charts.loss_chart(snap.series, theme=charts.LIGHT, discarded=snap.discarded) != plain


@pytest.mark.slow
def test_skip_until_initial_step_with_accumulation_shows_the_trainers_counts(tmp_path: Path) -> None:
    from sdxl_tui.commands.status import format_status
    from sdxl_tui.sources.rundir import read_run

    out = tmp_path / "out"
    accumulated = [*COMMON[:7], "6", "--gradient_accumulation_steps", "2", *COMMON[8:]]
    _after_first(out, ["--skip_until_initial_step"], accumulated)
    snap = read_run(out, gpu=False, procs=False)
    assert snap.state.value == "finished" and snap.launches[1].own_counts
    final = {c.name: c for c in snap.checkpoints}["rs.safetensors"]
    assert (final.launch, final.step) == (1, -3)  # sd-scripts' own ss_steps, shown as it is
    assert "the step counts are the trainer's own" in format_status(snap)
    # -000002 was the first launch's (the skipping launch began at epoch 3): its loss is that launch's
    first = scalar_points(next(sorted((out / "logs").iterdir())[0].glob("network_train/events.*")))
    second = {c.name: c for c in snap.checkpoints}["rs-000002.safetensors"]
    assert (second.launch, second.step) == (0, 6)
    assert second.loss_at_save == pytest.approx(next(v for s, v in first["loss/average"] if s == 6))


def test_a_launch_newer_than_every_event_folder_counts_before_its_first_scalar() -> None:
    # the resumed launch logged its resume lines (stderr) but has no event folder yet
    logged = (LoggedLaunch(at="20261205010005"), LoggedLaunch("/o/rs-000001-state", TrainState(1, 3),
                                                              at="20261205010105"))
    launches = find_launches(RUNS[:1], logged)
    local = time.mktime(time.strptime("20261205010105", "%Y%m%d%H%M%S"))  # no folder: its log time
    assert [(la.resume_step, la.in_log, la.started_at) for la in launches] == [(None, True, 100.0),
                                                                               (3, True, local)]
    got = stitch(SERIES, RUNS[:1], launches)
    assert [p.step for p in got.discarded["loss/current"].points][:2] == [4, 5]  # redone from now on
    # a launch known only from the live command line: the log's bar is still the previous one's
    states = (StateDir("rs-000001-state", "/o/rs-000001-state", 1, 3, True),)
    only_cmd = find_launches(RUNS[:1], logged[:1], resume_arg="/o/rs-000001-state", resume_since=150.0,
                             states=states)
    assert [la.resume_step for la in only_cmd] == [None, 3] and log_offset(only_cmd) == 0
    assert log_offset(launches) == 3


def test_the_logs_launch_lines() -> None:
    lines = LaunchLines()
    assert lines.record("resume training from local state: /o/rs-000001-state", "2026-12-05 01:01:05") == "resume"
    assert lines.record("load train state from /o/rs-000001-state/train_state.json: "
                        "{'current_epoch': 1, 'current_step': 3}") == "state"
    pending = lines.launches  # the block is not in the log yet (stdout is buffered)
    assert pending == (LoggedLaunch("/o/rs-000001-state", TrainState(1, 3), at="20261205010105"),)
    lines.running("2026-12-05 01:01:09")
    assert lines.record("skipping 3 steps / 3ステップをスキップします") == "skip"
    assert lines.launches == (LoggedLaunch("/o/rs-000001-state", TrainState(1, 3), skip=True,
                                           at="20261205010109"),)


@pytest.mark.slow
def test_a_live_resumed_trainer_still_loading_is_not_the_previous_launchs_end(tmp_path: Path) -> None:
    from sdxl_tui.sim import simulate_command
    from sdxl_tui.sources.rundir import read_run

    out = tmp_path / "out"
    out.mkdir()
    _launch(out, [], "wb", COMMON)
    args = [*COMMON, "--logging_dir", str(out / "logs"), "--resume", str(out / "rs-000001-state"),
            "--sim-startup-seconds", "60"]  # loads for a long while: its resume lines come later
    with open(out / "training.log", "ab") as log:
        proc = subprocess.Popen(simulate_command(out, args), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        snap = read_run(out, gpu=False)
        while (snap.process is None or not snap.process.alive) and time.monotonic() < deadline:
            time.sleep(0.1)
            snap = read_run(out, gpu=False)
        assert snap.process is not None and snap.process.pid == proc.pid
        assert b"resume training" not in (out / "training.log").read_bytes()  # the log says nothing yet
        assert snap.state.value == "loading" and snap.progress.step == 3
        assert snap.launches[-1].source == "command line" and not snap.launches[-1].in_log
    finally:
        proc.kill()  # by PID: the one process this test started
        proc.wait(timeout=10)


def test_a_launch_started_again_without_resume_is_said_so() -> None:
    launches = find_launches(RUNS, (LoggedLaunch(), LoggedLaunch()))
    got = stitch(SERIES, RUNS, launches, (10,))
    assert got.series is SERIES and got.resume_steps == (10,)  # the reader's order in time, as before
    assert describe_launch(got.launches[0]) == "first launch"
    assert describe_launch(got.launches[1]).startswith("started again without --resume")


def test_a_state_saved_by_a_resumed_launch_counts_that_launchs_offset_too() -> None:
    third = EventRun("20261205030000", "/o/logs/20261205030000", 300.0, 300.0, {"loss/current": 15})
    logged = (LoggedLaunch(saved=("rs-000001-state",)),
              LoggedLaunch("/o/rs-000001-state", TrainState(1, 3), saved=("rs-000002-state",)),
              LoggedLaunch("/o/rs-000002-state", TrainState(2, 3)))  # launch 2's own count: 3
    launches = find_launches((*RUNS, third), logged)
    assert [(la.resume_step, la.offset, la.chained_from) for la in launches] == [(None, 0, None), (3, 3, None),
                                                                                 (6, 6, 1)]
    assert "launch #2's own steps" in describe_launch(launches[2])


def test_the_log_names_the_state_folders_each_launch_saved() -> None:
    lines = LaunchLines()
    lines.running("2026-12-05 01:00:00")
    lines.record("save train state to /o/rs-000001-state/train_state.json at epoch 1 step 3")
    lines.record("save train state to /o/rs-state/train_state.json at epoch 3 step 9")
    assert lines.launches[0].saved == ("rs-000001-state", "rs-state")


def test_one_launch_resumed_into_a_new_folder_goes_on_from_the_states_step() -> None:
    run = EventRun("20261205020000", "/n/logs/20261205020000", 200.0, 200.0, {"loss/current": 0})
    own = [ScalarPoint(s, 2.0 + s / 100, 199.0 + s) for s in range(1, 7)]
    launches = find_launches((run,), (LoggedLaunch("/o/rs-000001-state", TrainState(1, 3)),))
    got = stitch({"loss/current": Series("loss/current", tuple(own), 6, own[-1])}, (run,), launches)
    assert [p.step for p in got.series["loss/current"].points] == list(range(4, 10))
    assert not got.discarded and log_offset(got.launches) == 3
