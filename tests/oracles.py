"""Independent parsers for the formats sd-scripts writes, used only by tests.

Nothing here imports sdxl_tui: these are a second, separate reading of the formats (TFRecord
framing with masked CRC-32C, a protobuf wire-format walker for ``Event``, the safetensors
header, and regexes for the console log) so the simulator can be checked against the
reference and the real run without trusting the project's own readers or writers.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- CRC-32C (bitwise, deliberately a different implementation from the simulator's table) ----


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | ((crc << 17) & 0xFFFFFFFF)) + 0xA282EAD8) & 0xFFFFFFFF


class FramingError(AssertionError):
    pass


def read_tfrecords(path: str | Path) -> list[bytes]:
    """All record payloads; raises FramingError on a bad CRC or a truncated record."""
    data = Path(path).read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise FramingError(f"truncated length at {pos}")
        (length,) = struct.unpack_from("<Q", data, pos)
        (len_crc,) = struct.unpack_from("<I", data, pos + 8)
        if masked(crc32c_bitwise(data[pos : pos + 8])) != len_crc:
            raise FramingError(f"bad length crc at {pos}")
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise FramingError(f"truncated payload at {pos}")
        payload = data[start:end]
        (data_crc,) = struct.unpack_from("<I", data, end)
        if masked(crc32c_bitwise(payload)) != data_crc:
            raise FramingError(f"bad data crc at {pos}")
        out.append(payload)
        pos = end + 4
    return out


# -- protobuf wire format -------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for every field of one message."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val = buf[pos : pos + 8]
            pos += 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val = buf[pos : pos + n]
            pos += n
        elif wt == 5:
            val = buf[pos : pos + 4]
            pos += 4
        else:
            raise AssertionError(f"unsupported wire type {wt}")
        out.append((num, wt, val))
    return out


@dataclass
class Event:
    wall_time: float = 0.0
    step: int = 0
    file_version: str | None = None
    writer: str | None = None
    scalars: list[tuple[str, float]] = field(default_factory=list)
    field_numbers: list[int] = field(default_factory=list)


def parse_event(payload: bytes) -> Event:
    ev = Event()
    for num, wt, val in fields(payload):
        ev.field_numbers.append(num)
        if num == 1 and wt == 1:
            ev.wall_time = struct.unpack("<d", val)[0]
        elif num == 2 and wt == 0:
            ev.step = val
        elif num == 3 and wt == 2:
            ev.file_version = val.decode()
        elif num == 10 and wt == 2:
            for n2, _, v2 in fields(val):
                if n2 == 1:
                    ev.writer = v2.decode()
        elif num == 5 and wt == 2:
            for n2, _, value in fields(val):
                if n2 != 1:
                    continue
                tag, simple = None, None
                for n3, w3, v3 in fields(value):
                    if n3 == 1:
                        tag = v3.decode()
                    elif n3 == 2 and w3 == 5:
                        simple = struct.unpack("<f", v3)[0]
                assert tag is not None and simple is not None
                ev.scalars.append((tag, simple))
    return ev


def read_events(path: str | Path) -> list[Event]:
    return [parse_event(p) for p in read_tfrecords(path)]


def scalar_points(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for ev in read_events(path):
        for tag, value in ev.scalars:
            out.setdefault(tag, []).append((ev.step, value))
    return out


EVENT_FILE_RE = re.compile(r"^events\.out\.tfevents\.(\d{10})\.([^/]+)\.(\d+)\.(\d+)$")
TB_RUN_DIR_RE = re.compile(r"^(?P<prefix>.*?)(?P<ts>\d{14})$")

# -- safetensors ------------------------------------------------------------------------------


@dataclass
class SafetensorsHeader:
    length: int
    raw: bytes
    header: dict[str, Any]
    metadata: dict[str, str]
    tensors: dict[str, dict[str, Any]]
    file_size: int


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    p = Path(path)
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
    assert len(raw) == n, "truncated header"
    header = json.loads(raw)
    md = header.get("__metadata__", {})
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    return SafetensorsHeader(n, raw, header, md, tensors, p.stat().st_size)


def check_safetensors_layout(h: SafetensorsHeader) -> None:
    """safetensors' own invariants: padding, key order, contiguous offsets, exact file size."""
    assert h.length % 8 == 0, "header not padded to 8"
    assert h.raw.rstrip(b" ") == h.raw.rstrip(), "padding must be spaces"
    assert h.raw.startswith(b'{"__metadata__":') or "__metadata__" not in h.header
    names = list(h.tensors)
    dtype_rank = {"F64": 0, "F32": 1, "BF16": 2, "F16": 3}
    assert names == sorted(names, key=lambda k: (dtype_rank.get(h.tensors[k]["dtype"], 9), k))
    offset = 0
    for name in names:
        t = h.tensors[name]
        begin, end = t["data_offsets"]
        assert begin == offset, f"gap before {name}"
        size = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}[t["dtype"]]
        for d in t["shape"]:
            size *= d
        assert end - begin == size, f"size of {name}"
        offset = end
    assert h.file_size == 8 + h.length + offset, "file size"
    assert all(isinstance(v, str) for v in h.metadata.values())


