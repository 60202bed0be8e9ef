"""EventReader: incremental TFRecord/Event reading, checked against tbparse (the oracle)."""

from __future__ import annotations

import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from sdxl_tui.formats.tfrecord import crc32c, decode_event, masked_crc32c
from sdxl_tui.formats.tfrecord import crc32c_py as _crc32c_py
from sdxl_tui.model import ScalarPoint
from sdxl_tui.sources.events import EventReader
from sdxl_tui.sources.series import downsample_minmax
from tests.helpers.unprivileged import run_python
from tests.realrun import STORED

REAL_LOGS = STORED / "logs"

# ---------------------------------------------------------------------------------------------
# A small event-file writer (tensorboard's generated protos + our own framing).
# ---------------------------------------------------------------------------------------------


def _frame(data: bytes) -> bytes:
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def _event(step: int, tag: str, value: float, wall: float, *, tensor: bool = False) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2

    if tensor:
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        t = tensor_pb2.TensorProto(dtype=1, float_val=[value])
        v = summary_pb2.Summary.Value(tag=tag, tensor=t, metadata=meta)
    else:
        v = summary_pb2.Summary.Value(tag=tag, simple_value=value)
    ev = event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[v]))
    return _frame(ev.SerializeToString())


def _header(wall: float = 1795900900.0) -> bytes:
    from tensorboard.compat.proto import event_pb2

    return _frame(event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString())


def _records(steps: Iterable[int], tags: Sequence[str] = ("loss/current", "lr/unet"), *,
             t0: float = 1795900900.0, value=lambda s, i: 1.0 / (1 + s) + i * 0.25,
             tensor: bool = False) -> bytes:
    out = []
    for s in steps:
        for i, tag in enumerate(tags):
            out.append(_event(s, tag, value(s, i), t0 + s + i * 0.001, tensor=tensor))
    return b"".join(out)


