"""TFRecord framing, masked CRC32C and the ``Event`` protobuf, read and written by hand.

Why by hand: tensorboard's own loaders convert every value into a tensor proto and tbparse
builds pandas frames (seconds for 200,000 scalars); the reader only needs wall time, step,
tag and value of scalar summaries. The wire format is protobuf's (varints, length-delimited
and fixed fields); the field numbers are tensorboard's ``event.proto``
(``Event.wall_time = 1``, ``step = 2``, ``file_version = 3``, ``summary = 5``),
``summary.proto`` (``Summary.value = 1``; ``Value.tag = 1``, ``simple_value = 2``,
``tensor = 8``, ``metadata = 9``) and ``tensor.proto``. ``tests/unit/test_tfrecord_properties.py``
checks this decoder against protobuf's own ``Event`` parser and tbparse on generated files.

Framing of one record (``tensorflow/core/lib/io/record_writer.cc``): ``uint64 length`` (LE),
``uint32 masked_crc32c(length bytes)``, ``data[length]``, ``uint32 masked_crc32c(data)``.
The writer half (``frame``, ``scalar_event``) writes byte-for-byte what
``torch.utils.tensorboard.SummaryWriter`` writes; the simulator uses it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "CRC32C_BACKEND",
    "EVENT_FILE_PREFIX",
    "HEADER",
    "DecodedEvent",
    "crc32c",
    "crc32c_py",
    "decode_event",
    "event_file_name",
    "file_version_event",
    "frame",
    "masked_crc32c",
    "masked_crc32c_many",
    "scalar_event",
    "simple_value_tag",
    "unmask",
]

#: File names of event files start with this (``tensorboard/summary/writer/event_file_writer.py``).
EVENT_FILE_PREFIX = "events.out.tfevents."

# ---------------------------------------------------------------------------------------------
# CRC32C: the C extension when installed (fast), a table-driven pure-Python fallback otherwise.
# ---------------------------------------------------------------------------------------------


def _make_table() -> list[int]:
    poly = 0x82F63B78
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c_py(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Pure-Python CRC32C (Castagnoli); slow, used only when the C extension is missing."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _load_crc32c() -> Callable[..., int] | None:
    """The ``crc32c`` C extension's function, loaded without the package's slow ``__init__``.

    ``import crc32c`` pulls in ``importlib.metadata`` (~50 ms, a tenth of the cold-start
    budget), so load the compiled submodule directly and fall back to the normal import.
    """
    try:
        import importlib.machinery
        import importlib.util

        spec = importlib.util.find_spec("crc32c")
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                so = os.path.join(loc, "_crc32c" + suffix)
                if os.path.exists(so):
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", so)
                    sub = importlib.util.spec_from_file_location("crc32c._crc32c", so, loader=loader)
                    if sub is None:
                        continue
                    mod = importlib.util.module_from_spec(sub)
                    loader.exec_module(mod)
                    fn: Callable[..., int] = mod.crc32c
                    return fn
    except Exception:  # noqa: BLE001 - any failure means: try the plain import  # pragma: no cover
        pass
    try:  # pragma: no cover - depends on the environment
        from crc32c import crc32c as fn2

        return fn2
    except Exception:  # noqa: BLE001 - not installed or broken: pure-Python fallback  # pragma: no cover
        return None


_C_CRC = _load_crc32c()
crc32c: Callable[..., int] = _C_CRC if _C_CRC is not None else crc32c_py
CRC32C_BACKEND = "crc32c (C extension)" if _C_CRC is not None else "pure python"


MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Minimal protobuf decoding of Event -> Summary -> Value (scalars only).
# Field numbers from tensorboard's event.proto / summary.proto / tensor.proto.
# ---------------------------------------------------------------------------------------------

_U64 = struct.Struct("<Q")
HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")

# DataType enum values that hold a float scalar.
_DT_FLOAT, _DT_DOUBLE, _DT_HALF, _DT_BFLOAT16 = 1, 2, 19, 14


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def fields(buf: bytes, pos: int, end: int) -> Iterable[tuple[int, int, int, int]]:
    """Yield (field number, wire type, value start, value end or varint value)."""
    while pos < end:
        key, pos = read_varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > end:
                raise ValueError("length-delimited field runs past its message")
            yield num, wire, pos, pos + n
            pos += n
        elif wire == 0:
            v, pos = read_varint(buf, pos)
            yield num, wire, v, v
        elif wire == 1:
            if pos + 8 > end:
                raise ValueError("fixed64 runs past its message")
            yield num, wire, pos, pos + 8
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise ValueError("fixed32 runs past its message")
            yield num, wire, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _half(bits: int) -> float:
    return float(struct.unpack("<e", bits.to_bytes(2, "little"))[0])


def _tensor_scalar(buf: bytes, pos: int, end: int) -> float | None:
    """A single float/double held in a TensorProto (new-style scalar summaries), else None."""
    dtype = 0
    content: bytes | None = None
    floats: list[float] = []
    for num, wire, a, b in fields(buf, pos, end):
        if num == 1 and wire == 0:
            dtype = a
        elif num == 4 and wire == 2:
            content = buf[a:b]
        elif num == 5:  # float_val (packed or not)
            if wire == 2:
                floats.extend(v for (v,) in struct.iter_unpack("<f", buf[a:b])) if (b - a) % 4 == 0 else None
            elif wire == 5:
                floats.append(_F32.unpack_from(buf, a)[0])
        elif num == 6:  # double_val
            if wire == 2 and (b - a) % 8 == 0:
                floats.extend(v for (v,) in struct.iter_unpack("<d", buf[a:b]))
            elif wire == 1:
                floats.append(_F64.unpack_from(buf, a)[0])
        elif num == 13 and dtype == _DT_HALF:  # half_val, int32 bit patterns
            if wire == 2:
                p = a
                while p < b:
                    v, p = read_varint(buf, p)
                    floats.append(_half(v))
            elif wire == 0:
                floats.append(_half(a))
    if dtype not in (_DT_FLOAT, _DT_DOUBLE, _DT_HALF, 0):
        return None
    if content is not None:
        if dtype == _DT_DOUBLE and len(content) == 8:
            return float(_F64.unpack(content)[0])
        if dtype in (_DT_FLOAT, 0) and len(content) == 4:
            return float(_F32.unpack(content)[0])
        if dtype == _DT_HALF and len(content) == 2:
            return float(struct.unpack("<e", content)[0])
        return None
    if len(floats) == 1:
        return float(floats[0])
    return None


def _plugin_name(buf: bytes, pos: int, end: int) -> str | None:
    """SummaryMetadata.plugin_data.plugin_name, if present."""
    for num, wire, a, b in fields(buf, pos, end):
        if num == 1 and wire == 2:  # plugin_data
            for n2, w2, a2, b2 in fields(buf, a, b):
                if n2 == 1 and w2 == 2:
                    return buf[a2:b2].decode("utf-8", "replace")
    return None


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """The parts of one ``Event`` a scalar reader needs."""

    wall_time: float
    step: int
    scalars: tuple[tuple[str, float], ...] = ()
    plugins: tuple[tuple[str, str], ...] = ()  # (tag, plugin_name) from summary metadata
    file_version: str | None = None


def decode_event(data: bytes) -> DecodedEvent:
    """Decode one serialized ``Event`` (see ``_decode_event``).

    Raises:
        ValueError: the bytes are not a well-formed protobuf message.
    """
    try:
        return _decode_event(data)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed event: {exc}") from exc


def _decode_event(data: bytes) -> DecodedEvent:
    """Decode one serialized ``Event``: wall time, step and its scalar values.

    Scalars are ``simple_value`` or a one-element float tensor (new-style summaries).
    """
    wall = 0.0
    step = 0
    scalars: list[tuple[str, float]] = []
    plugins: list[tuple[str, str]] = []
    version: str | None = None
    end = len(data)
    for num, wire, a, b in fields(data, 0, end):
        if num == 1 and wire == 1:
            wall = _F64.unpack_from(data, a)[0]
        elif num == 2 and wire == 0:
            step = a - (1 << 64) if a >= 1 << 63 else a
        elif num == 3 and wire == 2:
            version = data[a:b].decode("utf-8", "replace")
        elif num == 5 and wire == 2:  # summary
            for n2, w2, a2, b2 in fields(data, a, b):
                if n2 != 1 or w2 != 2:
                    continue
                tag = ""
                value: float | None = None
                tensor: tuple[int, int] | None = None
                plugin: str | None = None
                for n3, w3, a3, b3 in fields(data, a2, b2):
                    if n3 == 1 and w3 == 2:
                        tag = data[a3:b3].decode("utf-8", "replace")
                    elif n3 == 2 and w3 == 5:
                        value = _F32.unpack_from(data, a3)[0]
                    elif n3 == 8 and w3 == 2:
                        tensor = (a3, b3)
                    elif n3 == 9 and w3 == 2:
                        plugin = _plugin_name(data, a3, b3)
                if plugin is not None:
                    plugins.append((tag, plugin))
                if value is None and tensor is not None and plugin in (None, "scalars"):
                    value = _tensor_scalar(data, tensor[0], tensor[1])
                if value is not None:
                    scalars.append((tag, float(value)))
    return DecodedEvent(wall, step, tuple(scalars), tuple(plugins), version)


def simple_value_tag(mid: bytes) -> str | None:
    """Tag of ``2a L1 0a L2 0a Lt <tag>`` when the three lengths agree, else None."""
    lt = len(mid) - 6
    if lt < 0 or mid[0] != 0x2A or mid[2] != 0x0A or mid[4] != 0x0A:
        return None
    if mid[5] != lt or mid[3] != lt + 2 + 5 or mid[1] != mid[3] + 2:
        return None
    return mid[6:].decode("utf-8", "replace")


_LANES: dict[int, tuple[int, int, int, int, int]] = {}
def masked_crc32c_many(crcs: list[int]) -> bytes:
    """TFRecord masks of many CRCs at once, as little-endian uint32 bytes.

    The mask (rotate right 15, add a constant, per 32-bit value) is applied to all values
    packed into one big integer with lane masks (SWAR), so the per-record cost is C-level.
    """
    n = len(crcs)
    lanes = _LANES.get(n)
    if lanes is None:
        if len(_LANES) > 64:
            _LANES.clear()
        lanes = _LANES[n] = (
            int.from_bytes(b"\xff\xff\x01\x00" * n, "little"),  # 0x0001FFFF: bits kept by >> 15
            int.from_bytes(b"\x00\x00\xfe\xff" * n, "little"),  # 0xFFFE0000: bits kept by << 17
            int.from_bytes(b"\xff\xff\xff\x7f" * n, "little"),  # low 31 bits of each lane
            int.from_bytes(b"\x00\x00\x00\x80" * n, "little"),  # top bit of each lane
            int.from_bytes(struct.pack("<I", MASK_DELTA) * n, "little"),
        )
    low17, high15, low31, top, delta = lanes
    x = int.from_bytes(struct.pack(f"<{n}I", *crcs), "little")
    r = ((x >> 15) & low17) | ((x << 17) & high15)
    # per-lane addition mod 2**32 without carries between lanes
    total = ((r & low31) + (delta & low31)) ^ ((r ^ delta) & top)
    return total.to_bytes(4 * n, "little")


# ---------------------------------------------------------------------------------------------
# Writing (the simulator's event files).
# ---------------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC of the length, payload, masked CRC of the payload."""
    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )


