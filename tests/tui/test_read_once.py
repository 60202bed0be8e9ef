"""The dashboard's first frame reads the run once: the event files are decoded in a prefetch
child (``EventReader.prefetch``) and the dashboard's own reader adopts that state, the log and
the checkpoint headers are read by another child that leaves their state in the cache
(``RunReader.prefetch_first_read``), instead of reading the run a second time; the next start
reads no event byte at all (the cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from screen_text import screen_text
from tui_helpers import settings, wait_for


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_first_frame_adopts_the_prefetch_and_reads_each_event_byte_once(tmp_path: Path) -> None:
    from sdxl_tui.commands.tui import build_app
    from sdxl_tui.sim.bulk import generate_big_run
    from sdxl_tui.sources.forked import can_fork
    from sdxl_tui.sources.rundir import RunReader

    run = tmp_path / "big"
    generate_big_run(run, log_bytes=400_000, scalars=50_000, checkpoints=3)  # > 2 MB of events
    event_bytes = sum(p.stat().st_size for p in run.rglob("events.out.tfevents.*"))
    assert event_bytes > 2 << 20
    forks = can_fork()  # False on one CPU (then the parent reads, still once)
    app = build_app(settings(), str(run), no_gpu=True)
    reader = app.feeds.reader_factory()
    assert isinstance(reader, RunReader)
    events = reader._events
    # the first read is done before Textual runs: the event files by one forked child (state
    # handed over), the log and the checkpoint headers by another (state left in the cache)
    assert events is not None and events._fork is None and reader._side is None
    assert app.feeds.first_snapshot is not None and events.bytes_read_total == event_bytes
    assert reader._scanner.header_reads == (0 if forks else 3)
    async with app.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: app.snapshot is not None and bool(app.snapshot.series), timeout=60)
        await pilot.pause()
        assert "big_lora" in screen_text(app)
        snap = app.snapshot
        assert snap is not None
        assert sum(s.count for s in snap.series.values()) >= 50_000
        # the reader the dashboard refreshes is the one that prefetched, and every event byte
        # was read exactly once between the child and this process
        assert app.feeds.reader_factory() is reader and reader._events is events
        assert events.bytes_read_total == event_bytes and not events.from_cache
    reader.close()
    # the next start remembers: the event state comes from the cache, no event byte is read
    again = build_app(settings(), str(run), no_gpu=True)
    second = again.feeds.reader_factory()
    assert isinstance(second, RunReader)
    async with again.run_test(size=(160, 48)) as pilot:
        assert await wait_for(pilot, lambda: again.snapshot is not None and bool(again.snapshot.series), timeout=60)
        assert second._events is not None and second._events.from_cache
        assert second._events.bytes_read_total == 0
        assert again.snapshot is not None and {t: s.count for t, s in again.snapshot.series.items()} == {
            t: s.count for t, s in snap.series.items()}
    second.close()
