"""The console log's remembered reading state (``sources/cache.py``: ``load_log``/``save_log``):
a second reader with the cache reads only what the log gained and knows what a reader that
never stopped knows; a changed, replaced, damaged or foreign cache file is ignored."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from sdxl_tui.config import Settings
from sdxl_tui.sim.bulk import generate_big_run
from sdxl_tui.sources.cache import CacheFile, load_log, log_cache, save_log
from sdxl_tui.sources.logparse import LogParser
from sdxl_tui.sources.logtail import LogTail
from sdxl_tui.sources.rundir import RunReader, read_run


@pytest.fixture()
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = tmp_path / "run"
    generate_big_run(run, log_bytes=600_000, scalars=2_000, checkpoints=2)
    return run


def _facts(reader: RunReader) -> object:
    return reader._log.parser.facts


def test_a_second_reader_reads_only_what_the_log_gained(run: Path) -> None:
    log = run / "training.log"
    first = RunReader(run, procs=False, cache=True, log_tail_bytes=64 << 10, log_head_bytes=64 << 10)
    snap = first.refresh()
    first.close()
    # unchanged: the state comes from the cache, not one byte of the log is read again
    again = RunReader(run, procs=False, cache=True, log_tail_bytes=64 << 10, log_head_bytes=64 << 10)
    snap2 = again.refresh()
    assert not again._log.unsaved  # the tail found nothing new to read
    assert _facts(again) == _facts(first)
    assert (snap2.state, snap2.progress.step, snap2.log_lines) == (snap.state, snap.progress.step, snap.log_lines)
    assert again._log.tail is not None and again._log.tail.offset == log.stat().st_size
    again.close()
    # grown: only the new bytes are parsed, and the facts equal those of a reader that kept going
    keep = RunReader(run, procs=False, log_tail_bytes=64 << 10, log_head_bytes=64 << 10)
    keep.refresh()
    with open(log, "a", encoding="utf-8") as f:
        f.write("2026-12-05 10:00:00 ERROR    something broke after the cache was written  train_network.py:1\n")
    grown = RunReader(run, procs=False, cache=True, log_tail_bytes=64 << 10, log_head_bytes=64 << 10)
    grown.refresh()
    keep.refresh()
    assert _facts(grown) == _facts(keep) and any("something broke" in e for e in _facts(grown).errors)  # type: ignore[attr-defined]
    grown.close()
    keep.close()


def test_a_log_rewritten_or_replaced_is_read_from_scratch(run: Path, tmp_path: Path) -> None:
    log = run / "training.log"
    file = CacheFile(tmp_path / "c.log", 1 << 20)
    tail = LogTail(log, initial_tail_bytes=4096, head_bytes=4096)
    parser = LogParser()
    read = tail.read()
    parser.feed(read.head_segments)
    parser.feed(read.segments)
    assert save_log(file, tail, parser)
    got = load_log(file, str(log))
    assert got is not None and got[1].facts == parser.facts and got[0].offset == tail.offset
    assert load_log(file, str(run / "other.log")) is None  # another file
    data = log.read_bytes()
    log.write_bytes(data[:-1] + b"X")  # same size, rewritten in place (mtime moves)
    os.utime(log, ns=(1, 1))
    assert load_log(file, str(log)) is None
    log.write_bytes(data[:100])  # shorter than what was read
    assert load_log(file, str(log)) is None
    os.unlink(log)
    log.write_bytes(data)  # replaced: another inode
    assert load_log(file, str(log)) is None


def test_a_damaged_or_foreign_log_cache_is_ignored(run: Path, tmp_path: Path) -> None:
    log = run / "training.log"
    file = CacheFile(tmp_path / "c.log", 1 << 20)
    file.write(b"not a pickle")
    assert load_log(file, str(log)) is None
    file.write(pickle.dumps(((1, 2), os.system, print)))  # builds nothing but the log reader's classes
    assert load_log(file, str(log)) is None
    assert load_log(CacheFile(tmp_path / "missing", 1 << 20), str(log)) is None


def test_status_with_the_cache_equals_status_without_it(run: Path) -> None:
    settings = Settings()
    now = (run / "training.log").stat().st_mtime + 60

    def clock() -> float:
        return now

    plain = read_run(run, gpu=False, procs=False, settings=settings, clock=clock)
    read_run(run, gpu=False, procs=False, settings=settings, cache=True, clock=clock)
    file = log_cache(str(run / "training.log"), 256 << 10, 256 << 10, settings)
    assert file is not None and file.path.is_file() and load_log(file, str(run / "training.log")) is not None
    cached = read_run(run, gpu=False, procs=False, settings=settings, cache=True, clock=clock)
    assert (cached.state, cached.state_reason, cached.progress, cached.alerts, cached.config, cached.log_lines) == (
        plain.state, plain.state_reason, plain.progress, plain.alerts, plain.config, plain.log_lines)
    off = Settings().replace(cache__enabled=False)
    assert log_cache(str(run / "training.log"), 256 << 10, 256 << 10, off) is None
