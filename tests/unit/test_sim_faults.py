"""Fault modes of the simulated trainer, in-process: OOM and crash tracebacks, hang, NaN,
and the real argparse failure for unknown options."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

from sdxl_tui.sim import run_simulated
from tests.oracles import read_events, scalar_points

FAST = ["--sim-step-seconds", "0", "--sim-startup-seconds", "0"]
BASE = ["--output_name", "f", "--max_train_epochs", "3", "--save_every_n_epochs", "1", "--sim-batches-per-epoch", "4"]


def _log(out: Path) -> str:
    return (out / "training.log").read_bytes().decode("utf-8")  # keep the \r of the bars


def _tb(out: Path) -> dict[str, list[tuple[int, float]]]:
    return scalar_points(min(out.glob("logs/*/network_train/events.*")))


def test_oom_traceback_at_step_and_nothing_after(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = run_simulated(out, [*BASE, "--logging_dir", str(out / "logs"), "--sim-fault", "oom", "--sim-fault-step", "6", *FAST])
    assert rc == 1
    text = _log(out)
    # the traceback starts on the bar's line (tqdm never ended it), like real logs
    assert re.search(r"avr_loss=[^\]]+\] *Traceback \(most recent call last\):\n", text)
    assert re.search(
        r"^torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate [\d.]+ GiB\. GPU 0 has a total capacity of "
        r"[\d.]+ GiB of which [\d.]+ MiB is free\. .*PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
        text,
        re.MULTILINE,
    )
    assert '  File "/home/user/sd-scripts/train_network.py", line ' in text
    assert "model saved." not in text
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["f-000001.safetensors"]
    assert max(s for s, _ in _tb(out)["loss/current"]) == 5
    # at exit the open steps bar is closed once more, after the traceback
    assert re.search(r"\n\rsteps:  *\d+%\|[^\n]*\n$", text)


def test_crash_traceback_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_simulated(out, [*BASE, "--sim-fault", "crash", "--sim-fault-step", "2", *FAST]) == 1
    text = _log(out)
    assert "Traceback (most recent call last):" in text
    assert re.search(r"^RuntimeError: CUDA error: an illegal memory access was encountered$", text, re.MULTILINE)
    assert not list(out.glob("*.safetensors"))


def test_hang_stops_progress_then_resumes_when_bounded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    t0 = time.monotonic()
    args = [*BASE, "--logging_dir", str(out / "logs"), "--sim-fault", "hang", "--sim-fault-step", "3", "--sim-hang-seconds", "1.0", *FAST]
    assert run_simulated(out, args) == 0
    assert time.monotonic() - t0 >= 1.0
    events = [e for e in read_events(min(out.glob("logs/*/network_train/events.*"))) if e.scalars]
    cur = [(e.step, e.wall_time) for e in events if e.scalars[0][0] == "loss/current"]
    gaps = [(s1, t1 - t0_) for (_, t0_), (s1, t1) in itertools.pairwise(cur)]
    # The pause sits right before the first micro-batch of step 3. Other gaps (a checkpoint
    # save) can also be long on a loaded machine, so assert on the longest one.
    step, gap = max(gaps, key=lambda g: g[1])
    assert step == 3 and gap >= 0.95
    assert (out / "f.safetensors").exists()


def test_unrecognized_arguments_like_argparse(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = run_simulated(out, ["--output_name", "x", "--batch_size", "2", "--lowvram", "--medvram", *FAST])
    assert rc == 2
    text = _log(out)
    assert text.startswith("usage: sdxl_train_network.py [-h]")
    assert text.rstrip("\n").endswith("sdxl_train_network.py: error: unrecognized arguments: --batch_size 2 --lowvram --medvram")
    assert "--console_log_level" in text and "--sim-" not in text


def test_prefix_abbreviations_and_config_file_are_accepted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[training]\noutput_name = "fromcfg"\nmax_train_epochs = 1\n[net]\nnetwork_dim = 8\n')
    rc = run_simulated(out, ["--config_file", str(cfg)[:-5], "--sim-batches-per-epoch", "2", "--network_al", "4", *FAST])
    assert rc == 0
    assert (out / "fromcfg.safetensors").exists()
    assert "Loading settings from" in _log(out)


def test_invalid_choice_is_an_argparse_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_simulated(out, ["--mixed_precision", "fp32", *FAST]) == 2
    assert "argument --mixed_precision: invalid choice: 'fp32'" in _log(out)


def test_log_with_tensorboard_without_logging_dir_is_a_value_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_simulated(out, ["--log_with", "tensorboard", *FAST]) == 1
    text = _log(out)
    assert text.rstrip("\n").endswith(
        "ValueError: logging_dir is required when log_with is tensorboard / Tensorboardを使う場合、logging_dirを指定してください"
    )
    assert not out.joinpath("logs").exists()


def test_missing_output_dir_is_refused(tmp_path: Path) -> None:
    from sdxl_tui.sim.console import SimConsole
    from sdxl_tui.sim.runner import run_argv

    with open(tmp_path / "log", "wb") as f:
        assert run_argv(["--max_train_epochs", "1", *FAST], SimConsole(f), in_process=True) == 2
    assert b"--output_dir is required" in (tmp_path / "log").read_bytes()


def test_constant_scheduler_with_warmup_is_a_value_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_simulated(out, ["--lr_scheduler", "constant", "--lr_warmup_steps", "100", *FAST]) == 1
    text = _log(out)
    assert text.rstrip("\n").endswith("ValueError: SchedulerType.CONSTANT does not require `num_warmup_steps`. Set None or 0.")
    assert "running training" not in text
