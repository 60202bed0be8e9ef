"""LogTail: byte-offset tail with \\r/\\n splitting, rotation, truncation and big-file windows."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from sdxl_tui.sources.logtail import LogTail, strip_escapes
from tests.helpers.unprivileged import run_python


def _append(p: Path, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def test_splits_on_cr_and_lf_and_buffers_the_partial_segment(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"hello\n\rsteps:   0%| 0/9\rsteps:  11%| 1/9")
    with LogTail(p) as t:
        r = t.read()
        assert r.segments == (("hello", "\n"), ("", "\r"), ("steps:   0%| 0/9", "\r"))
        assert r.pending_bytes == len(b"steps:  11%| 1/9")
        _append(p, b" [00:22<02:57]\nepoch 1/3\n")
        r = t.read()
        assert r.segments == (("steps:  11%| 1/9 [00:22<02:57]", "\n"), ("epoch 1/3", "\n"))
        assert t.read().segments == ()


def test_escapes_stripped_and_bad_bytes_replaced(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"\x1b[31mred\x1b[0m text\n\x1b[A\rbar\n\xff\xfeok \xe5\xad\n")
    r = LogTail(p).read()
    assert r.segments[0] == ("red text", "\n")
    assert r.segments[1] == ("", "\r") and r.segments[2] == ("bar", "\n")
    assert r.segments[3][0] == "\ufffd\ufffdok \ufffd"
    assert strip_escapes("a\x1b]0;title\x07b\x1b[2Kc") == "abc"


def test_utf8_character_split_across_writes(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    word = "学習開始".encode()
    p.write_bytes(b"running training / " + word[:4])
    t = LogTail(p)
    assert t.read().segments == ()
    _append(p, word[4:] + b"\n")
    assert t.read().segments == (("running training / 学習開始", "\n"),)


def test_zero_byte_file_then_growth(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"")
    t = LogTail(p)
    r = t.read()
    assert r.segments == () and not r.missing and r.problems == () and r.size == 0
    _append(p, b"a\n")
    assert t.read().segments == (("a", "\n"),)


def test_missing_then_created_deleted_and_recreated(tmp_path: Path) -> None:
    d = tmp_path / "run"
    p = d / "training.log"
    t = LogTail(p)
    r = t.read()
    assert r.missing and r.problems == () and r.segments == ()
    d.mkdir()
    p.write_bytes(b"one\ntwo")
    r = t.read()
    assert not r.missing and r.segments == (("one", "\n"),)
    shutil.rmtree(d)
    r = t.read()
    assert r.missing and r.rotated and r.drained_segments == (("two", ""),)  # the old file's end
    d.mkdir()
    p.write_bytes(b"fresh\n")
    r = t.read()
    assert r.segments == (("fresh", "\n"),) and not r.missing


def test_truncated_below_offset_restarts_at_zero(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"old line one\nold line two\n")
    t = LogTail(p)
    t.read()
    with open(p, "wb") as f:  # `> training.log` again: same inode, size 0
        f.write(b"new\n")
    r = t.read()
    assert r.truncated and not r.rotated and r.segments == (("new", "\n"),)


def test_rotated_drains_old_then_reads_new_from_zero(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"a\n")
    t = LogTail(p)
    assert t.read().segments == (("a", "\n"),)
    _append(p, b"b\nc-partial")
    os.rename(p, tmp_path / "training.log.1")  # rotation: the old file got the last writes
    p.write_bytes(b"new file\n")
    r = t.read()
    assert r.rotated and not r.truncated
    assert r.drained_segments == (("b", "\n"), ("c-partial", ""))
    assert r.segments == (("new file", "\n"),)


def test_symlink_followed_and_retarget_is_a_rotation(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"from a\n")
    b.write_bytes(b"from b\n")
    link = tmp_path / "training.log"
    link.symlink_to(a)
    t = LogTail(link)
    assert t.read().segments == (("from a", "\n"),)
    link.unlink()
    link.symlink_to(b)
    r = t.read()
    assert r.rotated and r.segments == (("from b", "\n"),)
    link.unlink()
    link.symlink_to(tmp_path / "nowhere.log")  # dangling
    assert t.read().missing


def test_directory_in_place_of_the_log_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "training.log").mkdir()
    r = LogTail(tmp_path / "training.log").read()
    assert r.problems == ("cannot read training.log: it is a directory",)


def test_permission_denied_is_a_problem_not_a_traceback() -> None:
    base = Path(tempfile.mkdtemp(prefix="sdxl-tui-logperm-"))
    try:
        base.chmod(0o755)
        p = base / "training.log"
        p.write_bytes(b"secret\n")
        p.chmod(0o000)
        code = (
            "from sdxl_tui.sources.logtail import LogTail\n"
            f"r = LogTail({str(p)!r}).read()\n"
            "print(r.missing, r.segments, r.problems)\n"
        )
        out = run_python(code)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "False () ('cannot read training.log: permission denied',)"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_huge_line_without_newline_is_cut_not_held(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    cap = 1 << 20
    p.write_bytes(b"start\n" + b"x" * (3 * cap))  # small enough for the plain path
    t = LogTail(p, initial_tail_bytes=8 << 20, head_bytes=1 << 20, max_line_bytes=cap)
    r = t.read()
    assert r.segments[0] == ("start", "\n")
    assert r.segments[1] == ("x" * cap, "") and len(r.segments) == 2
    assert r.pending_bytes == 0 and r.dropped_bytes == 2 * cap
    _append(p, b"yyy more of it\rsteps: 1/9\n")
    r = t.read()
    assert r.segments == (("steps: 1/9", "\n"),)  # the rest of the long line is dropped


def test_50mb_line_first_read_is_fast_and_bounded(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    with open(p, "wb") as f:
        f.write(b"head line\n")
        block = b"z" * (1 << 20)
        f.writelines(block for _ in range(50))
    t = LogTail(p)
    t0 = time.perf_counter()
    r = t.read()
    took = time.perf_counter() - t0
    assert r.head_segments == (("head line", "\n"),)
    assert sum(len(s[0]) for s in r.segments) <= 2 << 20
    assert r.skipped_bytes > 40 << 20 and r.segments[0][1] == "skip"
    assert r.pending_bytes == 0
    assert took < 1.0, took  # generous: reading everything would take far longer
    _append(p, b"\nnext line\n")
    assert t.read().segments == (("next line", "\n"),)


def test_big_file_first_read_uses_head_and_tail_windows(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    head = b"running training / x\n  num epochs / epoch: 3\n"
    middle = (b"\rsteps:  50%| 5/9 [00:01<00:01, 1.00s/it, avr_loss=0.5]" * 40 + b"\nMIDDLE-MARK\n") * 2000
    tail = b"saving checkpoint: /out/x-000002.safetensors\n\rsteps:  67%| 6/9 [00:02<00:01"
    p.write_bytes(head + middle + tail)
    t = LogTail(p, initial_tail_bytes=64 << 10, head_bytes=4 << 10)
    r = t.read()
    assert r.head_segments[:2] == (("running training / x", "\n"), ("  num epochs / epoch: 3", "\n"))
    texts = [s[0] for s in r.segments]
    assert texts[0].startswith("[… ") and r.segments[0][1] == "skip"
    assert "saving checkpoint: /out/x-000002.safetensors" in texts
    assert r.skipped_bytes > p.stat().st_size - (64 << 10) - (4 << 10) - 200
    assert r.offset == p.stat().st_size and r.pending_bytes == len(b"steps:  67%| 6/9 [00:02<00:01")
    assert sum(len(x) for x in texts) < 70 << 10


def test_burst_far_bigger_than_a_refresh_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "training.log"
    p.write_bytes(b"start\n")
    t = LogTail(p, initial_tail_bytes=16 << 10, head_bytes=1 << 10)
    t.read()
    _append(p, b"filler line\n" * 20000 + b"latest\n")
    r = t.read()
    assert r.skipped_bytes > 0 and r.segments[0][1] == "skip" and r.segments[-1] == ("latest", "\n")


def test_real_log_read_in_random_pieces_equals_one_read(tmp_path: Path, real_run: Path) -> None:
    data = (real_run / "training.log").read_bytes()
    before = ((real_run / "training.log").stat().st_size, (real_run / "training.log").stat().st_mtime_ns)
    whole = LogTail(real_run / "training.log").read()
    assert whole.pending_bytes == 0 and whole.problems == ()
    assert ((real_run / "training.log").stat().st_size, (real_run / "training.log").stat().st_mtime_ns) == before
    p = tmp_path / "training.log"
    p.write_bytes(b"")
    t = LogTail(p)
    got = []
    import random

    rnd = random.Random(3)
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 700)
        _append(p, data[pos : pos + n])
        pos += n
        got.extend(t.read().segments)
    assert tuple(got) == whole.segments
    assert ("running training / 学習開始", "\n") in got
    assert sum(1 for s in got if s[1] == "\r") > 30


@pytest.mark.slow
def test_live_sim_process_tailed_while_writing(tmp_path: Path) -> None:
    """Tail the log of a real simulated trainer process while it writes; nothing is lost."""
    from sdxl_tui.sim import start_simulated

    run = tmp_path / "run"
    args = ["--output_name", "luca", "--max_train_epochs", "2", "--gradient_accumulation_steps", "2",
            "--sim-step-seconds", "0.03", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "6",
            "--logging_dir", str(run / "logs")]
    proc = start_simulated(run, args)
    got: list[tuple[str, str]] = []
    t = LogTail(run / "training.log")
    try:
        while proc.poll() is None:
            r = t.read()
            assert r.problems == () and not r.truncated and not r.rotated
            got.extend(s for s in r.segments if s[1] != "partial")
            time.sleep(0.02)
        got.extend(s for s in t.read().segments if s[1] != "partial")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    whole = LogTail(run / "training.log").read().segments
    assert tuple(got) == tuple(s for s in whole if s[1] != "partial")
    assert any(s[0].startswith("steps:") for s in got)


def test_fifo_in_place_of_the_log_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "training.log"
    os.mkfifo(fifo)
    r = LogTail(fifo).read()
    assert r.problems == ("cannot read training.log: not a regular file",)
