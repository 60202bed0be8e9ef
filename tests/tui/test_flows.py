"""Pilot tests of the action flows through the dashboard, with real processes and files.

Comparison grid (``g``) with the fake evaluation script, kill (``k``) of a live simulator
tree, stop-after-checkpoint (``x``) armed and cancelled, and start (``s``) from a launch
config that drives the simulator. Every process is ended by PID in the fixtures.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from screen_text import screen_text
from tui_helpers import FROZEN, LiveSims, settings, wait_for

from sdxl_tui.tui.app import make_app
from sdxl_tui.tui.screens.compare import CompareScreen
from sdxl_tui.tui.screens.confirm import ConfirmScreen
from sdxl_tui.tui.screens.images import ImageScreen

pytestmark = pytest.mark.slow

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
FAKE_EVAL = str(HELPERS / "fake_eval.py")
PY = sys.executable


def write_lora(path: Path, metadata: dict[str, str]) -> Path:
    """A small valid safetensors file (kohya-style LoRA names)."""
    size = 16
    header = {"__metadata__": metadata, "lora_unet_x.lora_up.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, size]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(size))
    return path


def epoch_run(root: Path, epochs: tuple[int, ...]) -> Path:
    run = root / "sdxl_v1"
    run.mkdir()
    for e in epochs:
        write_lora(run / f"luca_sdxl_v1-{e:06d}.safetensors", {"ss_epoch": str(e)})
    return run


def fake_eval_settings(**more: object) -> object:
    template = [PY, FAKE_EVAL, "--checkpoint", "{checkpoint}", "--base-model", "{base_model}",
                "--output-dir", "{output_dir}", "--num-samples", "{num_samples}", "--device", "{device}",
                "--resolution", "{resolution}", "--epoch", "{epoch}"]
    return settings(eval__command=template, eval__base_model="/b", eval__num_samples=2, eval__resolution=32, **more)


@pytest.fixture(autouse=True)
def private_gpu_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation GPU locks are per user: a private runtime dir keeps tests independent."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))


# ----------------------------------------------------------------------- comparison grid
async def test_compare_key_builds_the_grid_and_shows_it(tmp_path: Path, procs: object) -> None:
    run = epoch_run(tmp_path, (2, 4, 6, 8, 10))
    procs.watch_dir(run)  # type: ignore[attr-defined]
    app = make_app(fake_eval_settings(), run, gpu=False, clock=lambda: FROZEN, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and len(app.snapshot.checkpoints) == 5)
        assert app.check_action("compare_checkpoints", ()) is True
        await pilot.press("g")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.query_one("Input").value == "6-10"  # type: ignore[attr-defined]
        assert "epochs 2, 4, 6, 8, 10" in screen_text(app)
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ImageScreen), timeout=60), [n.message for n in app._notifications]
        grid = run / "compare_epochs_6-10.png"
        assert grid.is_file()
        assert app.screen.images == [str(grid)]  # type: ignore[attr-defined]
        assert await wait_for(pilot, lambda: "▀" in screen_text(app), timeout=15)  # the grid, in half blocks
        assert "compare epochs_6-10" in screen_text(app)
        messages = [n.message for n in app._notifications]
        assert any("3 evaluations queued" in m for m in messages), messages
        assert any("grid saved" in m for m in messages), messages
    # rows are the selected checkpoints: three evaluation folders, none for epochs 2 and 4
    assert sorted(p.name for p in run.glob("eval_epoch*")) == ["eval_epoch10", "eval_epoch6", "eval_epoch8"]


async def test_compare_typed_list_and_a_bad_selection(tmp_path: Path, procs: object) -> None:
    run = epoch_run(tmp_path, (2, 4, 6))
    procs.watch_dir(run)  # type: ignore[attr-defined]
    app = make_app(fake_eval_settings(), run, gpu=False, clock=lambda: FROZEN, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and len(app.snapshot.checkpoints) == 3)
        await pilot.press("g")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.query_one("Input").value == "2,4,6"  # type: ignore[attr-defined]  # no 6-10 pair
        inp = app.screen.query_one("Input")  # type: ignore[attr-defined]
        inp.value = "40-50"
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: any("no epoch checkpoints between 40 and 50" in n.message for n in app._notifications))
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("g")
        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        app.screen.query_one("Input").value = "2,6"  # type: ignore[attr-defined]
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.screen, ImageScreen), timeout=60)
        assert (run / "compare_epochs_2-6.png").is_file()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ImageScreen)


# ---------------------------------------------------------------------------- kill, stop
LONG_EPOCHS = [
    "--output_name", "long", "--max_train_epochs", "50", "--save_every_n_epochs", "1",
    "--sim-step-seconds", "0.1", "--sim-startup-seconds", "0.2", "--sim-batches-per-epoch", "2000",
]


async def _press_button(pilot: object, app: object, button_id: str) -> None:
    from textual.widgets import Button

    assert await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen)  # type: ignore[attr-defined]
                          and bool(app.screen.query(f"#{button_id}")), timeout=20)  # type: ignore[attr-defined]
    app.screen.query_one(f"#{button_id}", Button).press()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def test_kill_confirm_ends_the_live_simulator_tree(live_sims: LiveSims, procs: object) -> None:
    import psutil

    run_dir, proc = live_sims.start("victim", LONG_EPOCHS)
    procs.watch_dir(run_dir)  # type: ignore[attr-defined]
    app = make_app(settings(kill__sigint_timeout=3.0, kill__sigterm_timeout=3.0), run_dir, gpu=False, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.trainer_alive, timeout=30)
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        await pilot.press("k")
        assert await wait_for(pilot, lambda: str(proc.pid) in screen_text(app), timeout=15)
        await _press_button(pilot, app, "kill")
        assert await wait_for(pilot, lambda: any(n.message.startswith("killed:") for n in app._notifications), timeout=20), \
            [n.message for n in app._notifications]
        assert await wait_for(pilot, lambda: not app.trainer_alive, timeout=15)  # the dashboard saw it end
        assert app.check_action("kill_run", ()) is None
    assert proc.wait(timeout=5) is not None
    assert not [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


async def test_stop_after_checkpoint_arms_then_cancels_the_watcher(live_sims: LiveSims, procs: object) -> None:
    from sdxl_tui.control.kill import watcher_status

    run_dir, proc = live_sims.start("stopper", LONG_EPOCHS)
    procs.watch_dir(run_dir)  # type: ignore[attr-defined]
    app = make_app(settings(), run_dir, gpu=False, environ={})
    async with app.run_test(size=(140, 45)) as pilot:
        assert await wait_for(pilot, lambda: app.trainer_alive, timeout=30)
        assert watcher_status(run_dir) is None
        await pilot.press("x")
        assert await wait_for(pilot, lambda: "Stop after the next checkpoint?" in screen_text(app), timeout=15)
        await _press_button(pilot, app, "arm")
        assert await wait_for(pilot, lambda: bool((watcher_status(run_dir) or {}).get("alive")), timeout=15)
        assert await wait_for(pilot, lambda: app.stop_armed)
        await pilot.press("x")  # again: offers to cancel
        assert await wait_for(pilot, lambda: "is armed" in screen_text(app), timeout=15)
        await _press_button(pilot, app, "disarm")
        assert await wait_for(pilot, lambda: not (watcher_status(run_dir) or {}).get("alive"), timeout=15)
        assert await wait_for(pilot, lambda: not app.stop_armed)
    assert proc.poll() is None, "cancelling the stop leaves the training running"


# -------------------------------------------------------------------------------- start
async def test_start_shows_preflight_and_argv_then_starts_the_simulator(tmp_path: Path, procs: object) -> None:
    import psutil

    from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
    from sdxl_tui.formats.statedir import read_run_record

    run_dir = tmp_path / "fresh"
    run_dir.mkdir()
    procs.watch_dir(run_dir)  # type: ignore[attr-defined]
    # the simulator's own pacing options go in the prefix: the preflight check knows only sd-scripts options
    cfg = LaunchConfig(
        prefix=(PY, "-m", "sdxl_tui", "simulate", "--sim-batches-per-epoch", "500", "--sim-step-seconds", "0.1",
                "--sim-startup-seconds", "0.2"),
        script="", output_dir=str(run_dir),
        args={"output_name": "started", "max_train_epochs": 20, "save_every_n_epochs": 1, "network_dim": 4},
    )
    write_launch_config(cfg, run_dir / "sdxl-tui.toml")
    app = make_app(settings(), run_dir, gpu=False, environ={})
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            assert await wait_for(pilot, lambda: app.snapshot is not None and app.check_action("start_run", ()) is True)
            await pilot.press("s")
            assert await wait_for(pilot, lambda: "Start training?" in screen_text(app), timeout=20)
            body = app.screen.body  # type: ignore[attr-defined]
            assert "-m sdxl_tui simulate --sim-batches-per-epoch 500" in body and f"--output_dir {run_dir}" in body
            assert "plan:\n  script: sdxl_train_network.py" in body  # the check's fact lines
            assert "preflight check:" in body and "simulated-trainer" in body
            assert "simulate" in screen_text(app)
            await _press_button(pilot, app, "start")
            assert await wait_for(pilot, lambda: app.trainer_alive, timeout=30), [n.message for n in app._notifications]
            assert app.check_action("start_run", ()) is None and app.check_action("kill_run", ()) is True
            record = read_run_record(run_dir)
            assert record is not None and "simulate" in " ".join(record.argv)
    finally:
        record = read_run_record(run_dir)
        if record is not None and record.pid is not None and record.create_time is not None:
            try:
                p = psutil.Process(record.pid)
                if abs(p.create_time() - record.create_time) < 0.05:
                    p.kill()
            except psutil.Error:
                pass
