"""CheckpointScanner against the real sd-scripts run and hand-made edge files.

Every assertion is on what the scanner reads from real files; time is injected (no sleeps).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest

from sdxl_tui.formats.names import classify_name, parse_sample_name
from sdxl_tui.formats.safetensors import read_header as read_safetensors_header
from sdxl_tui.model import CheckpointKind, CheckpointStatus
from sdxl_tui.sources.checkpoints import CheckpointScanner

REAL_SIZE = 21_585_180


@pytest.fixture
def real_file(real_run: Path) -> Path:
    """The real run's first epoch checkpoint (header + sparse data, real size)."""
    return real_run / "tiny_lora-000001.safetensors"


class Clock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_safetensors(
    path: Path, metadata: dict[str, str] | None = None, tensors: int = 2, *, pad: bool = True
) -> bytes:
    """A small, valid safetensors file (REF §4.1 layout); returns its bytes."""
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for i in range(tensors):
        header[f"lora_unet_t{i}.alpha"] = {
            "dtype": "F16",
            "shape": [4],
            "data_offsets": [8 * i, 8 * (i + 1)],
        }
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    data = struct.pack("<Q", len(raw)) + raw + bytes(range(8)) * tensors
    path.write_bytes(data)
    return data


def meta(epoch: int, steps: int, num_epochs: int = 3, name: str = "luca") -> dict[str, str]:
    return {
        "ss_epoch": str(epoch),
        "ss_steps": str(steps),
        "ss_num_epochs": str(num_epochs),
        "ss_output_name": name,
    }


def age(path: Path, seconds_ago: float, now: float) -> None:
    os.utime(path, (now - seconds_ago, now - seconds_ago))


def one(scan_result, name: str):  # type: ignore[no-untyped-def]
    found = [c for c in scan_result.checkpoints if c.name == name]
    assert len(found) == 1, [c.name for c in scan_result.checkpoints]
    return found[0]


# ----------------------------------------------------------------------------- real run


def test_real_run_three_complete_checkpoints(real_run: Path) -> None:
    scan = CheckpointScanner(real_run).scan()
    assert [c.name for c in scan.checkpoints] == [
        "tiny_lora-000001.safetensors",
        "tiny_lora-000002.safetensors",
        "tiny_lora.safetensors",
    ]
    assert [c.kind for c in scan.checkpoints] == [
        CheckpointKind.EPOCH,
        CheckpointKind.EPOCH,
        CheckpointKind.FINAL,
    ]
    assert [c.epoch for c in scan.checkpoints] == [1, 2, 3]
    assert [c.step for c in scan.checkpoints] == [3, 6, 9]
    assert all(
        c.status is CheckpointStatus.COMPLETE and c.problem is None for c in scan.checkpoints
    )
    assert all(c.size == REAL_SIZE for c in scan.checkpoints)
    assert scan.output_name == "tiny_lora"
    assert scan.problems == ()
    md = scan.checkpoints[2].metadata
    assert len(md) == 80
    assert md["ss_epoch"] == "3" and md["ss_steps"] == "9" and md["ss_output_name"] == "tiny_lora"
    assert all(isinstance(v, str) for v in md.values())
    with pytest.raises(TypeError):
        md["ss_epoch"] = "4"  # type: ignore[index]
    assert scan.states == () and scan.samples == () and scan.evaluations == ()


def test_real_header_is_read_without_tensor_data(real_file: Path) -> None:
    h = read_safetensors_header(real_file)
    assert h.state == "ok"
    assert h.header_length == 305_008
    assert h.expected_size == REAL_SIZE == h.file_size
    assert h.tensor_count == 2166
    assert h.metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"


def test_rescan_of_unchanged_checkpoints_reads_no_header(tmp_path: Path, real_file: Path) -> None:
    for i in range(1, 21):
        (tmp_path / f"tiny_lora-{i:06d}.safetensors").symlink_to(real_file)
    scanner = CheckpointScanner(tmp_path)
    first = scanner.scan()
    assert scanner.header_reads == 20
    t0 = time.perf_counter()
    second = scanner.scan()
    elapsed = time.perf_counter() - t0
    assert scanner.header_reads == 20  # only stat calls on the rescan
    assert [c.epoch for c in second.checkpoints] == list(range(1, 21))
    assert first.checkpoints == second.checkpoints
    assert elapsed < 0.05, elapsed


