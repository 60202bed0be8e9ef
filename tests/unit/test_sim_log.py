"""training.log of the simulator vs the reference and the real log: RichHandler columns at 80
cells, blanked repeated times, 29-space continuation, quoted lines, tqdm bars redrawn with
``\\r`` and no newline, epoch/saving lines, the end of the run, and stdout buffering."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from sdxl_tui.sim import run_simulated
from tests.oracles import (
    POSTFIX_NUM_RE,
    QUOTED,
    RECORD_MESSAGES,
    RICH_CONT_RE,
    RICH_FIRST_RE,
    TQDM_RE,
    log_lines,
    parse_records,
    real_dataset_config,
    real_launch_args,
    record_messages,
    segments,
    squash,
)

FAST = ["--sim-step-seconds", "0", "--sim-startup-seconds", "0"]


def cells(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


@pytest.fixture(scope="module")
def real_shape(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    tmp = tmp_path_factory.mktemp("log")
    out = tmp / "out"
    args = real_launch_args(out, real_dataset_config(tmp)) + FAST + ["--max_data_loader_n_workers", "2"]
    assert run_simulated(out, args, unbuffered=True) == 0
    return (out / "training.log").read_bytes()


@pytest.fixture(scope="module")
def real_log(real_run: Path) -> bytes:
    return (real_run / "training.log").read_bytes()


def _check_rich_layout(data: bytes) -> int:
    """Shared by the real log and ours: every record line is 80 cells wide."""
    n = 0
    in_record = False
    for line in log_lines(data):
        m = RICH_FIRST_RE.match(line)
        if m:
            assert cells(line) == 80, line
            in_record = True
            n += 1
        elif in_record and RICH_CONT_RE.match(line) and cells(line) == 80:
            continue
        else:
            in_record = False
    return n


def test_rich_layout_same_as_real(real_shape: bytes, real_log: bytes) -> None:
    assert _check_rich_layout(real_log) > 40
    assert _check_rich_layout(real_shape) > 40


def test_record_sources_and_messages_follow_the_real_log(real_shape: bytes, real_log: bytes) -> None:
    mine = parse_records(log_lines(real_shape))
    real = parse_records(log_lines(real_log))
    assert [r.source for r in mine] == [r.source for r in real]
    assert [r.level for r in mine] == [r.level for r in real]
    differ = [
        (a.message, b.message) for a, b in zip(mine, real) if squash(a.message) != squash(b.message)
    ]
    # only paths (run/dataset dirs) and the device differ
    for a, b in differ:
        assert re.search(r"/|device", a) and re.search(r"/|device", b), (a, b)
    assert len(differ) <= 8


def test_blanked_times(real_shape: bytes, real_log: bytes) -> None:
    for data in (real_shape, real_log):
        last = None
        for rec in parse_records(log_lines(data)):
            if rec.message.startswith("epoch is incremented"):
                continue  # DataLoader workers: separate processes with their own handler
            if rec.time is not None:
                assert rec.time != last, "a repeated time must be blanked"
                last = rec.time


def test_quoted_lines_and_running_block(real_shape: bytes) -> None:
    lines = log_lines(real_shape)
    start = lines.index("running training / 学習開始")
    block = lines[start : start + 9]
    order = ["running", "num_train", "num_val", "num_reg", "num_batches", "num_epochs", "batch_size", "grad_accum", "total_steps"]
    for key, line in zip(order, block):
        assert QUOTED[key].match(line), (key, line)
    for key in ("override", "epoch", "saving", "device", "import", "prepare"):
        assert any(QUOTED[key].match(ln) for ln in lines), key
    msgs = record_messages(real_shape)
    for key in ("model_saved", "epoch_incremented", "dataset_config", "train_images", "reg_images", "no_reg",
                "bucket", "create_network", "enable_unet", "unet_dtype"):
        assert any(RECORD_MESSAGES[key].match(m) for m in msgs), key


def test_epoch_lines_and_saving_lines(real_shape: bytes, real_log: bytes) -> None:
    for data in (real_shape, real_log):
        text = data.decode("utf-8")
        assert re.findall(r"\nepoch (\d+)/3\n\n", text) == ["1", "2", "3"]
        saves = re.findall(r"\nsaving checkpoint: (\S+)\n", text)
        assert [Path(s).name for s in saves] == ["tiny_lora-000001.safetensors", "tiny_lora-000002.safetensors", "tiny_lora.safetensors"]
        # two DataLoader workers, each logs once per epoch
        msgs = [squash(m) for m in record_messages(data)]
        for e in (1, 2, 3):
            assert msgs.count(squash(f"epoch is incremented. current_epoch: 0, epoch: {e}")) == 2


def test_steps_bar_is_cr_redrawn_without_newlines(real_shape: bytes, real_log: bytes) -> None:
    for data in (real_shape, real_log):
        text = data.decode("utf-8")
        for m in re.finditer(r"steps: +\d+%\|", text):
            assert text[m.start() - 1] == "\r"
        bars = [(t, term) for t, term in segments(data) if t.startswith("steps:")]
        assert bars[0][0].rstrip() == "steps:   0%|          | 0/9 [00:00<?, ?it/s]"
        for t, _ in bars:
            m = TQDM_RE.match(t.rstrip(" "))
            assert m, t
            if m["postfix"]:
                key, _, value = m["postfix"].partition("=")
                assert key == "avr_loss" and POSTFIX_NUM_RE.match(value), t
        # the bar only ends a line when something else (stdout, a record) follows or it closes
        last = bars[-1]
        assert last[0].startswith("steps: 100%|██████████| 9/9") and last[1] == "\n"
        assert text.endswith(last[0] + "\n")


def test_run_ends_with_model_saved_then_closing_bar(real_shape: bytes, real_log: bytes) -> None:
    for data in (real_shape, real_log):
        lines = [ln for ln in data.decode("utf-8").split("\n") if ln]
        assert lines[-3] .startswith("saving checkpoint: ")
        assert RICH_FIRST_RE.match(lines[-2]) and "model saved." in lines[-2]
        assert lines[-1].startswith("\rsteps: 100%")


def test_caching_and_caption_bars_close_with_newline(real_shape: bytes) -> None:
    text = real_shape.decode("utf-8")
    assert re.search(r"\rread caption: 100%\|██████████\| 6/6 \[[^\]]*\]\n", text)
    assert re.search(r"\r  0%\|          \| 0/6 \[00:00<\?, \?it/s\]", text)


def _first(lines: list[str], pred) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, ln in enumerate(lines) if pred(ln))


def test_block_buffered_stdout_is_late_like_python(tmp_path: Path) -> None:
    """Buffered (no PYTHONUNBUFFERED): the running-training block reaches the file only when the
    steps bar is created, i.e. after the records that followed it; unbuffered keeps the order."""
    res = {}
    for unbuffered in (False, True):
        out = tmp_path / f"u{int(unbuffered)}"
        assert run_simulated(out, ["--max_train_epochs", "1", "--sim-batches-per-epoch", "2", *FAST], unbuffered=unbuffered) == 0
        lines = log_lines((out / "training.log").read_bytes())
        running = _first(lines, lambda ln: ln == "running training / 学習開始")
        unet = _first(lines, lambda ln: "unet dtype:" in ln)
        device = _first(lines, lambda ln: ln == "accelerator device: cuda")
        loading = _first(lines, lambda ln: "loading model for process" in ln)
        res[unbuffered] = (running < unet, device < loading)
    assert res[True] == (True, True)
    assert res[False] == (False, False)


def test_nan_postfix(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--max_train_epochs", "2", "--sim-batches-per-epoch", "4", "--sim-fault", "nan", "--sim-fault-step", "3", *FAST]
    assert run_simulated(out, args) == 0
    bars = [t for t, _ in segments((out / "training.log").read_bytes()) if t.startswith("steps:")]
    post = [re.search(r"avr_loss=([^\]]+)\]", b) for b in bars]
    values = [p.group(1) for p in post if p]
    first = values.index("nan")
    assert first > 0 and all(v == "nan" for v in values[first:])
    assert (out / "last.safetensors").exists()  # training continues and saves on NaN


def test_console_log_simple_and_file(tmp_path: Path) -> None:
    out = tmp_path / "simple"
    args = ["--max_train_epochs", "1", "--sim-batches-per-epoch", "2", "--clip_skip", "2", "--console_log_simple", *FAST]
    assert run_simulated(out, args, unbuffered=True) == 0
    lines = log_lines((out / "training.log").read_bytes())
    # the argument warning predates setup_logging: still a RichHandler record
    assert any(RICH_FIRST_RE.match(ln) and "WARNING" in ln for ln in lines)
    assert "model saved." in lines and "prepare images." in lines
    assert not any(RICH_FIRST_RE.match(ln) and "model saved." in ln for ln in lines)

    out2 = tmp_path / "file"
    console_file = tmp_path / "console.log"
    args2 = ["--max_train_epochs", "1", "--sim-batches-per-epoch", "2", "--console_log_file", str(console_file),
             "--console_log_level", "WARNING", *FAST]
    assert run_simulated(out2, args2) == 0
    text = console_file.read_text("utf-8")
    assert "no regularization images / 正則化画像が見つかりませんでした" in text and "model saved." not in text
    assert "model saved." not in (out2 / "training.log").read_bytes().decode()
