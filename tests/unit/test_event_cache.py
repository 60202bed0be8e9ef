"""The event reader's remembered state (``sources/eventstate.py``, ``sources/cache.py``) and the
fork-based prefetcher (``sources/forked.py``): a cached reader gives exactly what a fresh read
gives while reading only the new bytes; a damaged, foreign or stale cache is ignored; the
folder stays under its bound; concurrent writers leave whole files."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest

from sdxl_tui.cli import main
from sdxl_tui.formats.tfrecord import file_version_event, frame, scalar_event
from sdxl_tui.sources.cache import EventCache, cached_events
from sdxl_tui.sources.events import EventReader
from sdxl_tui.sources.eventstate import decode_state, encode_state
from sdxl_tui.sources.forked import ForkedCall

TAGS = ("loss/current", "loss/average", "lr/unet", "lr/textencoder")


def _records(steps: range, tags: tuple[str, ...] = TAGS, seed: int = 0) -> bytes:
    rnd = random.Random(seed + steps.start)
    out = []
    for step in steps:
        for tag in tags:
            value = float("nan") if rnd.random() < 0.001 else rnd.uniform(-2, 2)
            out.append(frame(scalar_event(tag, value, step, 1_795_000_000.0 + step)))
    return b"".join(out)


def _run(tmp_path: Path, n: int = 3000) -> tuple[Path, Path, Path]:
    """A run with two launches (the second restarts its steps: stitched) under logs/."""
    d1 = tmp_path / "run" / "logs" / "20261128212101" / "network_train"
    d2 = tmp_path / "run" / "logs" / "20261128222101" / "network_train"
    d1.mkdir(parents=True)
    d2.mkdir(parents=True)
    f1 = d1 / "events.out.tfevents.1795900900.vm.1.0"
    f2 = d2 / "events.out.tfevents.1795904500.vm.2.0"
    f1.write_bytes(frame(file_version_event(1_795_000_000.0)) + _records(range(n)))
    f2.write_bytes(frame(file_version_event(1_795_000_000.0)) + _records(range(n // 2), seed=1))
    return tmp_path / "run", f1, f2


def _same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (series values may be NaN)."""
    return repr(a) == repr(b)


def _view(reader: EventReader) -> tuple[object, ...]:
    series = {t: (s.count, s.last, s.points) for t, s in reader.series.items()}
    return series, reader.files, reader.resume_steps, reader.last_wall_time


def test_state_round_trip_is_exact(tmp_path: Path) -> None:
    run, _f1, _f2 = _run(tmp_path)
    reader = EventReader([run], max_points=200)
    reader.refresh()
    state = decode_state(encode_state(reader._state()))
    again = EventReader([run], max_points=200)
    again._set_state(state)
    for acc in again._acc.values():
        acc.dirty = True
    again._finish([], False, 0, 0, 0)
    assert _same(_view(again), _view(reader))
    assert any(math.isnan(p.value) for s in reader.series.values() for p in s.points)  # NaN kept


def test_second_reader_reads_only_new_bytes_and_equals_a_fresh_read(tmp_path: Path) -> None:
    run, _f1, f2 = _run(tmp_path)
    cache = EventCache([str(run)], 300, base=tmp_path / "cache")
    first = EventReader([run], max_points=300, cache=cache)
    up = first.refresh()
    first.close()
    assert up.bytes_read == sum(p.stat().st_size for p in run.rglob("events.*")) and cache.path.is_file()
    unchanged = EventReader([run], max_points=300, cache=cache)
    assert unchanged.refresh().bytes_read == 0 and unchanged.from_cache
    grown = _records(range(1500, 1700), seed=2)
    with open(f2, "ab") as f:
        f.write(grown)
    cached = EventReader([run], max_points=300, cache=cache)
    up = cached.refresh()
    assert up.bytes_read == len(grown) and cached.from_cache
    fresh = EventReader([run], max_points=300)
    fresh.refresh()
    assert _same(_view(cached), _view(fresh)) and fresh.resume_steps != ()
    cached.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_prefetch_child_saves_the_cache_it_hands_over(tmp_path: Path) -> None:
    """The child writes the cache (it encoded the state for the hand-over anyway); the parent
    adopts it without writing it again, and saves only what it read itself afterwards."""
    run, _f1, f2 = _run(tmp_path)
    cache = EventCache([str(run)], 300, base=tmp_path / "cache")
    reader = EventReader([run], max_points=300, cache=cache)
    assert reader.prefetch(min_bytes=0) is True
    up = reader.refresh()
    assert up.bytes_read == sum(p.stat().st_size for p in run.rglob("events.*"))
    assert cache.path.is_file() and reader._unsaved == 0  # written by the child
    written = cache.path.stat().st_mtime_ns
    reader.close()
    assert cache.path.stat().st_mtime_ns == written  # nothing new: not written again
    again = EventReader([run], max_points=300, cache=cache)
    assert again.refresh().bytes_read == 0 and again.from_cache and _same(_view(again), _view(reader))
    with open(f2, "ab") as f:
        f.write(_records(range(1500, 1600), seed=2))
    grown = EventReader([run], max_points=300, cache=cache)
    assert grown.prefetch(min_bytes=0) is True
    assert grown.refresh().bytes_read > 0 and grown.from_cache
    grown.close()
    fresh = EventReader([run], max_points=300)
    fresh.refresh()
    last = EventReader([run], max_points=300, cache=cache)
    assert last.refresh().bytes_read == 0 and _same(_view(last), _view(fresh))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped"])
