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
