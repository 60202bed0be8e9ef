"""Pilot tests against simulator runs and the real reader: real files, real processes.

Live runs are simulator subprocesses (ended by PID in the fixture); finished runs are
written in-process by ``run_simulated``. Marked slow: each takes seconds, not milliseconds.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from screen_text import screen_text
from textual.message import Message
from tui_helpers import FROZEN, LiveSims, make_finished_run, settings, wait_for

from sdxl_tui.model import CheckpointStatus
from sdxl_tui.tui.app import SdxlTuiApp, make_app
from sdxl_tui.tui.messages import AlertsRaised, SnapshotUpdated
from sdxl_tui.tui.widgets.checkpoints import CheckpointTable

pytestmark = pytest.mark.slow

LIVE_ARGS = [
    "--output_name", "live",
    "--max_train_epochs", "40",
    "--save_every_n_epochs", "1",
    "--sim-step-seconds", "0.12",
    "--sim-startup-seconds", "0.3",
    "--sim-batches-per-epoch", "4",
]


def steps(seen: list[Message]) -> list[int]:
    return [m.snapshot.progress.step for m in seen if isinstance(m, SnapshotUpdated) and m.snapshot.progress.step is not None]


def alert_kinds(seen: list[Message]) -> set[str]:
    return {a.kind for m in seen if isinstance(m, AlertsRaised) for a in m.alerts}


async def test_live_run_progress_checkpoints_and_quit_leaves_the_trainer(live_sims: LiveSims) -> None:
    run_dir, proc = live_sims.start("live", LIVE_ARGS)
    seen: list[Message] = []
    app = make_app(settings(), run_dir, gpu=False, environ={})
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        # progress moves as the simulator writes
        assert await wait_for(pilot, lambda: len(set(steps(seen))) >= 3, timeout=30), steps(seen)
        s = steps(seen)
        assert s == sorted(s) and s[-1] > s[0]
        # a checkpoint row appears
        table = app.query_one(CheckpointTable)
        assert await wait_for(pilot, lambda: table.row_count >= 1, timeout=30)
        assert "-000001" in screen_text(app)  # the run's name is in the header
        # the trainer is alive: kill and stop apply, start does not
        assert await wait_for(pilot, lambda: app.trainer_alive, timeout=15)
        assert app.check_action("kill_run", ()) is True
        assert app.check_action("start_run", ()) is None
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
    assert proc.poll() is None, "quitting the dashboard must leave the trainer running"


async def test_kill_dialog_names_the_trainer_and_cancel_leaves_it(live_sims: LiveSims) -> None:
    run_dir, proc = live_sims.start("victim", LIVE_ARGS)
    app = make_app(settings(), run_dir, gpu=False, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.trainer_alive, timeout=30)
        await pilot.press("k")
        assert await wait_for(pilot, lambda: str(proc.pid) in screen_text(app), timeout=15)
        text = screen_text(app)
        assert "simulate" in text  # the command line is named
        await pilot.press("escape")  # the safe choice
        await pilot.pause(0.5)
    assert proc.poll() is None


async def test_growing_checkpoint_shows_writing_then_complete(finished_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    source = run_dir / "luca_sdxl_v1-000002.safetensors"
    data = source.read_bytes()
    target = run_dir / "luca_sdxl_v1-000003.safetensors"
    # a copy in progress after the run finished: short of what its header promises, still
    # changing; a trainer that died leaves it incomplete instead (tests/unit/test_verdicts.py)
    target.write_bytes(data[: len(data) // 3])
    app = make_app(settings(), run_dir, gpu=False, clock=lambda: FROZEN, environ={})
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and any(c.name == target.name for c in app.snapshot.checkpoints))
        ckpt = next(c for c in app.snapshot.checkpoints if c.name == target.name)  # type: ignore[union-attr]
        assert ckpt.status is CheckpointStatus.WRITING
        assert await wait_for(pilot, lambda: "writing" in screen_text(app))
        app.query_one(CheckpointTable).move_cursor(row=1)
        await pilot.pause()
        with target.open("ab") as fh:
            fh.write(data[len(data) // 3 :])
        assert await wait_for(pilot, lambda: "writing" not in screen_text(app), timeout=15)


@pytest.mark.parametrize(("fault", "kind"), [("oom", "oom"), ("nan", "nan")])
async def test_fault_runs_raise_their_alert(tmp_path: Path, fault: str, kind: str) -> None:
    args = [
        "--output_name", "faulty", "--max_train_epochs", "3", "--save_every_n_epochs", "1",
        "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "6",
        "--sim-fault", fault, "--sim-fault-step", "8",
    ]
    run_dir = make_finished_run(tmp_path, args)
    seen: list[Message] = []
    app = make_app(settings(), run_dir, gpu=False, environ={})
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: kind in alert_kinds(seen), timeout=15), alert_kinds(seen)
        await pilot.pause()
        # the run was over before it was opened: no toast, the Alerts pane (key a) has it
        assert not any(kind == n.title for n in app._notifications)
        await pilot.press("a")
        assert await wait_for(pilot, lambda: kind in screen_text(app), timeout=15)


async def test_hang_raises_a_stall_alert_that_rings(live_sims: LiveSims) -> None:
    run_dir, proc = live_sims.start("hang", [*LIVE_ARGS[:-6], "--sim-step-seconds", "0.1", "--sim-startup-seconds", "0.2",
                                            "--sim-batches-per-epoch", "4", "--sim-fault", "hang", "--sim-fault-step", "6"])
    seen: list[Message] = []
    skew = [0.0]  # the reader's clock: real time plus a jump, instead of waiting minutes

    def clock() -> float:
        return time.time() + skew[0]

    app: SdxlTuiApp = make_app(settings(alerts__stall_factor=4), run_dir, gpu=False, clock=clock, environ={})
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: max(steps(seen), default=0) >= 5, timeout=30), steps(seen)
        await pilot.pause(1.5)  # the simulator now hangs at step 6: no more writes
        assert "stall" not in alert_kinds(seen)
        skew[0] = 400.0  # more than MIN_STALL_SECONDS of silence
        assert await wait_for(pilot, lambda: "stall" in alert_kinds(seen), timeout=20), alert_kinds(seen)
        assert "\a" in "".join(app.terminal_writes)  # a new alert while watching: the bell
        assert app.snapshot is not None and app.snapshot.state.value == "stalled"
    assert proc.poll() is None


async def test_evaluate_dialog_shows_the_command_from_the_template(finished_run: Path) -> None:
    s = settings(eval__command=["echo", "{checkpoint}", "{output_dir}"])
    app = make_app(s, finished_run, gpu=False, clock=lambda: FROZEN, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.selected_checkpoint is not None)
        assert app.check_action("evaluate_checkpoint", ()) is True
        await pilot.press("e")
        assert await wait_for(pilot, lambda: "Evaluate checkpoint?" in screen_text(app), timeout=15)
        text = screen_text(app)
        selected = os.path.basename(app.selected_checkpoint or "")  # the newest: the table follows it
        assert "echo " in text and selected.startswith("luca_sdxl_v1") and selected in text
        assert "Queue until training ends" not in text  # no trainer: only "Evaluate"
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert "Evaluate checkpoint?" not in screen_text(app)
    assert not (finished_run / ".sdxl-tui" / "evals").exists()  # cancelled: nothing queued


async def test_images_screen_renders_the_checkpoint_samples(finished_run: Path, tmp_path: Path) -> None:
    from sdxl_tui.sim.png import png_bytes
    from sdxl_tui.tui.screens.images import ImageScreen

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "sample").mkdir(exist_ok=True)
    (run_dir / "sample" / "luca_sdxl_v1_e000002_00_20261119061000_42.png").write_bytes(png_bytes(64, 64, 3))
    app = make_app(settings(), run_dir, gpu=False, clock=lambda: FROZEN, environ={})
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and bool(app.snapshot.samples))
        # the table follows the newest checkpoint; the user moves up to epoch 2
        assert await wait_for(pilot, lambda: app.selected_checkpoint is not None)
        app.query_one("#checkpoints").focus()
        for _ in range(10):
            await pilot.press("up")
        assert await wait_for(pilot, lambda: app.selected_checkpoint is not None and app.selected_checkpoint.endswith("-000002.safetensors"))
        await pilot.press("i")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ImageScreen))
        assert await wait_for(pilot, lambda: "▀" in screen_text(app), timeout=15)  # half blocks
        assert "[1/1]" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ImageScreen)


async def test_a_continuous_stream_pauses_inotify_and_a_quiet_run_resumes_it(live_sims: LiveSims) -> None:
    import os
    import signal

    run_dir, proc = live_sims.start("stream", LIVE_ARGS)
    # idle re-reads every 5 s: only an inotify event explains a read within 3 s at the end
    app = make_app(settings(refresh__busy_interval=0.5, refresh__log_interval=5.0), run_dir, gpu=False, environ={})
    async with app.run_test(size=(120, 40)) as pilot:
        watcher = app.feeds.watcher
        assert watcher is not None
        assert await wait_for(pilot, lambda: app.watch_mode == "inotify", timeout=20)
        # the simulator writes every 0.12 s: events buy nothing, the feed polls every busy_gap
        assert await wait_for(pilot, lambda: watcher.paused, timeout=20)
        seen = app.feeds.refreshes
        await pilot.pause(2.0)
        assert 2 <= app.feeds.refreshes - seen <= 6  # about one read per 0.5 s, not one per event
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # quiet again: watched again, so an isolated change is read at once
        assert await wait_for(pilot, lambda: not watcher.paused, timeout=20)
        assert watcher.mode == "inotify"
        before = app.feeds.refreshes
        with (run_dir / "training.log").open("a") as fh:
            fh.write("after the stream\n")
        assert await wait_for(pilot, lambda: app.feeds.refreshes > before, timeout=3)


async def test_a_run_of_a_hundred_and_more_epochs_shows_its_epoch_label(tmp_path: Path) -> None:
    args = ["--output_name", "long", "--max_train_epochs", "150", "--save_every_n_epochs", "50",
            "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "1"]
    run_dir = make_finished_run(tmp_path, args)
    app = make_app(settings(), run_dir, gpu=False, environ={})
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: "epoch 150/150" in screen_text(app)), screen_text(app)
