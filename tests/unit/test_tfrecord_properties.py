"""Property tests of the hand-written Event decoder and the incremental event-file reader.

Oracles: protobuf's own ``Event`` parser (tensorboard's compiled ``event_pb2``, installed with
tbparse) for single records, tbparse for whole files, and tests/oracles.py's bit-by-bit
CRC-32C for the framing (a second implementation, not the project's). Generated are events
with random tags (any Unicode), steps (the whole int64 range), wall times and values (NaN and
infinities included) in every scalar encoding TensorBoard writers use; files are cut at every
byte (a record being written) and hit by both CRC faults (length and data).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

from sdxl_tui.formats.tfrecord import decode_event
from sdxl_tui.sources.events import EventReader
from tests.oracles import crc32c_bitwise, masked

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
F64 = st.floats(allow_nan=True, allow_infinity=True)
F32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
F16 = st.floats(width=16, allow_nan=True, allow_infinity=True)
TAGS = st.text(min_size=0, max_size=24)
#: How a scalar is written: TF1 ``simple_value``, or a one-element tensor (TF2 summaries).
KINDS = ("simple", "float_val", "double_val", "half_val", "float_content", "double_content")

HEAVY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Scalar:
    tag: str
    kind: str
    value: float
    plugin: str | None  # SummaryMetadata.plugin_data.plugin_name, None: no metadata


@dataclass(frozen=True)
class Ev:
    wall_time: float
    step: int
    scalars: tuple[Scalar, ...]
    file_version: str | None = None


def scalars(kinds: Sequence[str] = KINDS, plugins: Sequence[str | None] = (None, "scalars", "images")) -> st.SearchStrategy[Scalar]:
    def build(tag: str, kind: str, plugin: str | None, data: st.DataObject) -> Scalar:
        value = data.draw({"simple": F32, "float_val": F32, "float_content": F32, "half_val": F16}.get(kind, F64))
        return Scalar(tag, kind, value, None if kind == "simple" and plugin == "images" else plugin)

    return st.builds(build, TAGS, st.sampled_from(kinds), st.sampled_from(plugins), st.data())


def events(steps: st.SearchStrategy[int] = INT64, scalar: st.SearchStrategy[Scalar] | None = None,
           max_scalars: int = 4) -> st.SearchStrategy[Ev]:
    return st.builds(Ev, F64, steps, st.lists(scalar or scalars(), max_size=max_scalars).map(tuple),
                     st.one_of(st.none(), st.just("brain.Event:2")))


def to_proto(ev: Ev) -> event_pb2.Event:
    """The event as tensorboard's writers build it (protobuf's own serializer is the writer)."""
    out = event_pb2.Event(wall_time=ev.wall_time, step=ev.step)
    if ev.file_version is not None:
        out.file_version = ev.file_version
        return out
    for s in ev.scalars:
        v = out.summary.value.add(tag=s.tag)
        if s.plugin is not None:
            v.metadata.plugin_data.plugin_name = s.plugin
            if s.plugin == "scalars" and s.kind != "simple":
                v.metadata.data_class = summary_pb2.DATA_CLASS_SCALAR  # as tf.summary.scalar writes
        if s.kind == "simple":
            v.simple_value = s.value
            continue
        t = v.tensor
        if s.kind in ("float_val", "float_content"):
            t.dtype = types_pb2.DT_FLOAT
        elif s.kind == "half_val":
            t.dtype = types_pb2.DT_HALF
        else:
            t.dtype = types_pb2.DT_DOUBLE
        if s.kind == "float_val":
            t.float_val.append(s.value)
        elif s.kind == "double_val":
            t.double_val.append(s.value)
        elif s.kind == "half_val":
            t.half_val.append(struct.unpack("<H", struct.pack("<e", s.value))[0])
        elif s.kind == "float_content":
            t.tensor_content = struct.pack("<f", s.value)
        else:
            t.tensor_content = struct.pack("<d", s.value)
    return out


def oracle_scalars(payload: bytes) -> tuple[float, int, list[tuple[str, float]]]:
    """(wall time, step, scalars) as protobuf's parser reads the record."""
    ev = event_pb2.Event.FromString(payload)
    found: list[tuple[str, float]] = []
    for v in ev.summary.value:
        plugin = v.metadata.plugin_data.plugin_name if v.HasField("metadata") else None
        which = v.WhichOneof("value")
        if which == "simple_value":
            found.append((v.tag, v.simple_value))
        elif which == "tensor" and plugin in (None, "scalars"):
            found.append((v.tag, _tensor_value(v.tensor)))
    return ev.wall_time, ev.step, found