def test_half_written_real_file_is_writing_then_corrupt(tmp_path: Path, real_file: Path) -> None:
    real = real_file.read_bytes()[:400_000]
    target = tmp_path / "tiny_lora-000001.safetensors"
    target.write_bytes(real[:350_000])
    now = target.stat().st_mtime + 1.0
    clock = Clock(now)
    scanner = CheckpointScanner(tmp_path, clock=clock)

    c = one(scanner.scan(), target.name)
    assert c.status is CheckpointStatus.WRITING
    assert f"350000 of {REAL_SIZE} bytes" in (c.problem or "")
    assert c.epoch == 1 and c.metadata["ss_epoch"] == "1"  # header already complete

    with target.open("ab") as f:  # the trainer keeps writing
        f.write(real[350_000:])
    clock.now += 40.0
    age(target, 0.5, clock.now)
    c = one(scanner.scan(), target.name)
    assert c.status is CheckpointStatus.WRITING

    clock.now += 40.0  # nothing changed for 40 s: the save was killed
    c = one(scanner.scan(), target.name)
    assert c.status is CheckpointStatus.CORRUPT
    assert c.problem == f"truncated: 400000 of {REAL_SIZE} bytes"


def test_header_incomplete(tmp_path: Path, real_file: Path) -> None:
    target = tmp_path / "tiny_lora-000002.safetensors"
    target.write_bytes(real_file.read_bytes()[:1000])
    clock = Clock(target.stat().st_mtime + 2)
    scanner = CheckpointScanner(tmp_path, clock=clock)
    c = one(scanner.scan(), target.name)
    assert c.status is CheckpointStatus.WRITING and c.epoch == 2 and c.metadata == {}
    clock.now += 31
    c = one(scanner.scan(), target.name)
    assert c.status is CheckpointStatus.CORRUPT
    assert c.problem == "header incomplete: 1000 of at least 305016 bytes"


# ----------------------------------------------------------------------------- statuses


def test_zero_byte_file_writing_when_fresh_corrupt_when_stale(tmp_path: Path) -> None:
    f = tmp_path / "luca-000001.safetensors"
    f.touch()
    now = time.time()
    age(f, 1, now)
    assert one(CheckpointScanner(tmp_path, clock=Clock(now)).scan(), f.name).status is (
        CheckpointStatus.WRITING
    )
    age(f, 3600, now)
    c = one(CheckpointScanner(tmp_path, clock=Clock(now)).scan(), f.name)
    assert c.status is CheckpointStatus.CORRUPT and c.problem == "empty file (0 bytes)"
    assert c.size == 0 and c.kind is CheckpointKind.EPOCH and c.epoch == 1


def test_short_length_prefix(tmp_path: Path) -> None:
    f = tmp_path / "luca-000001.safetensors"
    f.write_bytes(b"\x10\x00\x00")
    now = time.time()
    age(f, 100, now)
    c = one(CheckpointScanner(tmp_path, clock=Clock(now)).scan(), f.name)
    assert c.status is CheckpointStatus.CORRUPT
    assert c.problem == "header length incomplete: 3 of 8 bytes"


@pytest.mark.parametrize(
    ("payload", "problem_start"),
    [
        (
            struct.pack("<Q", 2**63) + b"{}",
            "not a safetensors file: header length 9223372036854775808",
        ),
        (struct.pack("<Q", 8) + b"{not js}", "header is not valid JSON"),
        (struct.pack("<Q", 8) + b'{"\xff\xfe":1}', "header is not UTF-8"),
        (struct.pack("<Q", 8) + b"[1, 2]  ", "header is not an object"),
        (struct.pack("<Q", 24) + b'{"t": {"data_offsets":1}}'[:24], "header is not valid JSON"),
        (
            struct.pack("<Q", 32) + b'{"t": {"data_offsets": [4, 2]}} ',
            "tensor 't' has invalid data_offsets",
        ),
    ],
)
def test_impossible_headers_are_corrupt_at_once(
    tmp_path: Path, payload: bytes, problem_start: str
) -> None:
    f = tmp_path / "luca-000003.safetensors"
    f.write_bytes(payload)
    c = one(CheckpointScanner(tmp_path).scan(), f.name)  # fresh file, still corrupt
    assert c.status is CheckpointStatus.CORRUPT
    assert (c.problem or "").startswith(problem_start), c.problem