def _run_dir(root: Path, stamp: str = "20261128212101") -> Path:
    d = root / "logs" / stamp / "network_train"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tb(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The oracle: tbparse's scalars (and one-value float tensors, new-style scalars)."""
    from tbparse import SummaryReader

    reader = SummaryReader(str(path))
    out: dict[str, list[tuple[int, float]]] = {}
    for df in (reader.scalars, reader.tensors):
        if len(df) == 0:
            continue
        for tag, step, value in zip(df["tag"], df["step"], df["value"]):
            out.setdefault(str(tag), []).append((int(step), float(value)))
    return out


def _ours(reader: EventReader) -> dict[str, list[tuple[int, float]]]:
    return {t: [(p.step, p.value) for p in s.points] for t, s in reader.series.items()}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# CRC and decoding
# ---------------------------------------------------------------------------------------------


def test_crc32c_matches_known_vector_and_tensorboard() -> None:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked

    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert _crc32c_py(b"123456789") == 0xE3069283
    for data in (b"", b"a", b"hello world" * 7, bytes(range(256))):
        assert masked_crc32c(data) == tb_masked(data)


def test_decode_event_simple_and_tensor_scalars() -> None:
    raw = _event(300, "loss/current", 0.125, 5.0)[12:-4]
    ev = decode_event(raw)
    assert (ev.step, ev.wall_time, ev.scalars) == (300, 5.0, (("loss/current", 0.125),))
    raw = _event(7, "lr/unet", 0.5, 6.0, tensor=True)[12:-4]
    ev = decode_event(raw)
    assert ev.scalars == (("lr/unet", 0.5),) and ("lr/unet", "scalars") in ev.plugins
    with pytest.raises(ValueError):
        decode_event(b"\x0a\xff\xff\xff")


# ---------------------------------------------------------------------------------------------
# Oracle: the real run and generated files read the same as tbparse
# ---------------------------------------------------------------------------------------------


def test_real_run_matches_tbparse() -> None:
    before = _snapshot(REAL_LOGS)
    reader = EventReader([REAL_LOGS])
    up = reader.refresh()
    assert up.problems == () and up.pending_bytes == 0
    assert set(up.series) == {"loss/current", "loss/average", "lr/unet", "lr/group0", "loss/epoch_average"}
    assert _ours(reader) == _tb(REAL_LOGS)
    cur = up.series["loss/current"]
    assert cur.count == 18 and cur.last is not None and cur.last.step == 9
    assert [p.step for p in up.series["loss/epoch_average"].points] == [1, 2, 3]
    assert up.resume_steps == ()
    assert up.last_wall_time == pytest.approx(1795901071.93, abs=0.01)
    assert _snapshot(REAL_LOGS) == before  # never writes into the run
    # a second refresh costs nothing and finds nothing
    again = reader.refresh()
    assert again.new_points == {} and again.bytes_read == 0


def test_generated_simple_and_tensor_scalars_match_tbparse(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    big = 300  # two-byte step varints too
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(
        _header()
        + _records(range(big), ("loss/current", "loss/average", "lr/unet"))
        + _records(range(big, big + 5), ("lr/textencoder",), tensor=True)
        + _event(1, "loss/epoch_average", float("nan"), 1795901000.0)
        + _event(20000, "loss/current", 0.5, 1795901001.0)  # three-byte varint
    )
    reader = EventReader([tmp_path / "logs"])
    reader.refresh()
    ours = _ours(reader)
    oracle = _tb(tmp_path / "logs")
    assert set(ours) == set(oracle)
    for tag in oracle:
        assert len(ours[tag]) == len(oracle[tag])
        assert all(a[0] == b[0] and _same(a[1], b[1]) for a, b in zip(ours[tag], oracle[tag])), tag
    assert reader.series["loss/current"].last == ScalarPoint(20000, 0.5, 1795901001.0)


def test_incremental_refresh_at_every_cut_equals_one_read(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    data = _header() + _records(range(6))
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    whole = EventReader([tmp_path / "logs"])
    f.write_bytes(data)
    whole.refresh()
    for cut in range(1, len(data), 7):
        f.write_bytes(data[:cut])
        r = EventReader([tmp_path / "logs"])
        first = r.refresh()
        assert first.problems == ()
        with open(f, "ab") as fh:
            fh.write(data[cut:])
        second = r.refresh()
        assert second.problems == () and second.pending_bytes == 0
        assert _ours(r) == _ours(whole), cut
        assert {t: s.count for t, s in r.series.items()} == {"loss/current": 6, "lr/unet": 6}


def test_truncated_record_at_end_is_retried_later(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    rec = _event(5, "loss/current", 0.25, 10.0)
    f.write_bytes(_header() + _records(range(3)) + rec[:-6])
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert up.problems == () and up.pending_bytes == len(rec) - 6
    third = struct.unpack("<f", struct.pack("<f", 1 / 3))[0]  # stored as float32
    assert r.series["loss/current"].last == ScalarPoint(2, third, 1795900902.0)
    assert r.refresh().new_points == {}  # still incomplete: nothing, no problem
    with open(f, "ab") as fh:
        fh.write(rec[-6:])
    up = r.refresh()
    assert up.new_points["loss/current"] == (ScalarPoint(5, 0.25, 10.0),)
    assert up.pending_bytes == 0 and up.problems == ()


def test_bad_data_crc_is_skipped_and_reported(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    bad = bytearray(_event(1, "loss/current", 0.5, 2.0))
    bad[-1] ^= 0xFF  # data CRC
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(_header() + _event(0, "loss/current", 1.0, 1.0) + bytes(bad) + _event(2, "loss/current", 0.25, 3.0))
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert [p.step for p in r.series["loss/current"].points] == [0, 2]
    assert len(up.problems) == 1 and "data CRC" in up.problems[0] and str(f) in up.problems[0]
    assert r.refresh().problems == ()  # reported once
    assert any("data CRC" in p for p in r.problems)


def test_bad_length_crc_resyncs_to_next_record(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    bad = bytearray(_event(1, "loss/current", 0.5, 2.0))
    bad[0] ^= 0x01  # length byte: length CRC fails, the length is not trusted
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(_header() + _event(0, "loss/current", 1.0, 1.0) + bytes(bad) + _records(range(2, 5), ("loss/current",)))
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert [p.step for p in r.series["loss/current"].points] == [0, 2, 3, 4]
    assert len(up.problems) == 1 and "length CRC" in up.problems[0]


def test_garbage_tail_and_garbage_file_do_not_raise(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _records(range(2)) + os.urandom(4000))
    (d / "events.out.tfevents.1795900901.vm.1.0").write_bytes(b"\x00" * 100 + b"not an event file" * 50)
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert r.series["loss/current"].count == 2
    assert up.problems and all("length CRC" in p for p in up.problems)


def test_undecodable_record_with_good_crc_is_reported(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _frame(b"\x2a\x7f\x01") + _records(range(2)))
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert r.series["loss/current"].count == 2
    assert len(up.problems) == 1 and "undecodable" in up.problems[0]


def test_zero_byte_file_and_empty_dirs(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(b"")
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert up.series == {} and up.problems == () and up.files == (str(f),)
    f.write_bytes(_header() + _records(range(2)))
    assert r.refresh().series["loss/current"].count == 2


def test_missing_root_created_later_deleted_and_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    r = EventReader([logs])
    up = r.refresh()
    assert up.series == {} and up.problems == () and up.files == ()
    d = _run_dir(tmp_path)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _records(range(3)))
    assert r.refresh().series["loss/current"].count == 3
    shutil.rmtree(logs)
    up = r.refresh()
    assert any("removed" in p for p in up.problems)
    assert r.series["loss/current"].count == 3  # what was read is kept
    d = _run_dir(tmp_path, "20261128220000")
    (d / "events.out.tfevents.1795903000.vm.2.0").write_bytes(_header() + _records(range(2)))
    up = r.refresh()
    assert r.series["loss/current"].count == 5
    assert up.resume_steps == (2,)  # the new run restarted at step 0 after step 2


def test_file_truncated_or_replaced_rereads_everything(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(_header() + _records(range(5)))
    r = EventReader([tmp_path / "logs"])
    r.refresh()
    f.write_bytes(_header() + _records(range(2)))  # shorter: truncated in place
    up = r.refresh()
    assert up.reset and any("truncated" in p for p in up.problems)
    assert r.series["loss/current"].count == 2
    tmp = d / "tmp"
    tmp.write_bytes(_header() + _records(range(4)))
    os.replace(tmp, f)  # new inode
    up = r.refresh()
    assert up.reset and any("replaced" in p for p in up.problems)
    assert r.series["loss/current"].count == 4


def test_symlinks_to_dirs_and_files_and_loops(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    d = _run_dir(real)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _records(range(3)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "logs").symlink_to(real / "logs")
    (d / "loop").symlink_to(real / "logs")  # a symlink loop must not hang or duplicate
    (run / "single").mkdir()
    (run / "single" / "events.out.tfevents.1795900999.vm.9.0").symlink_to(
        d / "events.out.tfevents.1795900900.vm.1.0"
    )
    r = EventReader([run / "logs"])
    assert r.refresh().series["loss/current"].count == 3
    r2 = EventReader([run])  # the same file reached two ways is read once
    up = r2.refresh()
    assert up.series["loss/current"].count == 3 and len(up.files) == 1


def test_permission_denied_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="sdxl-tui-perm-"))
    try:
        base.chmod(0o755)
        d = _run_dir(base)
        f = d / "events.out.tfevents.1795900900.vm.1.0"
        f.write_bytes(_header() + _records(range(3)))
        for p in (base / "logs", base / "logs" / "20261128212101", d):
            p.chmod(0o755)
        f.chmod(0o000)
        code = (
            "import sys\n"
            "from sdxl_tui.sources.events import EventReader\n"
            f"up = EventReader([{str(base / 'logs')!r}]).refresh()\n"
            "print(len(up.series), '|'.join(up.problems))\n"
        )
        out = run_python(code)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("0 ") and "Permission denied" in out.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Restarts, ordering, bounded memory
# ---------------------------------------------------------------------------------------------


def test_restarts_are_stitched_in_time_order(tmp_path: Path) -> None:
    # written out of order on purpose: the later timestamp dir is created first
    d2 = _run_dir(tmp_path, "luca20261128230000")
    (d2 / "events.out.tfevents.1795910000.vm.2.0").write_bytes(
        _header() + _records(range(4), ("loss/current",), value=lambda s, i: 10.0 + s)
        + _event(3, "loss/epoch_average", 0.3, 1795911000.0)
    )
    d1 = _run_dir(tmp_path, "luca20261128210000")
    (d1 / "events.out.tfevents.1795900000.vm.1.0").write_bytes(
        _header() + _records(range(6), ("loss/current",), value=lambda s, i: float(s))
        + _event(1, "loss/epoch_average", 0.1, 1795901000.0)
        + _event(2, "loss/epoch_average", 0.2, 1795901001.0)
    )
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    pts = up.series["loss/current"].points
    assert [p.value for p in pts] == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13]
    assert [p.step for p in pts] == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8]  # offset by the previous end
    assert up.resume_steps == (5,)
    # epoch tags continue (3 > 2): no offset
    assert [p.step for p in up.series["loss/epoch_average"].points] == [1, 2, 3]
    assert len(up.files) == 2 and "210000" in up.files[0]


def test_continued_steps_after_resume_are_not_offset(tmp_path: Path) -> None:
    d1 = _run_dir(tmp_path, "20261128210000")
    (d1 / "events.out.tfevents.1795900000.vm.1.0").write_bytes(_header() + _records(range(5), ("loss/current",)))
    d2 = _run_dir(tmp_path, "20261128220000")
    (d2 / "events.out.tfevents.1795910000.vm.1.0").write_bytes(_header() + _records(range(5, 8), ("loss/current",)))
    r = EventReader([tmp_path / "logs"])
    up = r.refresh()
    assert [p.step for p in up.series["loss/current"].points] == list(range(8))
    assert up.resume_steps == (5,)


def test_bounded_points_exact_last_and_extremes(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    n = 5000

    def val(s: int, i: int) -> float:
        if s == 1234:
            return 99.0  # a spike must survive downsampling
        if s == 4321:
            return float("nan")  # and so must a NaN
        return math.sin(s / 50.0)

    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(_header() + _records(range(n), ("loss/current",), value=val))
    r = EventReader([tmp_path / "logs"], max_points=200)
    up = r.refresh()
    s = up.series["loss/current"]
    assert s.count == n and s.last is not None and s.last.step == n - 1
    assert len(s.points) <= 200 + 8
    assert any(p.step == 1234 and p.value == 99.0 for p in s.points)
    assert any(p.step == 4321 and math.isnan(p.value) for p in s.points)
    steps = [p.step for p in s.points]
    assert steps == sorted(steps) and steps[0] == 0
    assert len(up.new_points["loss/current"]) <= 200
    # appending keeps the budget and the exact tail
    with open(f, "ab") as fh:
        fh.write(_records(range(n, n + 100), ("loss/current",), value=lambda st, i: -5.0 if st == n + 50 else 0.0))
    up = r.refresh()
    s = up.series["loss/current"]
    assert s.count == n + 100 and s.last is not None and s.last.step == n + 99
    assert len(s.points) <= 208
    assert any(p.value == -5.0 for p in s.points)
    assert [p.step for p in up.new_points["loss/current"]] == list(range(n, n + 100))


def test_downsample_minmax_keeps_order_and_extremes() -> None:
    pts = [ScalarPoint(i, v) for i, v in enumerate([3, 1, 4, 1, 5, 9, 2, 6])]
    out = downsample_minmax(pts, 4)
    assert [p.step for p in out] == [1, 2, 5, 6]


def test_refresh_after_growth_reads_only_new_bytes(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    f.write_bytes(_header() + _records(range(1000)))
    r = EventReader([tmp_path / "logs"])
    first = r.refresh()
    extra = _records(range(1000, 1100))
    with open(f, "ab") as fh:
        fh.write(extra)
    up = r.refresh()
    assert up.bytes_read == len(extra) and up.records == 200
    assert first.bytes_read == f.stat().st_size - len(extra)


# ---------------------------------------------------------------------------------------------
# Simulator-written runs (sdxl_tui.sim writes the real TensorBoard layout and tags)
# ---------------------------------------------------------------------------------------------

SIM_ARGS = ["--output_name", "luca", "--network_dim", "8", "--network_alpha", "4", "--max_train_epochs", "2",
            "--gradient_accumulation_steps", "2", "--train_batch_size", "4", "--log_with", "tensorboard",
            "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "6"]


def _sim(run: Path, *extra: str) -> int:
    from sdxl_tui.sim import run_simulated

    return run_simulated(run, [*SIM_ARGS, "--logging_dir", str(run / "logs"), *extra])


@pytest.mark.parametrize("fault", [None, "nan", "oom"])
def test_sim_runs_match_tbparse(tmp_path: Path, fault: str | None) -> None:
    run = tmp_path / "run"
    _sim(run, *(["--sim-fault", fault, "--sim-fault-step", "3"] if fault else []))
    before = _snapshot(run)
    r = EventReader([run / "logs"])
    up = r.refresh()
    assert up.problems == () and up.pending_bytes == 0
    ours, oracle = _ours(r), _tb(run / "logs")
    assert set(ours) == set(oracle) and "loss/current" in ours
    for tag in oracle:
        assert len(ours[tag]) == len(oracle[tag]), tag
        assert all(a[0] == b[0] and _same(a[1], b[1]) for a, b in zip(ours[tag], oracle[tag])), tag
    if fault == "nan":
        assert math.isnan(up.series["loss/average"].last_value or 0.0)
    assert _snapshot(run) == before


def test_sim_restart_into_the_same_logging_dir_is_stitched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _sim(run)
    (first,) = list((run / "logs").iterdir())
    first.rename(first.with_name("20200101000000"))  # the first launch, long before
    r = EventReader([run / "logs"])
    end = r.refresh().series["loss/current"].last
    assert end is not None
    _sim(run)  # launched again: a new timestamped run dir, global_step from 0 again
    up = r.refresh()
    cur = up.series["loss/current"]
    steps = [p.step for p in cur.points]
    assert steps == sorted(steps) and cur.count == 2 * (len(steps) // 2)
    assert up.resume_steps == (end.step,)
    assert len(up.files) == 2


@pytest.mark.slow
def test_live_sim_process_read_while_writing(tmp_path: Path) -> None:
    """A real trainer-like process writes while we refresh: every refresh is consistent."""
    from sdxl_tui.sim import start_simulated

    run = tmp_path / "run"
    args = [*SIM_ARGS, "--logging_dir", str(run / "logs")]
    args[args.index("--sim-step-seconds") + 1] = "0.05"
    proc = start_simulated(run, args)
    try:
        r = EventReader([run / "logs"])
        counts = []
        while proc.poll() is None:
            up = r.refresh()
            assert up.problems == ()
            counts.append(sum(s.count for s in up.series.values()))
            time.sleep(0.05)
        r.refresh()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert counts == sorted(counts) and len(counts) > 2
    assert _ours(r) == _tb(run / "logs")  # no NaN in this run: exact equality


@pytest.mark.slow
def test_long_periodic_file_with_corruption_inside_matches_expectation(tmp_path: Path) -> None:
    """Block decoding: varint widths change (1, 2, 3 bytes), an epoch tag breaks the pattern,
    and one record in the middle has a bad data CRC: it alone is skipped and reported."""
    d = _run_dir(tmp_path)
    recs = [_header()]
    expected: dict[str, list[tuple[int, float]]] = {"loss/current": [], "lr/unet": [], "loss/epoch_average": []}
    bad_at = None
    for s in range(20000):
        for i, tag in enumerate(("loss/current", "lr/unet")):
            v = struct.unpack("<f", struct.pack("<f", 1.0 / (1 + s) + i))[0]
            rec = _event(s, tag, v, 1795900900.0 + s + i * 0.001)
            if s == 12345 and i == 0:
                rec = rec[:-1] + bytes([rec[-1] ^ 0x55])  # corrupt the data CRC
                bad_at = s
            else:
                expected[tag].append((s, v))
            recs.append(rec)
        if s % 5000 == 4999:
            recs.append(_event(s // 5000 + 1, "loss/epoch_average", 0.5, 1795900900.0 + s))
            expected["loss/epoch_average"].append((s // 5000 + 1, 0.5))
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(b"".join(recs))
    r = EventReader([tmp_path / "logs"], max_points=100_000)
    up = r.refresh()
    assert bad_at is not None and len(up.problems) == 1 and "data CRC" in up.problems[0]
    assert _ours(r) == expected


def test_run_dir_as_root_skips_samples_and_state_dirs(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _records(range(2)))
    for junk in ("sample", "luca-000002-state", ".sdxl-tui", "eval_epoch2"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "events.out.tfevents.1795900999.vm.9.0").write_bytes(_header() + _records(range(9)))
    up = EventReader([tmp_path]).refresh()
    assert up.files == (str(d / "events.out.tfevents.1795900900.vm.1.0"),)
    assert up.series["loss/current"].count == 2


# ---------------------------------------------------------------------------------------------
# First read in a forked child (prefetch) and lazily built new points
# ---------------------------------------------------------------------------------------------


def _update_fields(up) -> tuple:
    # not bytes_read: after a prefetch the parent reads a partly written last record again
    return (dict(up.series), {t: up.new_points[t] for t in up.new_points}, up.files, up.resume_steps,
            up.problems, up.compacted, up.records, up.pending_bytes, up.last_wall_time, up.reset)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_prefetch_in_a_child_gives_exactly_the_in_process_read(tmp_path: Path) -> None:
    """Same update (series, new points, problems, counts) and same later refreshes, including a
    bad CRC, a restart stitched across two run dirs and a record still being written."""
    d1 = _run_dir(tmp_path, "20261128212101")
    d2 = _run_dir(tmp_path, "20261128222101")
    first = _header() + _records(range(3000), ("loss/current", "lr/unet", "lr/textencoder"))
    bad = bytearray(_records(range(3000, 3001)))
    bad[-1] ^= 0x55  # one bad data CRC
    (d1 / "events.out.tfevents.1795900900.vm.1.0").write_bytes(first + bytes(bad) + _records(range(3001, 4000)))
    second = _header() + _records(range(2000))  # resumed without skipping: stitched
    partial = _records(range(2000, 2001))
    f2 = d2 / "events.out.tfevents.1795904500.vm.2.0"
    f2.write_bytes(second + partial[:-7])
    plain = EventReader([tmp_path / "logs"], max_points=300)
    forked = EventReader([tmp_path / "logs"], max_points=300)
    assert forked.prefetch(min_bytes=0) is True
    assert forked._fork is not None
    child = forked._fork.pid
    assert forked.prefetch(min_bytes=0) is False  # one child at a time
    a, b = plain.refresh(), forked.refresh()
    assert _update_fields(a) == _update_fields(b)
    assert a.bytes_read <= b.bytes_read <= a.bytes_read + len(partial)
    assert a.problems and "data CRC" in a.problems[0] and a.resume_steps == b.resume_steps != ()
    assert forked.prefetch(min_bytes=0) is False  # only for a first read
    with open(f2, "ab") as fh:
        fh.write(partial[-7:] + _records(range(2001, 2100)))
    assert _update_fields(plain.refresh()) == _update_fields(forked.refresh())
    forked.close()
    assert forked._fork is None
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # adopted and reaped


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_prefetch_skipped_for_small_files_and_closed_child_is_reaped(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    (d / "events.out.tfevents.1795900900.vm.1.0").write_bytes(_header() + _records(range(100)))
    r = EventReader([tmp_path / "logs"])
    assert r.prefetch() is False  # below the default size: not worth a process
    assert r.prefetch(min_bytes=0) is True
    r.close()  # never adopted: the child is stopped and reaped, the reader reads itself
    r.close()
    up = r.refresh()
    assert up.series["loss/current"].count == 100 and up.records == 201  # header + 2 tags


def test_new_points_are_the_newest_raw_points_built_on_demand(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    f = d / "events.out.tfevents.1795900900.vm.1.0"
    n = 30000  # more than one chunk of columns per tag, more than max_points
    f.write_bytes(_header() + _records(range(n), ("loss/current",)))
    r = EventReader([tmp_path / "logs"], max_points=500)
    up = r.refresh()
    assert len(up.new_points) == 1 and "loss/current" in up.new_points and "x" not in up.new_points
    pts = up.new_points["loss/current"]
    assert pts is up.new_points["loss/current"]  # built once
    assert [p.step for p in pts] == list(range(n - 500, n))
    assert pts[-1] == up.series["loss/current"].last
    with pytest.raises(KeyError):
        up.new_points["lr/unet"]
    assert r.refresh().new_points == {}


def test_points_builder_makes_the_same_frozen_points_as_the_constructor() -> None:
    import dataclasses
    import pickle

    from sdxl_tui.sources.series import build_points as _build_points

    pts = _build_points([1, 2, 3], [0.5, float("nan"), -1.0], [10.0, 11.0, 12.0])
    ref = [ScalarPoint(1, 0.5, 10.0), ScalarPoint(2, float("nan"), 11.0), ScalarPoint(3, -1.0, 12.0)]
    assert [(p.step, p.wall_time) for p in pts] == [(p.step, p.wall_time) for p in ref]
    assert pts[0] == ref[0] and pts[2] == ref[2] and hash(pts[0]) == hash(ref[0])
    assert math.isnan(pts[1].value) and type(pts[0]) is ScalarPoint
    assert pickle.loads(pickle.dumps(pts[2])) == ref[2] and dataclasses.replace(pts[2], step=4).step == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        pts[0].step = 9  # type: ignore[misc]
