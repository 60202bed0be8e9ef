"""Soak: the dashboard follows a whole simulated run at a high time scale (thousands of steps,
dozens of checkpoints) with no reader error, the header's elapsed time taken from the run's
own timestamps (never tqdm's 0s), and memory that stops growing once the bounded buffers
(log lines, series budget, GPU history) are full: the Python heap (tracemalloc, exact) is
flat over the last quarter of the run, and the resident set stays within a loose bound (an
in-process RSS also moves with the allocator's arenas, which tracemalloc showed to be the
whole of the few MiB that issue 15 saw; live objects did not grow)."""

from __future__ import annotations

import gc
import re
import tracemalloc

import psutil
import pytest
from screen_text import screen_text
from tui_helpers import LiveSims, settings, wait_for

from sdxl_tui.model import RunState
from sdxl_tui.tui.app import make_app
from sdxl_tui.tui.messages import ReaderFailed

pytestmark = pytest.mark.slow

EPOCHS, BATCHES = 75, 80  # 6,000 steps (past the 4,000-point series budget), a checkpoint every 2 epochs
ARGS = [
    "--output_name", "soak", "--max_train_epochs", str(EPOCHS), "--save_every_n_epochs", "2",
    "--sim-step-seconds", "0.004", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", str(BATCHES),
    "--sim-seed", "3",
]


async def test_a_whole_fast_run_with_bounded_memory(live_sims: LiveSims) -> None:
    run_dir, proc = live_sims.start("soak", ARGS)
    app = make_app(settings(refresh__log_interval=0.1), run_dir, gpu=False, environ={})
    me = psutil.Process()
    samples: list[tuple[int, int, int]] = []  # (step, rss, traced Python heap)
    failures: list[str] = []
    tracemalloc.start(1)
    async with app.run_test(size=(120, 40), message_hook=lambda m: isinstance(m, ReaderFailed) and failures.append(
            m.error)) as pilot:

        def sample() -> bool:
            snap = app.snapshot
            if snap is not None and snap.progress.step:
                gc.collect()
                samples.append((snap.progress.step, me.memory_info().rss, tracemalloc.get_traced_memory()[0]))
            return snap is not None and snap.state is RunState.FINISHED

        assert await wait_for(pilot, sample, timeout=300, step=0.5), (app.snapshot and app.snapshot.state)
        await pilot.pause(0.5)
        header = screen_text(app).splitlines()[0]
        assert re.search(r"elapsed (\d+m\d\ds|\d+s)", header), header
        assert not re.search(r"elapsed 0s\b", header), header  # the run took seconds, not tqdm's 0s
        assert app.snapshot is not None and len(app.snapshot.checkpoints) == (EPOCHS + 1) // 2
    assert proc.wait(timeout=60) == 0
    assert not failures, failures
    tracemalloc.stop()
    total = EPOCHS * BATCHES
    early = [(rss, heap) for step, rss, heap in samples if total // 2 <= step < total * 3 // 4]
    late = [(rss, heap) for step, rss, heap in samples if step >= total * 3 // 4]
    assert early and late, samples
    # the floor of each window: a refresh holds the old and the new snapshot for a moment
    heap_growth = (min(h for _, h in late) - min(h for _, h in early)) / 2**20
    rss_growth = (min(r for r, _ in late) - min(r for r, _ in early)) / 2**20
    print(f"soak: {len(samples)} samples; last quarter: heap +{heap_growth:.2f} MiB, RSS +{rss_growth:.2f} MiB")
    assert heap_growth < 3, f"the Python heap grew {heap_growth:.2f} MiB over the last quarter"
    assert rss_growth < 24, f"RSS grew {rss_growth:.1f} MiB over the last quarter"