def test_extra_bytes_after_data_are_corrupt(tmp_path: Path) -> None:
    f = tmp_path / "luca-000001.safetensors"
    data = write_safetensors(f, meta(1, 3))
    f.write_bytes(data + b"xx")
    c = one(CheckpointScanner(tmp_path).scan(), f.name)
    assert c.status is CheckpointStatus.CORRUPT
    assert (c.problem or "").startswith("2 bytes after the tensor data")


def test_growing_file_becomes_complete(tmp_path: Path) -> None:
    full = write_safetensors(tmp_path / "src.bin", meta(1, 3), tensors=4)
    f = tmp_path / "luca-000001.safetensors"
    clock = Clock(time.time())
    scanner = CheckpointScanner(tmp_path, clock=clock)
    statuses = []
    for cut in (0, 5, 30, len(full) - 3, len(full)):
        f.write_bytes(full[:cut])
        clock.now += 1
        statuses.append(one(scanner.scan(), f.name).status)
    assert statuses == [CheckpointStatus.WRITING] * 4 + [CheckpointStatus.COMPLETE]
    assert one(scanner.scan(), f.name).step == 3


def test_no_padding_and_no_metadata(tmp_path: Path) -> None:
    f = tmp_path / "luca-000002.safetensors"
    write_safetensors(f, None, pad=False)
    c = one(CheckpointScanner(tmp_path).scan(), f.name)
    assert c.status is CheckpointStatus.COMPLETE and c.metadata == {}
    assert (c.epoch, c.step) == (2, None)


# ----------------------------------------------------------------------------- names


def test_classify_name() -> None:
    assert classify_name("luca_sdxl_v1-000002") == (CheckpointKind.EPOCH, "luca_sdxl_v1", 2)
    assert classify_name("luca_sdxl_v1-step00000500") == (CheckpointKind.STEP, "luca_sdxl_v1", 500)
    assert classify_name("at-step00000010") == (CheckpointKind.STEP, "at", 10)
    assert classify_name("luca_sdxl_v1") == (None, "luca_sdxl_v1", None)
    assert classify_name("luca-01") == (None, "luca-01", None)


def test_step_and_epoch_saves_sorted_with_metadata_epochs(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "luca-step00000002.safetensors", meta(0, 2))
    write_safetensors(tmp_path / "luca-000001.safetensors", meta(1, 3))
    write_safetensors(tmp_path / "luca-step00000004.safetensors", meta(1, 4))
    write_safetensors(tmp_path / "luca.safetensors", meta(3, 9))
    write_safetensors(tmp_path / "luca-step00000006.safetensors", meta(1, 6))
    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    scan = CheckpointScanner(tmp_path).scan()
    got = [(c.name, c.kind.value, c.epoch, c.step) for c in scan.checkpoints]
    assert got == [
        ("luca-step00000002.safetensors", "step", 1, 2),  # ss_epoch 0 = first epoch (0-based)
        ("luca-000001.safetensors", "epoch", 1, 3),
        ("luca-step00000004.safetensors", "step", 2, 4),
        ("luca-step00000006.safetensors", "step", 2, 6),
        ("luca-000002.safetensors", "epoch", 2, 6),
        ("luca.safetensors", "final", 3, 9),
    ]


def test_final_inferred_from_siblings_without_metadata(tmp_path: Path) -> None:
    for stem in ("luca-000002", "luca-000004", "luca", "notes"):
        write_safetensors(tmp_path / f"{stem}.safetensors", None)
    scan = CheckpointScanner(tmp_path).scan()
    assert scan.output_name == "luca"
    kinds = {c.name: c.kind for c in scan.checkpoints}
    assert kinds["luca.safetensors"] is CheckpointKind.FINAL
    assert kinds["notes.safetensors"] is CheckpointKind.OTHER
    assert [c.name for c in scan.checkpoints][:2] == [
        "luca-000002.safetensors",
        "luca-000004.safetensors",
    ]


def test_lone_file_final_only_by_metadata_or_name(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"ss_epoch": "12", "ss_num_epochs": "12"})
    write_safetensors(tmp_path / "b.safetensors", {"ss_epoch": "5", "ss_num_epochs": "12"})
    scan = CheckpointScanner(tmp_path).scan()
    assert {c.name: c.kind for c in scan.checkpoints} == {
        "a.safetensors": CheckpointKind.FINAL,
        "b.safetensors": CheckpointKind.OTHER,
    }
    scan = CheckpointScanner(tmp_path, output_name="b").scan()
    assert one(scan, "b.safetensors").kind is CheckpointKind.FINAL


