"""Detached start: plan, log rotation, run record, refusals, and survival, with real processes."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sdxl_tui.control.launch import launch, log_rotations, plan_launch, rotate_logs
from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
from sdxl_tui.formats.statedir import read_run_record
from sdxl_tui.sources.procs import ProcessWatcher, find_trainer
from tests.helpers.proctools import (
    FAKE_CONDA,
    FAKE_TRAINER,
    HELPERS,
    PY,
    Procs,
    alive,
    checkpoint_written,
    managed_procs,
    trainer_argv,
    wait_until,
)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes started by a test, all ended by PID afterwards."""
    yield from managed_procs()


def _cfg(out: Path, **args: object) -> LaunchConfig:
    return LaunchConfig(prefix=(PY,), sd_scripts_dir=str(HELPERS), script="fake_train_network.py",
                        output_dir=str(out), args={"save_every": 0.5, **args}, env={"SDXL_TUI_TEST_ENV": "yes"})


def test_log_rotation_keeps_every_earlier_log(tmp_path: Path) -> None:
    log = tmp_path / "training.log"
    assert log_rotations(log) == []
    log.write_text("")
    assert log_rotations(log) == []  # an empty log is simply reused
    for text in ("first", "second", "third"):
        log.write_text(text)
        rotate_logs(log)
    assert not log.exists()
    assert (tmp_path / "training.log.1").read_text() == "third"
    assert (tmp_path / "training.log.2").read_text() == "second"
    assert (tmp_path / "training.log.3").read_text() == "first"


def test_plan_shows_argv_cwd_env_and_writes(tmp_path: Path) -> None:
    (tmp_path / "training.log").write_text("old run\n")
    cfg = _cfg(tmp_path)
    plan = plan_launch(cfg)
    assert plan.refusal is None
    assert plan.argv == (PY, "fake_train_network.py", "--save_every", "0.5", "--output_dir", str(tmp_path))
    assert plan.cwd == str(HELPERS)
    assert plan.env["PYTHONUNBUFFERED"] == "1" and plan.env["SDXL_TUI_TEST_ENV"] == "yes"
    assert plan.rotations == ((str(tmp_path / "training.log"), str(tmp_path / "training.log.1")),)
    assert any("run.json" in w for w in plan.writes)
    assert (tmp_path / "training.log").read_text() == "old run\n"  # planning changes nothing
    conda = LaunchConfig(prefix=("conda", "run", "-n", "k", "python"), output_dir=str(tmp_path))
    assert any("--no-capture-output" in w for w in plan_launch(conda).warnings)


def test_launch_records_the_run_and_refuses_a_second_start(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path / "run")
    out.mkdir()
    (out / "training.log").write_text("previous run\n")
    res = launch(_cfg(out, workers=1))
    assert res.ok, res.message
    rec = read_run_record(out)
    assert rec is not None
    assert rec.pid == res.pid and rec.argv[1] == "fake_train_network.py"
    assert rec.create_time is not None and abs(rec.create_time - psutil.Process(res.pid).create_time()) < 0.05
    assert rec.cwd == str(HELPERS) and rec.log == str(out / "training.log")
    assert (out / "training.log.1").read_text() == "previous run\n"
    tree = wait_until(lambda: find_trainer(out), 10)
    assert tree.recorded and tree.trainer.pid == res.pid
    assert [p.role for p in tree.launchers] == ["supervisor"]
    # detached: own session, stdin /dev/null, env has PYTHONUNBUFFERED and the config's env
    trainer = psutil.Process(res.pid)
    assert os.getsid(res.pid) != os.getsid(0)
    assert os.readlink(f"/proc/{res.pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{res.pid}/fd/1") == str(out / "training.log")
    env = trainer.environ()
    assert env["PYTHONUNBUFFERED"] == "1" and env["SDXL_TUI_TEST_ENV"] == "yes"
    wait_until(lambda: "epoch 1/" in (out / "training.log").read_text(), 10)  # unbuffered lines arrive
    # second start: refused with the reason, nothing started
    second = launch(_cfg(out))
    assert not second.ok
    assert "already running" in second.message and str(res.pid) in second.message
    again = read_run_record(out)
    assert again is not None and again.pid == res.pid
    assert (out / "training.log.1").read_text() == "previous run\n"  # no rotation happened


def test_second_start_refused_for_a_run_started_by_hand(procs: Procs, tmp_path: Path) -> None:
    by_hand = procs.spawn(trainer_argv(tmp_path))
    wait_until(lambda: find_trainer(tmp_path), 10)
    res = launch(_cfg(tmp_path))
    assert not res.ok and f"pid {by_hand.pid} (found by its command line)" in res.message
    assert read_run_record(tmp_path) is None


