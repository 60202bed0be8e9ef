"""The simulator as a real, separate process: command line, stdout buffering, SIGTERM and
SIGINT behaviour, a hang, and the argparse error, checked on real subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sdxl_tui.sim import simulate_command, start_simulated

pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()  # by PID: only the processes this test started
            p.wait(timeout=10)


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _log(out: Path) -> str:
    p = out / "training.log"
    return p.read_bytes().decode("utf-8", "replace") if p.exists() else ""


def _env(unbuffered: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


RUN = ["--output_name", "p", "--max_train_epochs", "20", "--save_every_n_epochs", "1",
       "--sim-batches-per-epoch", "4", "--sim-startup-seconds", "0"]


def test_cmdline_carries_output_dir(tmp_path: Path, procs: list) -> None:
    out = tmp_path / "out"
    cmd = simulate_command(out, ["--sim-step-seconds", "0.2"])
    assert cmd[:4] == [sys.executable, "-m", "sdxl_tui", "simulate"] and cmd[-2:] == ["--output_dir", str(out)]
    p = start_simulated(out, [*RUN, "--sim-step-seconds", "0.2"], env=_env(True))
    procs.append(p)
    _wait(lambda: "steps:" in _log(out))
    argv = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--output_dir" in argv and str(out).encode() in argv


def test_sigterm_dies_silently_nothing_saved(tmp_path: Path, procs: list) -> None:
    out = tmp_path / "out"
    p = start_simulated(out, [*RUN, "--sim-step-seconds", "0.1"], env=_env(True))
    procs.append(p)
    _wait(lambda: (out / "p-000001.safetensors").exists())
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == -signal.SIGTERM
    text = _log(out)
    assert "Traceback" not in text and "model saved." not in text
    assert not (out / "p.safetensors").exists()


def test_sigint_keyboard_interrupt_traceback_and_signal_exit(tmp_path: Path, procs: list) -> None:
    out = tmp_path / "out"
    p = start_simulated(out, [*RUN, "--sim-step-seconds", "0.1"], env=_env(True))
    procs.append(p)
    _wait(lambda: (out / "p-000001.safetensors").exists())
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == -signal.SIGINT
    text = _log(out)
    assert "Traceback (most recent call last):" in text
    assert re.search(r"^KeyboardInterrupt$", text, re.MULTILINE)
    assert not (out / "p.safetensors").exists()


def test_hang_keeps_process_alive_without_output(tmp_path: Path, procs: list) -> None:
    out = tmp_path / "out"
    p = start_simulated(out, [*RUN, "--sim-step-seconds", "0.05", "--sim-fault", "hang", "--sim-fault-step", "3"], env=_env(True))
    procs.append(p)
    _wait(lambda: "| 2/80 [" in _log(out))
    size = (out / "training.log").stat().st_size
    time.sleep(1.0)
    assert p.poll() is None
    assert (out / "training.log").stat().st_size == size
    assert "| 3/80 [" not in _log(out)
    # Ctrl-C on a hung trainer: the traceback shows where it waits (the DataLoader queue)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == -signal.SIGINT
    text = _log(out)
    assert "torch/utils/data/dataloader.py" in text and re.search(r"^KeyboardInterrupt$", text, re.MULTILINE)


def test_buffered_stdout_in_a_real_process(tmp_path: Path, procs: list) -> None:
    """Without PYTHONUNBUFFERED the stdout lines reach the file late (Python's block buffer)."""
    orders = {}
    for unbuffered in (False, True):
        out = tmp_path / f"o{int(unbuffered)}"
        p = start_simulated(out, ["--max_train_epochs", "1", "--sim-batches-per-epoch", "2",
                                  "--sim-step-seconds", "0", "--sim-startup-seconds", "0"], env=_env(unbuffered))
        procs.append(p)
        assert p.wait(timeout=60) == 0
        text = _log(out)
        orders[unbuffered] = text.index("running training / 学習開始") < text.index("unet dtype:")
    assert orders == {False: False, True: True}


def test_unrecognized_arguments_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = subprocess.run(
        simulate_command(out, ["--batch_size", "2", "--lowvram", "--medvram"]),
        capture_output=True, text=True, timeout=60, env=_env(True), check=False,
    )
    assert res.returncode == 2
    assert res.stderr.startswith("usage: sdxl_train_network.py [-h]")
    assert res.stderr.rstrip().endswith("sdxl_train_network.py: error: unrecognized arguments: --batch_size 2 --lowvram --medvram")


def test_oom_exit_1_in_a_real_process(tmp_path: Path, procs: list) -> None:
    out = tmp_path / "out"
    p = start_simulated(out, ["--max_train_epochs", "2", "--sim-batches-per-epoch", "4", "--sim-step-seconds", "0",
                              "--sim-startup-seconds", "0", "--sim-fault", "oom", "--sim-fault-step", "3"], env=_env(True))
    procs.append(p)
    assert p.wait(timeout=60) == 1
    assert "torch.OutOfMemoryError: CUDA out of memory." in _log(out)


def test_dataloader_workers_are_real_children_with_the_same_cmdline(tmp_path: Path, procs: list) -> None:
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    p = start_simulated(out, [*RUN, "--sim-step-seconds", "0.3", "--max_data_loader_n_workers", "2"], env=_env(True))
    procs.append(p)
    _wait(lambda: "epoch is incremented" in _log(out))
    parent = psutil.Process(p.pid)
    _wait(lambda: len(parent.children()) == min(2, os.cpu_count() or 1))
    kids = parent.children()
    assert all(k.cmdline() == parent.cmdline() for k in kids)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == -signal.SIGTERM
    # orphaned workers notice their parent is gone and leave, like DataLoader's watchdog
    _, alive = psutil.wait_procs(kids, timeout=5)
    assert not alive
