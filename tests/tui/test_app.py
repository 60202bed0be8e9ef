"""Pilot tests of the dashboard against scripted snapshots (fast: no files, no processes).

Each test drives the real App through ``run_test`` and asserts on what was posted
(``message_hook``), on widget state and on the screen text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fakes.fake_nvml import FakeDevice, FakeNVML
from screen_text import screen_text
from stub_reader import StubReader, checkpoint, oom_alert, snapshot
from textual.message import Message
from tui_helpers import settings, wait_for

from sdxl_tui.model import CheckpointStatus, LogLine, RunState
from sdxl_tui.sources.gpu import GpuMonitor
from sdxl_tui.tui.app import SdxlTuiApp, make_app
from sdxl_tui.tui.messages import AlertsRaised, LogLinesAdded, SnapshotUpdated
from sdxl_tui.tui.screens.chart import ChartScreen
from sdxl_tui.tui.screens.confirm import ConfirmScreen
from sdxl_tui.tui.screens.help import HelpScreen
from sdxl_tui.tui.widgets.checkpoints import CheckpointTable
from sdxl_tui.tui.widgets.log_view import LogView


def app_for(reader: StubReader, **overrides: object) -> SdxlTuiApp:
    # The GPU panel is fed as in production: its own thread samples a GpuMonitor (fake NVML:
    # the stub trainer, pid 4242, holds 17 GiB on an RTX 4090).
    nvml = FakeNVML([FakeDevice(name="NVIDIA GeForce RTX 4090", processes={4242: 17 * 1024**3})])
    return make_app(settings(**overrides), "/runs/luca/sdxl_v1", reader=reader, gpu=GpuMonitor(nvml=nvml),
                    watch=False, environ={})


def binding_state(app: SdxlTuiApp, action: str) -> bool | None:
    return app.check_action(action, ())


async def test_first_snapshot_fills_every_pane() -> None:
    seen: list[Message] = []
    app = app_for(StubReader([snapshot()]))
    async with app.run_test(size=(160, 48), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.pause()
        text = screen_text(app)
        assert "luca_sdxl_v1" in text and "TRAINING" in text
        assert "done ~" in text  # the finish clock
        assert "600/1200" in text
        assert "-000004  complete" in text  # a checkpoint row (the run name is in the header)
        assert "RTX 4090" in text and "trainer 17.0" in text
        assert "line 39" in text  # the log tail
        assert any(isinstance(m, SnapshotUpdated) for m in seen)
        # the log batch rides with the snapshot it was read with (one frame, not two)
        assert any(isinstance(m, SnapshotUpdated) and m.lines for m in seen) or any(isinstance(m, LogLinesAdded) for m in seen)


async def test_actions_grey_out_with_the_trainer_state() -> None:
    reader = StubReader([snapshot(alive=True)])
    app = app_for(reader)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert binding_state(app, "kill_run") is True
        assert binding_state(app, "stop_after_checkpoint") is True
        assert binding_state(app, "start_run") is None  # greyed: a trainer is alive
        assert binding_state(app, "evaluate_checkpoint") is True  # first row selected, complete
        reader.push(snapshot(alive=False, state=RunState.FINISHED, step=1200,
                             checkpoints=[checkpoint("/runs/luca/sdxl_v1", 2, status=CheckpointStatus.WRITING)]))
        assert await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.state is RunState.FINISHED)
        await pilot.pause()
        assert binding_state(app, "kill_run") is None
        assert binding_state(app, "start_run") is True
        assert binding_state(app, "evaluate_checkpoint") is None  # only a "writing" checkpoint
        assert binding_state(app, "show_images") is None
        # A greyed key is not silently ignored: it says why.
        await pilot.press("k")
        await pilot.pause()
        assert any("no live trainer" in n.message for n in app._notifications)


async def test_readonly_removes_destructive_actions() -> None:
    app = app_for(StubReader([snapshot(alive=True)]), ui__readonly=True)
    async with app.run_test(size=(120, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        for action in ("start_run", "kill_run", "evaluate_checkpoint", "stop_after_checkpoint"):
            assert binding_state(app, action) is False
        assert binding_state(app, "toggle_chart") is True
        assert await wait_for(pilot, lambda: "Chart" in screen_text(app).splitlines()[-1])
        footer = screen_text(app).splitlines()[-1]
        assert "Kill" not in footer and "Start" not in footer and "Chart" in footer
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_keymap_rebinds_and_help_shows_the_new_key() -> None:
    app = app_for(StubReader([snapshot()]), ui__keymap={"toggle-chart": "v"})
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ChartScreen)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, ChartScreen)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = {row[2]: row[0] for row in app.screen.rows}
        assert rows["toggle-chart"] == "v"
        assert rows["kill-run"] == "k"
        assert "toggle-chart" in screen_text(app)


async def test_chart_controls() -> None:
    app = app_for(StubReader([snapshot(step=900)]))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ChartScreen)
        assert "smoothing 0.600" in screen_text(app)
        await pilot.press("right_square_bracket", "l", "w", "o")
        await pilot.pause()
        text = screen_text(app)
        assert "smoothing 0.650" in text and "log-Y on" in text and "wall clock" in text and "outliers shown" in text
        assert "lr/unet" in text  # the learning-rate curve
        await pilot.press("escape")
        await pilot.pause()
        assert app.chart_options.smoothing == 0.65 and app.chart_options.log_y


async def test_alert_notifies_rings_and_runs_the_hook_once(tmp_path: Path) -> None:
    out = tmp_path / "hook.jsonl"
    hook = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"]
    reader = StubReader([snapshot()])
    seen: list[Message] = []
    app = make_app(settings(alerts__hook=hook), "/runs/luca/sdxl_v1", reader=reader, gpu=False, watch=False, environ={"TMUX": "/tmp/tmux-0/default,1,0"})
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        reader.push(snapshot(state=RunState.FAILED, alive=False, alerts=[oom_alert()]))
        assert await wait_for(pilot, lambda: any(isinstance(m, AlertsRaised) for m in seen))
        reader.push(snapshot(state=RunState.FAILED, alive=False, alerts=[oom_alert()], taken_at=1_790_000_100.0))
        assert await wait_for(pilot, lambda: out.exists() and out.read_text().strip() != "", timeout=20)
        await pilot.pause(0.5)
        raised = [m for m in seen if isinstance(m, AlertsRaised)]
        assert len(raised) == 1 and raised[0].alerts[0].kind == "oom" and not raised[0].initial
        written = "".join(app.terminal_writes)
        assert "\a" in written
        assert "\x1bPtmux;\x1b\x1b]9;" in written  # OSC 9 wrapped for tmux passthrough
        assert "777;notify;" in written
        assert any("CUDA out of memory" in n.message for n in app._notifications)
        lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0]["kind"] == "oom" and lines[0]["run_dir"] == "/runs/luca/sdxl_v1"
        assert "Alerts (1)" in screen_text(app)


async def test_alerts_present_at_open_are_shown_but_not_rung() -> None:
    """Issue 15: a toast only for a transition seen live; what was true at open is counted in
    the Alerts tab (key a), never rung and never a toast over the log."""
    app = app_for(StubReader([snapshot(alerts=[oom_alert()])]))
    seen: list[Message] = []
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: any(isinstance(m, AlertsRaised) for m in seen))
        await pilot.pause()
        assert app.terminal_writes == []
        assert not any("CUDA out of memory" in n.message for n in app._notifications)
        assert "Alerts (1)" in screen_text(app)
        await pilot.press("a")
        assert await wait_for(pilot, lambda: "CUDA out of memory" in screen_text(app))


def _lines(start: int, n: int, text: str = "line {}") -> tuple[LogLine, ...]:
    return tuple(LogLine(i, text.format(i)) for i in range(start, start + n))


async def test_log_follows_pauses_with_marker_and_collapses_tqdm() -> None:
    app = app_for(StubReader([snapshot(lines=0)]))
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        view = app.query_one(LogView)
        view.add_lines(_lines(0, 200))
        for k in range(1, 50):  # a tqdm bar redrawn 49 times is one line
            view.add_lines((LogLine(200, f"steps: {k}%|", "progress"),))
        await pilot.pause()
        assert len(view.lines) == 201 and view.lines[-1].text == "steps: 49%|"
        assert view.following and view.scroll_y == view.max_scroll_y
        view.focus()
        await pilot.press("pageup")
        await pilot.pause()
        assert not view.following
        view.add_lines(_lines(201, 7))
        await pilot.pause()
        assert view.unseen == 7
        assert "7 new lines" in screen_text(app)
        assert view.scroll_y < view.max_scroll_y  # stayed where the user was reading
        await pilot.press("end")
        await pilot.pause()
        assert view.following and view.unseen == 0
        assert "new lines" not in screen_text(app)


async def test_log_search_next_previous() -> None:
    app = app_for(StubReader([snapshot(lines=0)]))
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        view = app.query_one(LogView)
        view.add_lines(tuple(LogLine(i, f"{'saving checkpoint' if i in (10, 50, 90) else 'step'} {i}") for i in range(120)))
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"saving")
        await pilot.pause()
        assert view.match_index == 90  # the newest match first
        await pilot.press("enter")
        await pilot.pause()
        assert view.match_index == 50  # enter: the next older one
        view.focus()
        await pilot.press("n")
        assert view.match_index == 10
        await pilot.press("n")
        assert view.match_index == 90  # wraps around
        await pilot.press("N")
        assert view.match_index == 10
        assert "saving" in screen_text(app)


async def test_checkpoint_rows_diff_by_key_and_show_writing() -> None:
    run = "/runs/luca/sdxl_v1"
    reader = StubReader([snapshot(checkpoints=[checkpoint(run, 2)])])
    app = app_for(reader)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        table = app.query_one(CheckpointTable)
        assert table.row_count == 1
        reader.push(snapshot(checkpoints=[checkpoint(run, 2), checkpoint(run, 4, status=CheckpointStatus.WRITING, age=1)]))
        assert await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.pause()
        assert "writing" in screen_text(app)
        reader.push(snapshot(checkpoints=[checkpoint(run, 2), checkpoint(run, 4, age=2)]))
        assert await wait_for(pilot, lambda: "writing" not in screen_text(app))
        assert table.row_count == 2


async def test_kill_with_no_process_found_shows_a_dialog_not_a_signal() -> None:
    # The snapshot claims pid 4242 lives, but control/kill finds no trainer for the
    # directory: the dialog says so and offers nothing to confirm.
    app = app_for(StubReader([snapshot(alive=True)]))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("k")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen) or bool(app._notifications))
        if isinstance(app.screen, ConfirmScreen):
            assert await wait_for(pilot, lambda: "nothing to kill" in screen_text(app).lower())
            await pilot.press("escape")
            await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_quit_is_immediate_and_stops_the_feeds() -> None:
    reader = StubReader([snapshot()])
    app = app_for(reader)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("q")
        await pilot.pause()
    assert app.feeds.stopping.is_set()
    assert app.return_value == 0


async def test_command_palette_offers_run_commands() -> None:
    app = app_for(StubReader([snapshot(alive=True)]))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "run: kill" in titles and "checkpoint: evaluate" in titles
        assert "run: start (unavailable)" in titles


async def test_inotify_events_wake_the_reader(tmp_path: Path) -> None:
    reader = StubReader([snapshot(run_dir=str(tmp_path))])
    app = make_app(settings(refresh__log_interval=30.0), tmp_path, reader=reader, gpu=False, environ={})
    async with app.run_test(size=(160, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.watch_mode == "inotify", timeout=10)
        before = reader.calls
        (tmp_path / "training.log").write_text("steps: 1%\n")
        # with a 30 s idle interval only the event can explain a refresh this soon
        assert await wait_for(pilot, lambda: reader.calls > before, timeout=5)
        assert "inotify" in screen_text(app)


async def test_force_polling_still_refreshes(tmp_path: Path) -> None:
    reader = StubReader([snapshot(run_dir=str(tmp_path))])
    app = make_app(settings(refresh__force_polling=True, refresh__log_interval=0.1), tmp_path, reader=reader, gpu=False,
                   environ={})
    async with app.run_test(size=(100, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.watch_mode.startswith("polling"), timeout=10)
        calls = reader.calls
        assert await wait_for(pilot, lambda: reader.calls >= calls + 5, timeout=10)


async def test_theme_from_settings_and_unknown_theme_is_reported() -> None:
    app = app_for(StubReader([snapshot()]), ui__theme="nord")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "nord"
    bad = app_for(StubReader([snapshot()]), ui__theme="no-such-theme")
    async with bad.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert bad.theme == "textual-dark"
        assert any("no-such-theme" in n.message for n in bad._notifications)


async def test_busy_interval_setting_spaces_streamed_refreshes() -> None:
    app = app_for(StubReader([snapshot()]), refresh__busy_interval=0.7)
    assert app.feeds.busy_gap == 0.7
    assert app_for(StubReader([snapshot()])).feeds.busy_gap == 2.0  # the default is unchanged


async def test_hook_timeout_setting_stops_a_hung_hook() -> None:
    from sdxl_tui.tui.messages import HookFinished

    hook = [sys.executable, "-c", "import time; time.sleep(30)"]
    seen: list[Message] = []
    reader = StubReader([snapshot()])
    app = app_for(reader, alerts__hook=hook, alerts__hook_timeout=0.5)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        reader.push(snapshot(state=RunState.FAILED, alive=False, alerts=[oom_alert()]))  # a new alert: the hook runs
        assert await wait_for(pilot, lambda: any(isinstance(m, HookFinished) for m in seen), timeout=10)
        done = next(m for m in seen if isinstance(m, HookFinished))
        assert not done.ok and "timed out after 0.5s" in done.detail


async def test_compare_key_greys_out_below_two_checkpoints_and_is_in_help_and_palette() -> None:
    run = "/runs/luca/sdxl_v1"
    reader = StubReader([snapshot(checkpoints=[checkpoint(run, 2), checkpoint(run, 4, status=CheckpointStatus.WRITING)])])
    app = app_for(reader)
    async with app.run_test(size=(160, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert binding_state(app, "compare_checkpoints") is None  # one complete checkpoint
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "checkpoint: compare (unavailable)" in titles
        await pilot.press("g")
        await pilot.pause()
        assert any("at least 2 complete checkpoints" in n.message for n in app._notifications)
        reader.push(snapshot(checkpoints=[checkpoint(run, 2), checkpoint(run, 4)]))
        assert await wait_for(pilot, lambda: binding_state(app, "compare_checkpoints") is True)
        assert "checkpoint: compare" in [c.title for c in app.get_system_commands(app.screen)]
        assert await wait_for(pilot, lambda: "g Grid" in screen_text(app).splitlines()[-1])
        await pilot.press("question_mark")
        await pilot.pause()
        rows = {row[2]: row for row in app.screen.rows}  # type: ignore[attr-defined]
        assert rows["compare-checkpoints"][0] == "g" and rows["compare-checkpoints"][3] == "ok"


async def test_readonly_removes_the_compare_key() -> None:
    app = app_for(StubReader([snapshot()]), ui__readonly=True)
    async with app.run_test(size=(160, 30)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None)
        assert binding_state(app, "compare_checkpoints") is False
        assert "checkpoint: compare" not in " ".join(c.title for c in app.get_system_commands(app.screen))
        assert "compare-checkpoints" not in [row[2] for row in app.help_rows()]
        await pilot.press("g")
        await pilot.pause()
        assert not app.screen.is_modal


async def test_gpu_panel_names_each_ranks_vram() -> None:
    """A multi-process launch: the panel attributes VRAM per rank (NVML's per-PID usage, fake
    NVML), one GPU per rank; a rank's child counts with its rank; the launcher's is not the run's."""
    from dataclasses import replace

    from sdxl_tui.model import ProcessTree, ProcInfo

    gib = 1024**3
    cmd = ("python", "-u", "sdxl_train_network.py", "--output_dir", "/x")
    tree = ProcessTree(
        ProcInfo(4242, 1.0, cmd, "luca", ppid=4000, rank=0, local_rank=0, world_size=2),
        launchers=(ProcInfo(4000, 1.0, ("accelerate", "launch", "--multi_gpu"), "luca", role="launcher"),),
        ranks=(ProcInfo(4243, 1.0, cmd, "luca", ppid=4000, rank=1, local_rank=1, world_size=2),),
        children=(ProcInfo(4300, 1.0, ("python", "compile_worker"), "luca", role="child", ppid=4243),),
    )
    nvml = FakeNVML([FakeDevice(name="NVIDIA A100-SXM4-80GB", processes={4242: 21 * gib, 4000: 1 * gib}),
                     FakeDevice(name="NVIDIA A100-SXM4-80GB", processes={4243: 18 * gib, 4300: 2 * gib})])
    app = make_app(settings(), "/runs/luca/sdxl_v1", reader=StubReader([replace(snapshot(), process=tree)]),
                   gpu=GpuMonitor(nvml=nvml), watch=False, environ={})
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.gpu_status is not None and len(app.gpu_status.gpus) == 2
                              and app.vram_owners != ())
        await pilot.pause()
        text = screen_text(app)
        assert "rank 0 21.0" in text and "rank 1 20.0" in text, text
        assert "trainer" not in text.split("GPU0", 1)[1].split("Log", 1)[0]