def test_default_names_when_output_name_unset(tmp_path: Path) -> None:
    md = {"ss_output_name": "None"}
    write_safetensors(tmp_path / "epoch-000001.safetensors", md)
    write_safetensors(tmp_path / "last.safetensors", md)
    scan = CheckpointScanner(tmp_path).scan()
    assert scan.output_name is None
    assert one(scan, "last.safetensors").kind is CheckpointKind.FINAL


def test_ckpt_and_pt_files(tmp_path: Path) -> None:
    now = time.time()
    zpath = tmp_path / "luca-000001.ckpt"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 50)
        z.writestr("archive/data/0", os.urandom(4096))
    whole = zpath.read_bytes()
    cut = tmp_path / "luca-000002.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])
    legacy = tmp_path / "luca.pt"
    legacy.write_bytes(b"\x80\x02" + b"x" * 100)
    for p in (zpath, cut, legacy):
        age(p, 2, now)
    clock = Clock(now)
    scanner = CheckpointScanner(tmp_path, clock=clock)
    scan = scanner.scan()
    assert one(scan, zpath.name).status is CheckpointStatus.COMPLETE  # zip end record present
    assert one(scan, cut.name).status is CheckpointStatus.WRITING
    assert one(scan, legacy.name).status is CheckpointStatus.WRITING  # too fresh to trust
    assert one(scan, legacy.name).kind is CheckpointKind.FINAL
    assert one(scan, zpath.name).metadata == {}
    clock.now += 60
    scan = scanner.scan()
    assert one(scan, cut.name).status is CheckpointStatus.CORRUPT
    assert "zip archive without its end record" in (one(scan, cut.name).problem or "")
    assert one(scan, legacy.name).status is CheckpointStatus.COMPLETE


# ----------------------------------------------------------------------------- state dirs