def test_start_in_progress_is_refused_by_the_lock(tmp_path: Path) -> None:
    state = tmp_path / ".sdxl-tui"
    state.mkdir()
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = launch(_cfg(tmp_path))
        assert not res.ok and "in progress" in res.message
    finally:
        os.close(fd)
    assert read_run_record(tmp_path) is None


def test_missing_program_is_reported(procs: Procs, tmp_path: Path) -> None:
    procs.watch_dir(tmp_path)
    cfg = LaunchConfig(prefix=("/nonexistent/bin/python-nope",), script="x_train_network.py", output_dir=str(tmp_path))
    res = launch(cfg)
    assert not res.ok and "could not start" in res.message and "python-nope" in res.message
    assert "cannot start the trainer" in (tmp_path / "training.log").read_text()
    assert ProcessWatcher(tmp_path).sample() is None


def test_supervisor_records_the_trainers_signal(procs: Procs, tmp_path: Path) -> None:
    out = procs.watch_dir(tmp_path)
    res = launch(_cfg(out))
    assert res.ok
    w = ProcessWatcher(out)
    assert w.sample() is not None
    os.kill(res.pid, signal.SIGKILL)
    rec = wait_until(lambda: (r := read_run_record(out)) and r.ended and r, 10)
    assert rec.signal == signal.SIGKILL and rec.exit_code is None
    wait_until(lambda: w.sample() is None, 5)
    assert w.last_exit is not None and w.last_exit.signal_name == "SIGKILL"
    assert "host out of memory" in w.last_exit.description


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGHUP"])
def test_run_survives_the_starter_being_killed_and_its_session_hanging_up(procs: Procs, tmp_path: Path,
                                                                          how: str) -> None:
    out = procs.watch_dir(tmp_path / "run")
    cfg = LaunchConfig(prefix=(PY, FAKE_CONDA, "run", "--no-capture-output", "-n", "kohya_ss", PY),
                       script=FAKE_TRAINER, output_dir=str(out), args={"save_every": 0.4, "write_seconds": 0.1})
    launch_file = write_launch_config(cfg, tmp_path / "launch.toml")
    # A dashboard-like process (in its own session, as from an SSH login) starts the run
    # through the same control function as key `s`, then stays alive; then its session is
    # hung up (SIGHUP to the whole process group) or it is SIGKILLed.
    script = textwrap.dedent(f"""
        import time
        from sdxl_tui.control.launch import launch
        from sdxl_tui.formats.launch_config import load_launch_config
        res = launch(load_launch_config({str(launch_file)!r}))
        print("started", res.ok, flush=True)
        time.sleep(60)
    """)
    starter = procs.spawn([PY, "-c", script], stdout=subprocess.PIPE)
    assert starter.stdout is not None
    assert starter.stdout.readline().decode().strip() == "started True"
    # (while conda is still starting, the recorded conda process stands in for the trainer)
    tree = wait_until(lambda: (t := find_trainer(out)) and t.trainer.cmdline[1] == FAKE_TRAINER and t, 10)
    assert len(tree.launchers) == 3  # supervisor, conda, bash tmp script
    if how == "SIGHUP":
        os.killpg(starter.pid, signal.SIGHUP)
    else:
        os.kill(starter.pid, signal.SIGKILL)
    starter.wait(timeout=5)
    n = len(list(out.glob("*.safetensors")))
    wait_until(checkpoint_written(out, n + 2), 15)  # still training after the hang-up
    assert alive(tree.trainer.pid, tree.trainer.create_time)
    assert all(alive(p.pid, p.create_time) for p in tree.launchers)
    again = find_trainer(out)
    assert again is not None and again.recorded and again.trainer.pid == tree.trainer.pid


@pytest.mark.slow
def test_cli_start_dry_run_and_confirmation(tmp_path: Path) -> None:
    write_launch_config(_cfg(tmp_path), tmp_path / "sdxl-tui.toml")
    dry = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "start", str(tmp_path), "--dry-run", "--no-check"],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "fake_train_network.py --save_every 0.5 --output_dir" in dry.stdout
    assert "PYTHONUNBUFFERED=1" in dry.stdout and "nothing started" in dry.stdout
    ask = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "start", str(tmp_path), "--no-check"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    assert ask.returncode == 2 and "--yes" in ask.stderr
    assert read_run_record(tmp_path) is None
    missing = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "start", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no launch config" in missing.stderr


def test_cli_start_refuses_on_preflight_errors(tmp_path: Path) -> None:
    # the fake trainer's options are not sd-scripts options: the preflight check must object
    write_launch_config(_cfg(tmp_path), tmp_path / "sdxl-tui.toml")
    res = subprocess.run(check=False, args=[PY, "-m", "sdxl_tui", "start", str(tmp_path), "--yes"], capture_output=True, text=True)
    assert res.returncode == 2 and "--force" in res.stderr
    assert read_run_record(tmp_path) is None