LORA_TENSOR_RE = re.compile(r"^lora_(unet|te1|te2)_[a-z0-9_]+\.(alpha|lora_down\.weight|lora_up\.weight)$")

# -- console log ------------------------------------------------------------------------------

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
# one physical line of a RichHandler record (first line): time or 19 blanks, level, message, source
RICH_FIRST_RE = re.compile(
    rf"^(?P<time>{TIME}| {{19}}) (?P<level>DEBUG   |INFO    |WARNING |ERROR   |CRITICAL) (?P<msg>.*?) *(?P<src>[A-Za-z0-9_]+\.py:\d+)$"
)
RICH_CONT_RE = re.compile(r"^ {29}(?P<msg>.*)$")
TQDM_RE = re.compile(
    r"^(?:(?P<desc>[^\r\n:]+): )?(?P<pct>[ \d]{3})%\|(?P<bar>.{10})\| (?P<n>\d+)/(?P<total>\d+) "
    r"\[(?P<elapsed>(?:\d+:)?\d\d:\d\d)<(?P<remaining>(?:\d+:)?\d\d:\d\d|\?), "
    r"(?P<rate>(?: *\d+\.\d\d|\?)(?:it/s|s/it))(?:, (?P<postfix>[^\]]*))?\] *$"
)
POSTFIX_NUM_RE = re.compile(r"^(?:nan|-?inf|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$")

# lines quoted by the reference (§1.4-1.11) and seen in the real run
QUOTED = {
    "running": re.compile(r"^running training / 学習開始$"),
    "num_train": re.compile(r"^  num train images \* repeats / 学習画像の数×繰り返し回数: \d+$"),
    "num_val": re.compile(r"^  num validation images \* repeats / 学習画像の数×繰り返し回数: \d+$"),
    "num_reg": re.compile(r"^  num reg images / 正則化画像の数: \d+$"),
    "num_batches": re.compile(r"^  num batches per epoch / 1epochのバッチ数: \d+$"),
    "num_epochs": re.compile(r"^  num epochs / epoch数: \d+$"),
    "batch_size": re.compile(r"^  batch size per device / バッチサイズ: \d+(?:, \d+)*$"),
    "grad_accum": re.compile(r"^  gradient accumulation steps / 勾配を合計するステップ数 = \d+$"),
    "total_steps": re.compile(r"^  total optimization steps / 学習ステップ数: \d+$"),
    "override": re.compile(r"^override steps\. steps for \d+ epochs is / 指定エポックまでのステップ数: \d+$"),
    "epoch": re.compile(r"^epoch \d+/\d+$"),
    "saving": re.compile(r"^saving checkpoint: .+\.(safetensors|ckpt|pt)$"),
    "removing": re.compile(r"^removing old checkpoint: .+$"),
    "device": re.compile(r"^accelerator device: cuda(?::\d+)?$"),
    "import": re.compile(r"^import network module: [\w.]+$"),
    "prepare": re.compile(r"^prepare optimizer, data loader etc\.$"),
}
RECORD_MESSAGES = {
    "model_saved": re.compile(r"^model saved\.$"),
    "epoch_incremented": re.compile(r"^epoch is incremented\. current_epoch: \d+, epoch: \d+$"),
    "dataset_config": re.compile(r"^Loading dataset config from .+$"),
    "train_images": re.compile(r"^\d+ train images with repeats\.$"),
    "reg_images": re.compile(r"^\d+ reg images with repeats\.$"),
    "no_reg": re.compile(r"^no regularization images / 正則化画像が見つかりませんでした$"),
    "bucket": re.compile(r"^bucket \d+: resolution \(\d+, \d+\), count: \d+$"),
    "create_network": re.compile(r"^create LoRA network\. base dim \(rank\): \d+, alpha: [\d.]+$"),
    "enable_unet": re.compile(r"^enable LoRA for U-Net: \d+ modules$"),
    "enable_te": re.compile(r"^enable LoRA for text encoder: \d+ modules$"),
    "unet_dtype": re.compile(r"^unet dtype: torch\.\w+, device: [\w:]+$"),
    "sample_header": re.compile(r"^generating sample images at step / サンプル画像生成 ステップ: \d+$"),
    "saving_state": re.compile(r"^saving state at (?:epoch|step) \d+$"),
    "train_state": re.compile(r"^save train state to .+/train_state\.json at epoch \d+ step \d+$"),
}