def _tensor_value(t: tensor_pb2.TensorProto) -> float:
    if t.tensor_content:
        return struct.unpack("<d" if t.dtype == types_pb2.DT_DOUBLE else "<f", t.tensor_content)[0]
    if t.dtype == types_pb2.DT_HALF:
        return struct.unpack("<e", struct.pack("<H", t.half_val[0]))[0]
    return (t.double_val or t.float_val)[0]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def frame(payload: bytes) -> bytes:
    """TFRecord framing with the tests' own bit-by-bit CRC-32C."""
    head = struct.pack("<Q", len(payload))
    return (head + struct.pack("<I", masked(crc32c_bitwise(head))) + payload
            + struct.pack("<I", masked(crc32c_bitwise(payload))))


# --------------------------------------------------------------------------- one record


@HEAVY
@given(events())
def test_decode_event_agrees_with_protobufs_parser(ev: Ev) -> None:
    payload = to_proto(ev).SerializeToString()
    got = decode_event(payload)
    wall, step, want = oracle_scalars(payload)
    assert same(got.wall_time, wall) and got.step == step
    assert len(got.scalars) == len(want)
    for (tag, value), (otag, ovalue) in zip(got.scalars, want):
        assert tag == otag and same(value, ovalue)
    assert got.file_version == (ev.file_version or None)


@HEAVY
@given(st.binary(max_size=64))
def test_decode_event_never_crashes_on_garbage(data: bytes) -> None:
    try:
        decode_event(data)
    except ValueError:
        pass  # malformed protobuf is reported as ValueError, nothing else


# --------------------------------------------------------------------------- whole files


def read_points(path: Path) -> dict[str, list[tuple[int, float, float]]]:
    reader = EventReader([path.parent])
    reader.refresh()
    return {tag: [(p.step, p.value, p.wall_time) for p in s.points] for tag, s in reader.series.items()}