def test_state_dirs_and_links(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    write_safetensors(tmp_path / "luca-step00000004.safetensors", meta(1, 4))
    write_safetensors(tmp_path / "luca.safetensors", meta(3, 9))
    for name, js in (
        ("luca-000002-state", {"current_epoch": 2, "current_step": 6}),
        ("luca-step00000004-state", {"current_epoch": 1, "current_step": 4}),
        ("luca-state", {"current_epoch": 3, "current_step": 9}),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_state.json").write_text(json.dumps(js))
    (tmp_path / "luca-000001-state").mkdir()  # killed before train_state.json
    (tmp_path / "luca-000003-state").mkdir()
    (tmp_path / "luca-000003-state" / "train_state.json").write_bytes(b'{"current_ep')
    scan = CheckpointScanner(tmp_path).scan()
    states = {s.name: (s.epoch, s.step, s.complete) for s in scan.states}
    assert states == {
        "luca-000001-state": (1, None, False),
        "luca-000002-state": (2, 6, True),
        "luca-000003-state": (3, None, False),
        "luca-step00000004-state": (1, 4, True),
        "luca-state": (3, 9, True),
    }
    links = {c.name: c.state_dir for c in scan.checkpoints}
    assert links == {
        "luca-step00000004.safetensors": str(tmp_path / "luca-step00000004-state"),
        "luca-000002.safetensors": str(tmp_path / "luca-000002-state"),
        "luca.safetensors": str(tmp_path / "luca-state"),
    }


# ----------------------------------------------------------------------------- samples


def test_parse_sample_name() -> None:
    assert parse_sample_name("luca_sdxl_v1_e000002_00_20260216101530_42") == (
        2,
        None,
        0,
        "20260216101530",
    )
    assert parse_sample_name("luca_sdxl_v1_000500_01_20260216101530") == (
        None,
        500,
        1,
        "20260216101530",
    )
    assert parse_sample_name("e000000_03_20260216101530") == (0, None, 3, "20260216101530")
    assert parse_sample_name("v1_000500_000600_02_20260216101530_-7") == (
        None,
        600,
        2,
        "20260216101530",
    )
    assert parse_sample_name("cover") == (None, None, None, None)


def test_samples(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    sample.mkdir()
    names = [
        "luca_e000002_00_20261128220000_42.png",
        "luca_000500_01_20261128210000.png",
        "luca_e000000_00_20261128200000.png",
        "random.png",
        "notes.txt",
    ]
    for n in names:
        (sample / n).write_bytes(b"\x89PNG")
    scanner = CheckpointScanner(tmp_path)
    scan = scanner.scan()
    got = [(s.name, s.epoch, s.step, s.prompt_index) for s in scan.samples]
    assert ("random.png", None, None, None) in got
    named = [g for g in got if g[0] != "random.png"]
    assert named == [
        ("luca_e000000_00_20261128200000.png", 0, None, 0),
        ("luca_000500_01_20261128210000.png", None, 500, 1),
        ("luca_e000002_00_20261128220000_42.png", 2, None, 0),
    ]
    (sample / "random.png").unlink()
    assert len(scanner.scan().samples) == 3
    (sample / "luca_000600_00_20261128213000.png").write_bytes(b"\x89PNG")
    assert [s.step for s in scanner.scan().samples] == [None, 500, 600, None]


# ----------------------------------------------------------------------------- evaluations


def _status_file(run: Path, stem: str, **fields: object) -> None:
    d = run / ".sdxl-tui" / "evals"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{stem}.json").write_text(json.dumps(fields))


def test_eval_folder_without_status_is_done(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "luca-000008.safetensors", meta(8, 80, 12))
    write_safetensors(tmp_path / "luca-000010.safetensors", meta(10, 100, 12))
    ev = tmp_path / "eval_epoch8"
    (ev / "grid").mkdir(parents=True)
    for n in ("b.png", "a.png"):
        (ev / n).write_bytes(b"\x89PNG")
    (ev / "grid" / "all.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "eval_epoch10").mkdir()  # started elsewhere, nothing yet
    write_safetensors(tmp_path / "luca.safetensors", meta(12, 120, 12))
    (tmp_path / "eval_epoch12").mkdir()
    (tmp_path / "eval_epoch12" / "x.webp").write_bytes(b"RIFF")
    scan = CheckpointScanner(tmp_path).scan()
    evs = {e.name: e for e in scan.evaluations}
    assert evs["eval_epoch12"].checkpoint == "luca.safetensors"  # the final file is epoch 12
    assert [e.name for e in scan.evaluations] == ["eval_epoch8", "eval_epoch10", "eval_epoch12"]
    assert evs["eval_epoch8"].status == "done"
    assert evs["eval_epoch8"].checkpoint == "luca-000008.safetensors"
    assert evs["eval_epoch8"].epoch == 8
    assert [os.path.relpath(p, ev) for p in evs["eval_epoch8"].images] == [
        "a.png",
        "b.png",
        os.path.join("grid", "all.jpg"),
    ]
    assert evs["eval_epoch10"].status == "unknown"
    assert one(scan, "luca-000008.safetensors").evaluation == "done"


def test_running_eval_whose_process_is_gone_is_failed(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(done.stdout)
    _status_file(tmp_path, "luca-000002", checkpoint="luca-000002.safetensors",
                 status="running", pid=dead_pid)  # fmt: skip
    scan = CheckpointScanner(tmp_path).scan()
    assert one(scan, "luca-000002.safetensors").evaluation == "failed"
    _status_file(tmp_path, "luca-000002", checkpoint="luca-000002.safetensors",
                 status="running", pid=os.getpid())  # fmt: skip
    assert one(CheckpointScanner(tmp_path).scan(), "luca-000002.safetensors").evaluation == (
        "running"
    )


def test_eval_status_files(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    write_safetensors(tmp_path / "luca-step00000004.safetensors", meta(1, 4))
    write_safetensors(tmp_path / "luca.safetensors", meta(3, 9))
    (tmp_path / "eval_epoch2").mkdir()
    (tmp_path / "eval_epoch2" / "0.png").write_bytes(b"\x89PNG")
    _status_file(
        tmp_path,
        "luca-000002",
        checkpoint=str(tmp_path / "luca-000002.safetensors"),
        output_dir=str(tmp_path / "eval_epoch2"),
        status="running",
        pid=os.getpid(),
    )
    _status_file(
        tmp_path,
        "luca-step00000004",
        checkpoint=str(tmp_path / "luca-step00000004.safetensors"),
        output_dir=str(tmp_path / "eval_luca-step00000004"),
        status="failed",
        exit_code=1,
    )
    _status_file(tmp_path, "luca", checkpoint="luca.safetensors", status="queued")
    d = tmp_path / ".sdxl-tui" / "evals"
    (d / "broken.json").write_bytes(b"{\xff")
    scanner = CheckpointScanner(tmp_path)
    scan = scanner.scan()
    evs = {e.name: e for e in scan.evaluations}
    assert evs["eval_epoch2"].status == "running"  # the file's status, the folder's images
    assert len(evs["eval_epoch2"].images) == 1
    assert evs["eval_luca-step00000004"].status == "failed"
    assert evs["eval_luca-step00000004"].images == ()
    assert evs["eval_luca"].status == "queued" and evs["eval_luca"].epoch == 3
    assert {c.name: c.evaluation for c in scan.checkpoints} == {
        "luca-step00000004.safetensors": "failed",
        "luca-000002.safetensors": "running",
        "luca.safetensors": "queued",
    }
    assert any("broken.json" in p for p in scan.problems)
    _status_file(
        tmp_path,
        "luca-000002",
        checkpoint="luca-000002.safetensors",
        output_dir="eval_epoch2",
        status="done",
    )
    assert one(scanner.scan(), "luca-000002.safetensors").evaluation == "done"


# ----------------------------------------------------------------------------- robustness


def test_missing_run_dir_then_created(tmp_path: Path) -> None:
    run = tmp_path / "out"
    scanner = CheckpointScanner(run)
    scan = scanner.scan()
    assert scan.checkpoints == () and scan.problems == (f"run directory not found: {run}",)
    run.mkdir()
    write_safetensors(run / "luca-000001.safetensors", meta(1, 3))
    scan = scanner.scan()
    assert [c.epoch for c in scan.checkpoints] == [1] and scan.problems == ()
    shutil.rmtree(run)
    assert scanner.scan().checkpoints == ()


def test_run_dir_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("")
    assert CheckpointScanner(f).scan().problems == (f"not a directory: {f}",)


def test_symlinks_loops_and_broken_links(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.bin"
    write_safetensors(real, meta(1, 3))
    run = tmp_path / "run"
    run.mkdir()
    (run / "luca-000001.safetensors").symlink_to(real)
    (run / "loop.safetensors").symlink_to(run / "loop.safetensors")
    (run / "gone.safetensors").symlink_to(tmp_path / "nothing")
    (run / "sample").symlink_to(run)  # a folder loop must not recurse
    (run / "eval_epoch1").symlink_to(run)
    scan = CheckpointScanner(run).scan()
    assert [c.name for c in scan.checkpoints] == ["luca-000001.safetensors"]
    assert scan.checkpoints[0].status is CheckpointStatus.COMPLETE
    assert any(p.startswith("cannot stat loop.safetensors") for p in scan.problems)
    assert "broken symlink: gone.safetensors" in scan.problems
    assert [e.name for e in scan.evaluations] == ["eval_epoch1"]


def test_file_vanishing_during_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_safetensors(tmp_path / "luca-000001.safetensors", meta(1, 3))
    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    real_scandir = os.scandir

    class Listing:
        """os.scandir whose listing is taken before a file is removed (the race)."""

        def __init__(self, path: str) -> None:
            with real_scandir(path) as it:
                self.entries = list(it)
            if path == str(tmp_path):
                (tmp_path / "luca-000001.safetensors").unlink()

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(os, "scandir", Listing)
    scan = CheckpointScanner(tmp_path).scan()
    assert [c.name for c in scan.checkpoints] == ["luca-000002.safetensors"]
    assert scan.problems == ()


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores file modes, so the OS refusal is played at the open() boundary."""
    locked = tmp_path / "luca-000001.safetensors"
    write_safetensors(locked, meta(1, 3))
    write_safetensors(tmp_path / "luca-000002.safetensors", meta(2, 6))
    import builtins

    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    scanner = CheckpointScanner(tmp_path)
    scan = scanner.scan()
    c = one(scan, locked.name)
    assert c.status is CheckpointStatus.CORRUPT and c.problem == "cannot read: permission denied"
    assert c.epoch == 1
    assert one(scan, "luca-000002.safetensors").status is CheckpointStatus.COMPLETE
    assert "cannot read luca-000001.safetensors: permission denied" in scan.problems
    monkeypatch.setattr(builtins, "open", real_open)  # access granted later: read it now
    assert one(scanner.scan(), locked.name).status is CheckpointStatus.COMPLETE


def test_replaced_file_is_reread(tmp_path: Path) -> None:
    f = tmp_path / "luca-000001.safetensors"
    write_safetensors(f, meta(1, 3))
    scanner = CheckpointScanner(tmp_path)
    assert one(scanner.scan(), f.name).step == 3
    write_safetensors(tmp_path / "new.tmp", meta(1, 5), tensors=3)
    os.replace(tmp_path / "new.tmp", f)  # a resumed run saves the same name again
    assert one(scanner.scan(), f.name).step == 5


def test_scan_never_writes(tmp_path: Path, real_run: Path) -> None:
    def listing(root: Path) -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}

    before = listing(real_run)
    CheckpointScanner(real_run).scan()
    assert listing(real_run) == before
    assert not (real_run / ".sdxl-tui").exists()


def test_metadata_mapping_is_read_only(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "luca-000001.safetensors", {"ss_epoch": "1", "odd": 5})  # type: ignore[dict-item]
    c = CheckpointScanner(tmp_path).scan().checkpoints[0]
    assert isinstance(c.metadata, MappingProxyType)
    assert c.metadata["odd"] == "5"


@pytest.mark.slow  # about 1 s: the simulator writes three LoRA files and state dirs
def test_simulated_run(tmp_path: Path) -> None:
    """A run written by the simulator (real formats) reads like the real one."""
    from sdxl_tui import sim
    out = tmp_path / "out"
    rc = sim.run_simulated(
        str(out),
        [
            "--output_dir", str(out),
            "--output_name", "luca",
            "--max_train_epochs", "3",
            "--save_every_n_epochs", "1",
            "--save_state",
            "--network_dim", "4",
            "--network_train_unet_only",
            "--sim-step-seconds", "0",
            "--sim-startup-seconds", "0",
            "--sim-batches-per-epoch", "2",
        ],
    )  # fmt: skip
    assert rc == 0
    scan = CheckpointScanner(out).scan()
    assert [(c.name, c.kind, c.epoch) for c in scan.checkpoints] == [
        ("luca-000001.safetensors", CheckpointKind.EPOCH, 1),
        ("luca-000002.safetensors", CheckpointKind.EPOCH, 2),
        ("luca.safetensors", CheckpointKind.FINAL, 3),
    ]
    assert all(c.status is CheckpointStatus.COMPLETE for c in scan.checkpoints)
    steps = [c.step for c in scan.checkpoints]
    assert steps == sorted(steps) and steps[-1] is not None
    assert scan.checkpoints[-1].metadata["ss_output_name"] == "luca"
    assert {s.name for s in scan.states} == {
        "luca-000001-state",
        "luca-000002-state",
        "luca-state",
    }
    assert all(s.complete for s in scan.states)
    assert [c.state_dir for c in scan.checkpoints] == [
        str(out / "luca-000001-state"),
        str(out / "luca-000002-state"),
        str(out / "luca-state"),
    ]


def test_scan_while_the_simulator_writes_in_place(tmp_path: Path) -> None:
    """Scans between the simulator's write chunks: WRITING until the last byte, then COMPLETE."""
    lorafile = pytest.importorskip("sdxl_tui.sim.lorafile")
    specs = lorafile.tensor_specs(rank=4)
    target = tmp_path / "luca-000001.safetensors"
    scanner = CheckpointScanner(tmp_path)
    seen: list[tuple[CheckpointStatus, int | None]] = []

    def scan_instead_of_sleeping(_seconds: float) -> None:
        c = one(scanner.scan(), target.name)
        seen.append((c.status, c.epoch))

    size = lorafile.write_lora(
        target,
        specs,
        meta(1, 3),
        alpha=2.0,
        seed=1,
        seconds=1.0,
        chunk=64 * 1024,
        sleep=scan_instead_of_sleeping,
    )
    assert len(seen) >= 3
    assert {s for s, _ in seen} == {CheckpointStatus.WRITING}
    assert all(e == 1 for _, e in seen)
    final = one(scanner.scan(), target.name)
    assert final.status is CheckpointStatus.COMPLETE and final.size == size
    assert final.metadata["ss_steps"] == "3"


# --------------------------------------------------------------------------- header fast path


def _full_parse(raw: bytes, size: int):
    """The verdict of the full JSON parse (the fast path switched off)."""
    from sdxl_tui.formats import safetensors as st

    saved = st._fast_header
    st._fast_header = lambda text: None
    try:
        return st._parse_header(raw, size, len(raw), True)
    finally:
        st._fast_header = saved


def _entry(name: str, start: int, end: int, shape: str = "[4,10]") -> str:
    return f'"{name}":{{"dtype":"F16","shape":{shape},"data_offsets":[{start},{end}]}}'


@pytest.mark.parametrize(
    "text",
    [
        # the usual layout: metadata first, compact entries, space padding
        '{"__metadata__":{"ss_epoch":"3","n":5},' + _entry("a.alpha", 0, 2, "[]") + "," + _entry("b", 2, 82) + "}   ",
        # no metadata; metadata only; empty object; metadata null
        "{" + _entry("a", 0, 8) + "}",
        '{"__metadata__":{"x":"y"}}',
        "{}",
        '{"__metadata__":null,' + _entry("a", 0, 8) + "}",
        # non-ASCII names and metadata (UTF-8), other padding characters
        '{"__metadata__":{"t":"caf\u00e9 \u2603"},' + _entry("l\u00e9\u2603.alpha", 0, 2) + "," + _entry("b", 2, 82) + "}\n\t ",
        '{"__metadata__":{"t":"\u00e9"},' + _entry("\u00e9", 0, 2) + "," + _entry("\u00e9", 2, 82) + "}",
        # largest end not in the last entry
        '{"__metadata__":{},' + _entry("a", 8, 100) + "," + _entry("b", 0, 8) + "}",
        # the full parser's cases: bad offsets, negative, reversed, floats, duplicate names,
        # escapes, whitespace, other key order, a tensor named __metadata__, extra keys
        '{"__metadata__":{},' + _entry("a", 8, 4) + "}",
        '{"__metadata__":{},' + _entry("a", -1, 4) + "}",
        '{"__metadata__":{},"a":{"dtype":"F16","shape":[4],"data_offsets":[0.5,4]}}',
        '{"__metadata__":{},' + _entry("a", 0, 4) + "," + _entry("a", 0, 400) + "}",
        '{"__metadata__":{},' + _entry('a\\"b', 0, 4) + "}",
        '{"__metadata__": {}, ' + _entry("a", 0, 4) + "}",
        '{"__metadata__":{},"a":{"shape":[4],"dtype":"F16","data_offsets":[0,4]}}',
        '{"__metadata__":{},' + _entry("__metadata__", 0, 4) + "}",
        '{"__metadata__":{},"a":{"dtype":"F16","shape":[4],"data_offsets":[0,4],"x":1}}',
        '{"__metadata__":[1],' + _entry("a", 0, 4) + "}",
        # broken JSON the fast path must not accept
        '{"__metadata__":{},' + _entry("a", 0, 4) + "," + _entry("b", 4, 8)[:-1] + "}",
        '{"__metadata__":{},' + _entry("a", 0, 4) + _entry("b", 4, 8) + "}",
        '{"__metadata__":{},' + _entry("a", 0, 4) + ",}",
        '{"__metadata__":{},' + _entry("a", 0, 4).replace("[4,10]", "[4,,10]") + "}",
        '{"__metadata__":{},' + _entry("a", 0, 4).replace("[0,4]", "[00,4]") + "}",
        '{"__metadata__":{},' + _entry("a\x01", 0, 4) + "}",
        '{"__metadata__":{},' + _entry("a", 0, 4) + "}}",
        '{"__metadata__":{},' + _entry("a", 0, 4),
        '{"__metadata__":{"x":"y",' + _entry("a", 0, 4) + "}",
    ],
)
def test_header_fast_path_gives_the_full_parse_verdict(text: str) -> None:
    from sdxl_tui.formats.safetensors import _parse_header

    raw = text.encode()
    for data_len in (0, 8, 82, 100, 400, 1000):
        size = 8 + len(raw) + data_len
        assert _parse_header(raw, size, len(raw), True) == _full_parse(raw, size), (text, data_len)


def test_header_fast_path_taken_on_real_files_and_equal_to_the_full_parse(real_run: Path) -> None:
    from sdxl_tui.formats.safetensors import _fast_header, _parse_header

    for path in sorted(real_run.glob("*.safetensors")):
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        raw = data[8 : 8 + n]
        assert _fast_header(raw.decode()) is not None
        for size in (len(data), len(data) - 1, len(data) + 1):
            assert _parse_header(raw, size, n, True) == _full_parse(raw, size)