def segments(data: bytes) -> list[tuple[str, str]]:
    """Split the log into (text, terminator) on both ``\\r`` and ``\\n`` (escapes stripped)."""
    text = data.decode("utf-8", errors="replace")
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    out = []
    for m in re.finditer(r"([^\r\n]*)(\r|\n|$)", text):
        if m.group(0) == "":
            continue
        out.append((m.group(1), m.group(2)))
    return out


@dataclass
class Record:
    time: str | None
    level: str
    message: str
    source: str
    lines: list[str]


def parse_records(lines: list[str]) -> list[Record]:
    """Group physical lines (``\\n``-split, bars removed) into RichHandler records."""
    records: list[Record] = []
    in_record = False
    for line in lines:
        m = RICH_FIRST_RE.match(line)
        if m:
            t = m.group("time")
            records.append(Record(None if t.strip() == "" else t, m.group("level").strip(), m.group("msg").rstrip(), m.group("src"), [line]))
            in_record = True
            continue
        c = RICH_CONT_RE.match(line)
        if c and in_record:
            records[-1].lines.append(line)
            records[-1].message += "\n" + c.group("msg").rstrip()
        else:
            in_record = False
    return records


def log_lines(data: bytes) -> list[str]:
    """Physical ``\\n`` lines with every ``\\r`` bar segment removed (keeps the last text after a bar)."""
    out = []
    for raw in data.decode("utf-8", errors="replace").split("\n"):
        out.append(raw.split("\r")[-1] if "\r" in raw else raw)
    return out


# -- the real run's launch line ---------------------------------------------------------------

REAL_INPUTS = Path(__file__).parent / "fixtures" / "real-sdxl-run-inputs"


def real_launch_args(out_dir: str | Path, dataset_config: str | Path) -> list[str]:
    """The trainer options of the real run's ``cmd.txt``, with this OUT and dataset config."""
    import shlex

    text = (REAL_INPUTS / "cmd.txt").read_text()
    line = next(ln for ln in text.splitlines() if "sdxl_train_network.py" in ln)
    tokens = shlex.split(line.replace("$OUT", str(out_dir)))
    start = tokens.index("sdxl_train_network.py") + 1
    end = tokens.index(">") if ">" in tokens else len(tokens)
    args = tokens[start:end]
    i = args.index("--dataset_config")
    args[i + 1] = str(dataset_config)
    return args


def real_dataset_config(tmp: Path) -> Path:
    """The real run's dataset TOML, pointed at the real images stored with the tests."""
    text = (REAL_INPUTS / "dataset.toml").read_text()
    text = text.replace('"/tmp/data/img"', '"' + str(REAL_INPUTS / "dataset-images") + '"')
    path = tmp / "dataset.toml"
    path.write_text(text)
    return path


def squash(text: str) -> str:
    """Remove all whitespace: compares messages across rich's soft wrapping."""
    return re.sub(r"\s+", "", text)


def record_messages(data: bytes) -> list[str]:
    """Every RichHandler record's message, continuation lines joined with a space."""
    return [" ".join(part.strip() for part in r.message.split("\n")) for r in parse_records(log_lines(data))]