def test_a_damaged_cache_is_ignored(tmp_path: Path, damage: str) -> None:
    run, _f1, _f2 = _run(tmp_path, n=500)
    cache = EventCache([str(run)], 300, base=tmp_path / "cache")
    EventReader([run], max_points=300, cache=cache).close()  # nothing read: nothing saved
    r = EventReader([run], max_points=300, cache=cache)
    r.refresh()
    data = cache.path.read_bytes()
    broken = {"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 2], "empty": b"",
              "flipped": data[:30] + b"}" + data[31:]}[damage]
    cache.path.write_bytes(broken)
    again = EventReader([run], max_points=300, cache=cache)
    up = again.refresh()
    assert not again.from_cache and up.bytes_read > 0
    assert _same(_view(again), _view(r))


def test_a_file_rewritten_in_place_or_replaced_makes_the_cache_stale(tmp_path: Path) -> None:
    run, f1, _f2 = _run(tmp_path, n=500)
    cache = EventCache([str(run)], 300, base=tmp_path / "cache")
    EventReader([run], max_points=300, cache=cache).refresh()
    data = bytearray(f1.read_bytes())
    other = _records(range(500), seed=9)
    data[-len(other):] = other  # same size, other values
    st = f1.stat()
    with open(f1, "r+b") as f:
        f.write(data)
    os.utime(f1, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    again = EventReader([run], max_points=300, cache=cache)
    again.refresh()
    fresh = EventReader([run], max_points=300)
    fresh.refresh()
    assert not again.from_cache and _same(_view(again), _view(fresh))
    f1.unlink()
    f1.write_bytes(bytes(data))  # a new inode
    third = EventReader([run], max_points=300, cache=cache)
    third.refresh()
    assert not third.from_cache


def test_the_cache_folder_stays_under_its_bound(tmp_path: Path) -> None:
    runs = []
    for i in range(4):
        run, _f1, _f2 = _run(tmp_path / str(i), n=800)
        runs.append(run)
    base = tmp_path / "cache"
    one = EventCache([str(runs[0])], 300, base=base)
    EventReader([runs[0]], max_points=300, cache=one).refresh()
    size = one.path.stat().st_size
    for run in runs[1:]:
        c = EventCache([str(run)], 300, max_bytes=int(size * 2.5), base=base)
        EventReader([run], max_points=300, cache=c).refresh()
    files = list((base / "runs").iterdir())
    assert sum(f.stat().st_size for f in files) <= size * 2.5 and len(files) == 2
    assert EventCache([str(runs[-1])], 300, base=base).path in files  # the newest is kept


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_concurrent_writers_leave_whole_files(tmp_path: Path) -> None:
    run, _f1, _f2 = _run(tmp_path, n=1500)
    cache = EventCache([str(run)], 300, base=tmp_path / "cache")
    reader = EventReader([run], max_points=300)
    reader.refresh()
    state = reader._state()

    def write_many() -> int:
        for _ in range(30):
            cache.save(state)
        return 0

    writers = [ForkedCall(write_many) for _ in range(2)]
    loads = [cache.load() for _ in range(200)]
    assert [w.result() for w in writers] == [0, 0]
    for w in writers:
        w.close()
    assert all(s is None or s.files.keys() == state.files.keys() for s in loads)
    assert cache.load() is not None
    assert not [p for p in cache.path.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_call_wait_says_whether_the_result_is_there(tmp_path: Path) -> None:
    """``wait(timeout)`` is False while the child works and True once its result is there."""
    gate_r, gate_w = os.pipe()

    def held() -> str:
        os.read(gate_r, 1)  # the child works until the test lets it finish
        return "done"

    call = ForkedCall(held)
    try:
        assert call.wait(0.05) is False
        os.write(gate_w, b"x")
        assert call.wait(60) is True
        assert call.result() == "done" and call.wait(0) is True
    finally:
        call.close()
        os.close(gate_r)
        os.close(gate_w)


def test_forked_call_returns_the_childs_value_or_none(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    parent = os.getpid()
    call = ForkedCall(lambda: (os.getpid(), "x" * 3_000_000))  # more than a pipe holds
    pid, text = call.result()  # type: ignore[misc]
    assert pid != parent and len(text) == 3_000_000
    call.close()

    def boom() -> int:
        raise RuntimeError("the child fails")

    failing = ForkedCall(boom)
    assert failing.result() is None
    slow = ForkedCall(lambda: __import__("time").sleep(60))
    child = slow.pid
    slow.close()  # killed and reaped, not waited for
    assert child is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)


def test_status_uses_the_cache_and_no_cache_leaves_it_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run, _f1, f2 = _run(tmp_path, n=800)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    argv = ["status", str(run), "--json", "--no-gpu", "--no-procs"]
    assert main([*argv, "--no-cache"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "xdg").exists()
    assert main(argv) == 0
    assert main(argv) == 0  # the second from the cache
    warm = json.loads(capsys.readouterr().out.split("\n}\n")[1] + "\n}")
    assert {p.suffix for p in (tmp_path / "xdg" / "sdxl-tui" / "runs").iterdir()} == {".events"}
    for data in (plain, warm):
        data.pop("taken_at")
        for alert in data["alerts"]:
            alert.pop("at", None)
    assert warm == plain
    more = _records(range(400, 450), seed=3)
    with open(f2, "ab") as f:
        f.write(more)
    got = cached_events(run)
    assert got.bytes_read == len(more)
    assert got.series["loss/current"].count == 800 + 450


def test_checkpoint_headers_are_remembered_while_their_files_are_unchanged(tmp_path: Path) -> None:
    from sdxl_tui.sim import run_simulated
    from sdxl_tui.sources.rundir import RunReader

    run = tmp_path / "sim"
    assert run_simulated(run, ["--output_name", "c", "--max_train_epochs", "3", "--save_every_n_epochs", "1",
                               "--sim-step-seconds", "0", "--sim-startup-seconds", "0",
                               "--sim-batches-per-epoch", "4"]) == 0
    first = RunReader(run, procs=False, cache=True)
    snap = first.refresh()
    assert first._scanner.header_reads == 3 and len(snap.checkpoints) == 3
    second = RunReader(run, procs=False, cache=True)
    again = second.refresh()
    assert second._scanner.header_reads == 0  # all three from the cache
    assert [(c.path, c.status, c.metadata) for c in again.checkpoints] == [
        (c.path, c.status, c.metadata) for c in snap.checkpoints]
    newest = Path(snap.checkpoints[-1].path)
    with open(newest, "r+b") as f:
        f.seek(8)
        f.write(b"{\"broken")  # damaged in place: size unchanged, mtime not
    third = RunReader(run, procs=False, cache=True)
    damaged = third.refresh()
    assert third._scanner.header_reads == 1
    assert [c.status for c in damaged.checkpoints] != [c.status for c in snap.checkpoints]
    off = RunReader(run, procs=False)  # the cache is off unless asked for
    off.refresh()
    assert off._scanner.header_reads == 3


def test_status_imports_nothing_heavy(tmp_path: Path) -> None:
    """``sdxl-tui status`` (text and JSON, cold and warm) imports no Textual, numpy, pandas,
    tbparse, protobuf, rich or Pillow: a cold status is mostly interpreter start and imports;
    nor what only other runs need (the TOML parser without a TOML file, subprocess without a
    Slurm job, socket, difflib without a typo)."""
    import subprocess
    import sys

    run, _f1, _f2 = _run(tmp_path, n=300)
    code = (
        "import contextlib, io, sys\n"
        "from sdxl_tui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    for extra in ([], ['--json'], ['--json']):\n"
        f"        assert main(['status', {str(run)!r}, '--no-gpu', *extra]) == 0\n"
        "heavy = {'textual', 'numpy', 'pandas', 'tbparse', 'tensorboard', 'google', 'rich', 'PIL', 'torch',\n"
        "         'tomllib', 'subprocess', 'socket', 'difflib'}\n"
        "assert 'sdxl_tui.formats.slurm' not in sys.modules\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_the_runs_view_reads_through_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sources/summary.read_summary`` (a row of the runs view) starts from the cached state and
    leaves it for the next row refresh, ``status`` and the dashboard (one cache file per roots)."""
    from sdxl_tui.config import Settings
    from sdxl_tui.formats.statedir import events_cache_path
    from sdxl_tui.sources.summary import read_summary

    run, _f1, _f2 = _run(tmp_path, n=600)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = read_summary(str(run), live=False, settings=Settings())
    path = events_cache_path([str(run)], EventReader.DEFAULT_MAX_POINTS)
    assert path.is_file()
    reader = EventReader([str(run)], cache=EventCache([str(run)], EventReader.DEFAULT_MAX_POINTS))
    assert reader.refresh().bytes_read == 0 and reader.from_cache  # what status would start from
    assert read_summary(str(run), live=False, settings=Settings()) == first