def expected_points(evs: Sequence[Ev]) -> dict[str, list[tuple[int, float, float]]]:
    """Scalars by tag in file order. A tag's plugin is fixed by its summary metadata (as in
    TensorBoard): once a value of the tag says another plugin (``images``), its later values
    (that event's included) are not scalars."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    other_plugin: set[str] = set()
    for ev in evs:
        proto = to_proto(ev)
        for v in proto.summary.value:
            if v.HasField("metadata") and v.metadata.plugin_data.plugin_name != "scalars":
                other_plugin.add(v.tag)
        wall, step, found = oracle_scalars(proto.SerializeToString())
        for tag, value in found:
            if tag not in other_plugin:
                out.setdefault(tag, []).append((step, value, wall))
    return out


def assert_points(got: dict[str, list[tuple[int, float, float]]], want: dict[str, list[tuple[int, float, float]]]) -> None:
    assert set(got) == set(want)
    for tag, pts in want.items():
        assert len(got[tag]) == len(pts), tag
        for (s, v, w), (s2, v2, w2) in zip(got[tag], pts):
            assert s == s2 and same(v, v2) and same(w, w2), tag


def event_file(tmp: Path, name: str = "events.out.tfevents.1700000000.host.1.0") -> Path:
    d = tmp / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / name


FINITE_WALL = st.floats(min_value=1e9, max_value=2e9)


def file_events(max_events: int = 12) -> st.SearchStrategy[list[Ev]]:
    ev = st.builds(Ev, FINITE_WALL, st.integers(0, 1 << 40), st.lists(scalars(), min_size=1, max_size=3).map(tuple))
    return st.lists(ev, min_size=1, max_size=max_events)


@settings(HEAVY, max_examples=40)
@given(file_events(), st.data())
def test_reader_equals_the_oracle_and_survives_both_crc_faults(tmp_path_factory: pytest.TempPathFactory,
                                                                evs: list[Ev], data: st.DataObject) -> None:
    records = [frame(to_proto(ev).SerializeToString()) for ev in evs]
    path = event_file(tmp_path_factory.mktemp("ev"))
    path.write_bytes(b"".join(records))
    assert_points(read_points(path), expected_points(evs))
    # one fault in one record: that record is lost (and reported), every other one is read
    bad = data.draw(st.integers(0, len(records) - 1), label="faulty record")
    fault = data.draw(st.sampled_from(["length crc", "data crc", "payload"]), label="fault")
    rec = bytearray(records[bad])
    at = {"length crc": 8, "data crc": len(rec) - 4, "payload": 12}[fault]
    if fault == "payload" and len(rec) == 16:
        at = len(rec) - 1  # an empty payload: hit its CRC instead
    rec[at] ^= 0x40
    path.write_bytes(b"".join(records[:bad]) + bytes(rec) + b"".join(records[bad + 1:]))
    reader = EventReader([path.parent])
    update = reader.refresh()
    got = {tag: [(p.step, p.value, p.wall_time) for p in s.points] for tag, s in reader.series.items()}
    assert_points(got, expected_points(evs[:bad] + evs[bad + 1:]))
    assert update.problems, "a corrupt record must be reported"


@settings(HEAVY, max_examples=30)
@given(file_events(), st.data())
def test_a_cached_state_then_the_new_bytes_equal_one_read(tmp_path_factory: pytest.TempPathFactory,
                                                          evs: list[Ev], data: st.DataObject) -> None:
    """The state a reader remembers (``sources/eventstate.py``: the cache and the prefetch
    child's hand-over) is exact: a reader that starts from it and reads only the bytes
    appended since gives what one read of the whole file gives (random Unicode tags, steps,
    NaN and infinities, a cut anywhere, even inside a record)."""
    from sdxl_tui.sources.cache import EventCache

    records = b"".join(frame(to_proto(ev).SerializeToString()) for ev in evs)
    cut = data.draw(st.integers(0, len(records)), label="cut")
    root = tmp_path_factory.mktemp("cache")
    path = event_file(root)
    path.write_bytes(records[:cut])
    cache = EventCache([str(path.parent)], 64, base=root / "xdg")
    first = EventReader([path.parent], max_points=64, cache=cache)
    first.refresh()
    first.close()
    with path.open("ab") as fh:
        fh.write(records[cut:])
    second = EventReader([path.parent], max_points=64, cache=cache)
    update = second.refresh()
    assert second.from_cache == (cut > 0) and update.bytes_read <= len(records) - cut + 12 + 16 + max(
        (len(frame(to_proto(ev).SerializeToString())) for ev in evs), default=0)
    whole = EventReader([path.parent], max_points=64)
    whole.refresh()
    assert repr({t: (s.count, s.last, s.points) for t, s in second.series.items()}) == repr(
        {t: (s.count, s.last, s.points) for t, s in whole.series.items()})


@pytest.mark.slow
@settings(HEAVY, max_examples=15)
@given(file_events(max_events=5))
def test_a_file_cut_at_every_byte_reads_the_complete_records_then_the_rest(
        tmp_path_factory: pytest.TempPathFactory, evs: list[Ev]) -> None:
    records = [frame(to_proto(ev).SerializeToString()) for ev in evs]
    data = b"".join(records)
    ends = [sum(len(r) for r in records[: i + 1]) for i in range(len(records))]
    path = event_file(tmp_path_factory.mktemp("cut"))
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        reader = EventReader([path.parent])
        update = reader.refresh()
        complete = sum(1 for e in ends if e <= cut)
        got = {tag: [(p.step, p.value, p.wall_time) for p in s.points] for tag, s in reader.series.items()}
        assert_points(got, expected_points(evs[:complete]))
        assert not update.problems, (cut, update.problems)  # a record being written is no fault
        with path.open("ab") as fh:  # the writer finishes: the same reader reads the rest
            fh.write(data[cut:])
        reader.refresh()
        got = {tag: [(p.step, p.value, p.wall_time) for p in s.points] for tag, s in reader.series.items()}
        assert_points(got, expected_points(evs))
        reader.close()


@settings(HEAVY, max_examples=8)
@given(st.lists(st.tuples(st.sampled_from(["loss/current", "loss/average", "lr/unet", "lr/textencoder"]),
                          st.integers(0, 1 << 31), F32), min_size=1, max_size=40),
       st.integers(600, 900))
def test_the_block_decoder_on_sd_scripts_shaped_files(tmp_path_factory: pytest.TempPathFactory,
                                                      rows: list[tuple[str, int, float]], count: int) -> None:
    """One simple_value per event, as accelerate's TensorBoard tracker writes them: many
    (> 4 KiB) for the reader's batched path, which must agree with protobuf's parser."""
    evs = [Ev(1.7e9 + i, rows[i % len(rows)][1] + i, (Scalar(rows[i % len(rows)][0], "simple", rows[i % len(rows)][2], None),))
           for i in range(count)]
    path = event_file(tmp_path_factory.mktemp("block"))
    path.write_bytes(b"".join(frame(to_proto(ev).SerializeToString()) for ev in evs))
    assert_points(read_points(path), expected_points(evs))


def monotonic_events(evs: list[Ev]) -> list[Ev]:
    """As a trainer writes them: steps go forward, a tag at most once per event, finite
    float scalars. (TensorBoard's loader purges data "orphaned" by a step that goes back, a
    restart's rule the project reads differently: it stitches restarts, see sources/events.py.)"""
    out: list[Ev] = []
    step = 0
    for e in evs:
        step += 1 + e.step % 7
        kept: dict[str, Scalar] = {}
        for sc in e.scalars:
            if sc.kind in ("simple", "float_content", "double_content") and math.isfinite(sc.value) and (
                    sc.kind == "simple" or sc.plugin == "scalars"):
                kept.setdefault(sc.tag, replace(sc, plugin=None) if sc.kind == "simple" else sc)
        out.append(Ev(e.wall_time, step, tuple(kept.values())))
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@settings(HEAVY, max_examples=6)
@given(file_events(max_events=8).map(monotonic_events))
def test_reader_equals_tbparse(tmp_path_factory: pytest.TempPathFactory, evs: list[Ev]) -> None:
    import tbparse  # a dependency of the project: this oracle never skips
    path = event_file(tmp_path_factory.mktemp("tbp"))
    path.write_bytes(frame(to_proto(Ev(1.7e9, 0, (), "brain.Event:2")).SerializeToString())
                     + b"".join(frame(to_proto(ev).SerializeToString()) for ev in evs))
    ours = {tag: [(s, v) for s, v, _ in pts] for tag, pts in read_points(path).items()}
    reader = tbparse.SummaryReader(str(path.parent))
    theirs: dict[str, list[tuple[int, float]]] = {}
    for df in (reader.scalars, reader.tensors):  # simple_value, and TF2's scalar tensors
        if len(df):
            for tag, step, value in zip(df["tag"], df["step"], df["value"]):
                theirs.setdefault(str(tag), []).append((int(step), float(value)))
    theirs = {tag: sorted(pts) for tag, pts in theirs.items()}
    assert set(ours) == set(theirs)
    for tag, pts in theirs.items():
        assert [s for s, _ in ours[tag]] == [s for s, _ in pts], tag
        for (_, a), (_, b) in zip(ours[tag], pts):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30), tag


def test_a_tag_that_turns_non_scalar_mid_chunk_reads_as_after_a_restart(tmp_path: Path) -> None:
    """Found by the property above: a simple_value tag, then metadata of another plugin for it,
    then a simple_value again. The fast path had kept the tag's sink from the first record and
    counted the third in one read, while a reader restarted from the cache (or a read split
    there) dropped it. Both follow the one rule now: no scalars after the other plugin."""
    from sdxl_tui.sources.cache import EventCache

    evs = [Ev(1e9, 0, (Scalar("", "simple", 0.0, None),)), Ev(1e9, 0, (Scalar("0", "simple", 0.0, None),)),
           Ev(1e9, 0, (Scalar("0", "float_val", 0.0, "images"),)), Ev(1e9, 0, (Scalar("0", "simple", 0.0, None),))]
    records = [frame(to_proto(ev).SerializeToString()) for ev in evs]
    path = event_file(tmp_path)
    path.write_bytes(b"".join(records))
    whole = EventReader([path.parent], max_points=64)
    whole.refresh()
    got = {tag: [(p.step, p.value, p.wall_time) for p in s.points] for tag, s in whole.series.items()}
    assert_points(got, expected_points(evs))
    cut = len(records[0]) + len(records[1])
    path.write_bytes(b"".join(records)[:cut])
    cache = EventCache([str(path.parent)], 64, base=tmp_path / "xdg")
    first = EventReader([path.parent], max_points=64, cache=cache)
    first.refresh()
    first.close()
    path.write_bytes(b"".join(records))
    second = EventReader([path.parent], max_points=64, cache=cache)
    second.refresh()
    assert {t: s.count for t, s in second.series.items()} == {t: s.count for t, s in whole.series.items()}
