"""TensorBoard output of the simulator, read by an independent TFRecord/protobuf parser
(tests/oracles.py) and by tbparse, compared with the real run's event file."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

from sdxl_tui.sim import run_simulated
from tests.oracles import (
    EVENT_FILE_RE,
    FramingError,
    read_events,
    read_tfrecords,
    real_dataset_config,
    real_launch_args,
    scalar_points,
)

FAST = ["--sim-step-seconds", "0", "--sim-startup-seconds", "0"]


def _event_file(out: Path) -> Path:
    files = sorted(out.glob("logs/*/network_train/events.out.tfevents.*"))
    assert len(files) == 1, files
    return files[0]


@pytest.fixture(scope="module")
def real_shape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tb")
    out = tmp / "out"
    assert run_simulated(out, real_launch_args(out, real_dataset_config(tmp)) + FAST) == 0
    return out


@pytest.fixture(scope="module")
def both_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tb2") / "out"
    args = [
        "--output_name", "luca", "--network_dim", "8", "--network_alpha", "4",
        "--unet_lr", "3e-4", "--text_encoder_lr", "2.01e-4", "--learning_rate", "3e-4",
        "--max_train_epochs", "4", "--gradient_accumulation_steps", "3",
        "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "2", "--lr_warmup_steps", "3",
        "--logging_dir", str(out / "logs"), "--log_prefix", "luca_", "--sim-batches-per-epoch", "7", *FAST,
    ]
    assert run_simulated(out, args) == 0
    return out


def test_layout_matches_real(real_shape: Path, real_run: Path) -> None:
    ev = _event_file(real_shape)
    real = _event_file(real_run)
    assert re.fullmatch(r"\d{14}", ev.parent.parent.name)
    assert ev.parent.name == real.parent.name == "network_train"
    m = EVENT_FILE_RE.match(ev.name)
    assert m and m.group(4) == "0"
    assert EVENT_FILE_RE.match(real.name)


def test_log_prefix_has_no_separator(both_parts: Path) -> None:
    ev = min(both_parts.glob("logs/*/network_train/events.out.tfevents.*"))
    assert re.fullmatch(r"luca_\d{14}", ev.parent.parent.name)


def test_framing_crc_and_first_event_like_real(real_shape: Path, real_run: Path) -> None:
    mine = read_events(_event_file(real_shape))
    real = read_events(_event_file(real_run))
    assert mine[0].file_version == real[0].file_version == "brain.Event:2"
    assert mine[0].writer == real[0].writer
    assert mine[0].field_numbers == real[0].field_numbers
    # scalar events carry the same fields (wall_time, step when non-zero, summary)
    assert {tuple(e.field_numbers) for e in mine[1:]} == {tuple(e.field_numbers) for e in real[1:]}
    assert all(len(e.scalars) == 1 for e in mine[1:])


def test_corrupted_crc_is_detected_by_oracle(real_shape: Path, tmp_path: Path) -> None:
    data = bytearray(_event_file(real_shape).read_bytes())
    data[30] ^= 0xFF
    bad = tmp_path / "events.out.tfevents.1.x.1.0"
    bad.write_bytes(bytes(data))
    with pytest.raises(FramingError):
        read_tfrecords(bad)


def test_tags_steps_and_accumulation_points_equal_real(real_shape: Path, real_run: Path) -> None:
    mine = scalar_points(_event_file(real_shape))
    real = scalar_points(_event_file(real_run))
    assert list(mine) == list(real) == ["loss/current", "loss/average", "lr/unet", "lr/group0", "loss/epoch_average"]
    for tag in real:
        assert [s for s, _ in mine[tag]] == [s for s, _ in real[tag]], tag
    assert [s for s, _ in real["loss/current"]] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9]
    assert [s for s, _ in mine["loss/epoch_average"]] == [1, 2, 3]


def test_lr_schedule_values_equal_real(real_shape: Path, real_run: Path) -> None:
    mine = scalar_points(_event_file(real_shape))
    real = scalar_points(_event_file(real_run))
    for tag in ("lr/unet", "lr/group0"):
        assert [v for _, v in mine[tag]] == pytest.approx([v for _, v in real[tag]], rel=1e-6, abs=1e-12)


def test_epoch_average_is_last_average_of_epoch(real_shape: Path) -> None:
    evs = [e for e in read_events(_event_file(real_shape)) if e.scalars]
    last_avg = None
    for e in evs:
        tag, value = e.scalars[0]
        if tag == "loss/average":
            last_avg = value
        if tag == "loss/epoch_average":
            assert value == last_avg


def test_both_parts_lr_tags_and_k_points_per_step(both_parts: Path) -> None:
    pts = scalar_points(min(both_parts.glob("logs/*/network_train/events.*")))
    assert list(pts) == ["loss/current", "loss/average", "lr/textencoder", "lr/unet", "lr/group1", "loss/epoch_average"]
    steps = [s for s, _ in pts["loss/current"]]
    # 7 batches/epoch, accumulation 3 -> 3 optimizer steps per epoch (3+3+1 micro-batches)
    assert steps[:7] == [0, 0, 1, 1, 1, 2, 3]
    assert len(steps) == 28 and max(steps) == 12
    te = dict(pts["lr/textencoder"])
    unet = dict(pts["lr/unet"])
    assert te[0] == 0.0 and unet[0] == 0.0  # warmup starts at 0
    assert te[3] == pytest.approx(2.01e-4, rel=1e-6) and unet[3] == pytest.approx(3e-4, rel=1e-6)
    assert dict(pts["lr/group1"]) == unet
    # cosine with 2 restarts: the LR climbs back up after the first cycle's minimum
    vals = [unet[s] for s in range(3, 13)]
    assert min(vals) < vals[-1] or any(b > a for a, b in itertools.pairwise(vals))


def test_tbparse_reads_the_same_scalars(real_shape: Path) -> None:
    tbparse = pytest.importorskip("tbparse")
    ev = _event_file(real_shape)
    df = tbparse.SummaryReader(str(ev)).scalars
    ours = scalar_points(ev)
    assert set(df["tag"]) == set(ours)
    for tag, pts in ours.items():
        sub = df[df["tag"] == tag]
        assert list(sub["step"]) == [s for s, _ in pts]
        assert [float(v) for v in sub["value"]] == pytest.approx([v for _, v in pts], nan_ok=True)


def test_nan_fault_is_nan_in_tensorboard(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--max_train_epochs", "2", "--gradient_accumulation_steps", "2", "--logging_dir", str(out / "logs"),
            "--sim-batches-per-epoch", "6", "--sim-fault", "nan", "--sim-fault-step", "2", *FAST]
    assert run_simulated(out, args) == 0
    pts = scalar_points(min(out.glob("logs/*/network_train/events.*")))
    cur = pts["loss/current"]
    first_nan = next(s for s, v in cur if math.isnan(v))
    assert first_nan == 2
    after = [v for s, v in pts["loss/average"] if s >= 2]
    assert after and all(math.isnan(v) for v in after)
    assert all(math.isnan(v) for _, v in pts["loss/epoch_average"])
    assert all(not math.isnan(v) for s, v in cur if s < 2)


def test_crc32c_implementations_agree_with_oracle() -> None:
    import os as _os

    from sdxl_tui.formats.tfrecord import crc32c, crc32c_py, masked_crc32c
    from tests.oracles import crc32c_bitwise, masked

    assert crc32c_bitwise(b"123456789") == 0xE3069283  # the CRC-32C check value
    for n in (0, 1, 8, 37, 300):
        data = _os.urandom(n)
        assert crc32c_py(data) == crc32c(data) == crc32c_bitwise(data)
        assert masked_crc32c(data) == masked(crc32c_bitwise(data))


def test_scale_weight_norms_tags_and_postfix(tmp_path: Path) -> None:
    from tests.oracles import TQDM_RE, segments

    out = tmp_path / "out"
    args = ["--max_train_epochs", "1", "--scale_weight_norms", "1.0", "--network_train_unet_only",
            "--logging_dir", str(out / "logs"), "--sim-batches-per-epoch", "3", *FAST]
    assert run_simulated(out, args) == 0
    pts = scalar_points(next(out.glob("logs/*/network_train/events.*")))
    assert list(pts)[:5] == ["loss/current", "loss/average", "max_norm/keys_scaled", "max_norm/max_key_norm", "norm/avg_key_norm"]
    bars = [t for t, _ in segments((out / "training.log").read_bytes()) if t.startswith("steps:")]
    post = [m["postfix"] for m in (TQDM_RE.match(b.rstrip()) for b in bars) if m and m["postfix"]]
    assert post and all(re.match(r"^Average key norm=[\d.e-]+, Keys Scaled=\d+, avr_loss=[\d.e-]+$", p) for p in post)


def test_validation_split_tags_bars_and_counts(tmp_path: Path) -> None:
    from tests.oracles import TQDM_RE, segments

    out = tmp_path / "out"
    args = ["--max_train_epochs", "2", "--validation_split", "0.25", "--validate_every_n_steps", "2",
            "--logging_dir", str(out / "logs"), *FAST]
    assert run_simulated(out, args) == 0  # 8 images (no dataset): 6 train, 2 validation
    pts = scalar_points(next(out.glob("logs/*/network_train/events.*")))
    assert [s for s, _ in pts["loss/validation/step_average"]] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in pts["loss/validation/step_divergence"]] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in pts["loss/validation/epoch_average"]] == [1, 2]
    assert [s for s, _ in pts["loss/validation/epoch_divergence"]] == [1, 2]
    data = (out / "training.log").read_bytes()
    assert "num validation images * repeats / 学習画像の数×繰り返し回数: 2" in data.decode()
    val = [TQDM_RE.match(t.rstrip()) for t, _ in segments(data) if "validation steps:" in t]
    assert val and all(val)
    assert {m["desc"] for m in val if m} == {"validation steps", "epoch validation steps"}
    post = [m["postfix"] for m in val if m and m["postfix"]]
    assert all(re.fullmatch(r"(val_avg_loss|val_epoch_avg_loss)=[\d.e-]+, timestep=(200|400|600|800)", p) for p in post)


def test_lr_schedule_shapes() -> None:
    from sdxl_tui.sim.trainer import lr_lambda

    assert [lr_lambda("constant", s, 10, 0) for s in (0, 5, 10)] == [1.0, 1.0, 1.0]
    assert [lr_lambda("constant_with_warmup", s, 10, 4) for s in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert [lr_lambda("linear", s, 10, 2) for s in (1, 2, 6, 10)] == [0.5, 1.0, 0.5, 0.0]
    assert lr_lambda("cosine", 6, 10, 2) == pytest.approx(0.5) and lr_lambda("cosine", 10, 10, 2) == pytest.approx(0.0)
    # two restarts: back to the peak half-way through
    assert lr_lambda("cosine_with_restarts", 6, 10, 2, cycles=2) == pytest.approx(1.0)
    assert lr_lambda("cosine_with_restarts", 4, 10, 2, cycles=2) == pytest.approx(0.5)
    assert lr_lambda("polynomial", 6, 10, 2, power=2.0) == pytest.approx(0.25)
