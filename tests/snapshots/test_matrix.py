"""The dashboard at the sizes users have (80x24 in a tmux split, 120x40, 160x48, 200x60) in
every state (waiting, loading, training, sampling, stalled, failed, stopped, finished) and
with no GPU, one and eight GPUs, 0 and 20 checkpoints (tests/snapshots/states.py).

Each frame is stored as text (``__snapshots__/test_matrix.ambr``; review the diff, then
``pytest tests/snapshots --snapshot-update``) and checked for what issue 15 asked: the tqdm
line readable up to ``avr_loss``, status words and the eval column whole, the newest
checkpoint row visible, "elapsed" with a value, nothing wider than the terminal.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from screen_text import screen_text
from states import NAME, RUN_DIR, STATES, VARIANTS
from stub_reader import StubReader

from sdxl_tui.config import Settings
from sdxl_tui.model import RunSnapshot
from sdxl_tui.tui.app import SdxlTuiApp, make_app

SIZES = [(80, 24), (120, 40), (160, 48), (200, 60)]


def _app(snap: RunSnapshot) -> SdxlTuiApp:
    settings = Settings().replace(refresh__gpu_interval=1e9, refresh__log_interval=0.05)
    return make_app(settings, RUN_DIR, reader=StubReader([snap]), gpu=False, watch=False, environ={},
                    actions_enabled=False)


async def frame(snap: RunSnapshot, size: tuple[int, int]) -> str:
    app = _app(snap)
    async with app.run_test(size=size) as pilot:
        from sdxl_tui.tui.widgets.checkpoints import CheckpointTable
        from sdxl_tui.tui.widgets.log_view import LogView

        def ready() -> bool:  # every pane has what the snapshot carries (a loaded box is slow)
            return (app.snapshot is not None and len(app.query_one(LogView).lines) == len(snap.log_lines)
                    and app.query_one(CheckpointTable).row_count == len(snap.checkpoints))

        for _ in range(500):
            if ready():
                break
            await pilot.pause(0.02)
        await pilot.pause(0.2)
        app.clear_notifications()
        app.feeds.stop()
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()
        return screen_text(app)


def check_frame(text: str, snap: RunSnapshot, size: tuple[int, int]) -> None:
    width, height = size
    rows = text.split("\n")
    assert len(rows) == height
    assert all(len(r) <= width for r in rows), max(rows, key=len)
    header = rows[0]
    assert snap.state.value.upper() in header
    assert re.search(r"elapsed (\d+[dhms]|\d+[hm]\d\d[ms]|--)", header), header
    if snap.progress.step:
        assert re.search(r"elapsed \d", header), header  # a value, from the run's timestamps
    ckpts = snap.checkpoints
    if ckpts:
        assert " eval" in text  # the eval column is not clipped
        assert "complete" in text and "complet " not in text
        newest = ckpts[-1].name.removesuffix(".safetensors").removeprefix(NAME)
        assert re.search(rf"{re.escape(newest)}\s+complete", text), f"newest checkpoint row hidden:\n{text}"
        assert re.search(r"\d\d?[hm]\d\d[ms]", text)  # ages like 3m01s / 1h05m
    tqdm = [line.text for line in snap.log_lines if "avr_loss=" in line.text]
    if tqdm:
        assert "avr_loss=" in text, f"the tqdm line is cut before avr_loss:\n{text}"
    assert "Traceback" not in text or any("Traceback" in line.text for line in snap.log_lines)


CASES = [(name, size) for name in STATES for size in SIZES]
CASES += [(name, size) for name in VARIANTS for size in ((80, 24), (160, 48))]


@pytest.mark.parametrize(("name", "size"), CASES, ids=[f"{n}-{w}x{h}" for n, (w, h) in CASES])
async def test_matrix(name: str, size: tuple[int, int], snapshot: Any) -> None:
    snap = (STATES.get(name) or VARIANTS[name])()
    text = await frame(snap, size)
    check_frame(text, snap, size)
    assert text == snapshot


async def test_eight_gpus_are_all_listed() -> None:
    snap = VARIANTS["eight-gpus"]()
    for size in ((80, 24), (160, 48)):
        text = await frame(snap, size)
        assert all(f"GPU{i}" in text for i in range(8)), text


async def test_twenty_checkpoints_show_the_final_one_at_80x24() -> None:
    snap = STATES["finished"]()
    assert len(snap.checkpoints) == 20
    text = await frame(snap, (80, 24))
    assert re.search(rf"{NAME}\s+complete\s+20\s", text), text