def encode_varint(n: int) -> bytes:
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(tag: int, data: bytes) -> bytes:
    return bytes([tag]) + encode_varint(len(data)) + data


def file_version_event(wall_time: float) -> bytes:
    """The first Event of every file: ``file_version`` and the writer's source metadata."""
    meta = _len_field(0x0A, b"tensorboard.summary.writer.event_file_writer")
    return b"\x09" + struct.pack("<d", wall_time) + _len_field(0x1A, b"brain.Event:2") + _len_field(0x52, meta)


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)]))``."""
    val = _len_field(0x0A, tag.encode("utf-8")) + b"\x15" + struct.pack("<f", value)
    summary = _len_field(0x0A, val)
    body = b"\x09" + struct.pack("<d", wall_time)
    if step:
        body += b"\x10" + encode_varint(step)
    return body + _len_field(0x2A, summary)


def event_file_name(wall_time: float, hostname: str | None = None, pid: int | None = None) -> str:
    """``events.out.tfevents.<10-digit time>.<hostname>.<pid>.0`` like tensorboard's writer."""
    if not hostname:
        import socket  # the writer's only need for it (the readers never import it)

        hostname = socket.gethostname()
    return f"events.out.tfevents.{int(wall_time):010d}.{hostname}.{os.getpid() if pid is None else pid}.0"
