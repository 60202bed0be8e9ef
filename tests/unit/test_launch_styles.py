"""``sdxl-tui kill`` against every common way of launching sd-scripts, with real process trees.

Each style starts the simulated trainer (``python -m sdxl_tui simulate``, which writes
``logs/<timestamp>`` like sd-scripts) or the stand-in trainer the way users do: directly, from
a ``bash train.sh``, from a retry loop ("exit non-zero -> sleep 2 -> start again"), with
``nohup … &`` (SIGINT then arrives ignored), with ``setsid``, under the real
``accelerate launch`` (``--cpu --num_processes 2``, which accelerate runs as ONE process, and
``--multi_gpu --num_processes 2``: two ranks through torchrun inside accelerate, joined in a
gloo process group), and through ``sdxl-tui start`` with a wrapper prefix. Then the real
``sdxl-tui kill DIR --yes`` runs, and each test asserts:

* nothing of the run is alive (every process that mentioned the run is gone);
* no trainer appears within the retry delay and more (no restart), no second
  ``logs/<timestamp>``, no checkpoint file changed after the kill returned;
* the state says STOPPED, by whom and with which signal;
* the decoys live: the same trainer for another output directory, and an unrelated process
  whose command line names the run's output directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sdxl_tui.control.kill import list_checkpoints
from sdxl_tui.model import RunState
from sdxl_tui.sources.procs import discover
from sdxl_tui.sources.rundir import read_run
from tests.helpers.proctools import PY, Procs, alive, managed_procs, wait_until

pytestmark = pytest.mark.slow

#: The retry loop's delay; a restart would show within it (we watch longer).
RETRY_DELAY = 2
WATCH = RETRY_DELAY + 4.0
KILL_CMD = [PY, "-m", "sdxl_tui", "kill", "--yes", "--timeout-int", "15", "--timeout-term", "8"]


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from managed_procs()


def _sim(out: Path) -> list[str]:
    return [PY, "-m", "sdxl_tui", "simulate", "--output_dir", str(out), "--output_name", "r",
            "--max_train_epochs", "2000", "--save_every_n_epochs", "1", "--sim-batches-per-epoch", "3",
            "--sim-step-seconds", "0.1", "--sim-startup-seconds", "0.2",
            "--logging_dir", str(out / "logs"), "--log_with", "tensorboard"]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return path


def _quoted(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def _train_sh(out: Path, *, retry: bool) -> Path:
    """``train.sh``: its command line does not name the trainer."""
    run = f'{_quoted(_sim(out))} >> {_quoted([str(out / "training.log")])} 2>&1'
    if retry:
        body = f"""\
        while true; do
          {run}
          rc=$?
          [ $rc -eq 0 ] && break
          sleep {RETRY_DELAY}
        done
        """
    else:
        body = f"{run}\necho trainer ended with $?\n"
    out.mkdir(parents=True, exist_ok=True)
    return _script(out.parent / f"train-{out.name}.sh", body)


#: ``accelerate launch`` as users type it, before the module and its arguments.
ACCELERATE = {
    # commands/launch.py:simple_launcher: --cpu never goes multi-process (without --mpirun_hostfile
    # the count only sets MASTER_ADDR/MASTER_PORT): one trainer, no RANK in its environment
    "accelerate": ["--cpu", "--num_processes", "2"],
    # commands/launch.py:multi_gpu_launcher: torch.distributed.run inside accelerate's process,
    # one worker per rank (RANK/LOCAL_RANK/WORLD_SIZE); on a CPU-only box the ranks use gloo.
    # Port 0: a free port (engineers run tests side by side). --max_restarts 2: torchrun's agent
    # restarts failed workers (seen: twice, before the launcher's SIGTERM) unless it is signalled first
    "accelerate-ranks": ["--multi_gpu", "--num_processes", "2", "--main_process_port", "0", "--max_restarts", "2"],
}


def _start(procs: Procs, style: str, out: Path) -> subprocess.Popen[bytes] | None:
    """Start one run in ``style``; returns once its first checkpoint is complete, with the
    launcher's process when the test started it directly."""
    procs.watch_dir(out)
    started: subprocess.Popen[bytes] | None = None
    if style == "python":
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "training.log", "ab") as log:
            procs.spawn(_sim(out), stdout=log, stderr=subprocess.STDOUT)
    elif style in ("bash", "retry"):
        procs.spawn(["bash", str(_train_sh(out, retry=style == "retry"))])
    elif style == "nohup":  # the shell's `&` without job control: SIGINT arrives ignored
        sh = _train_sh(out, retry=True)
        procs.spawn(["bash", "-c", f"nohup bash {_quoted([str(sh)])} >/dev/null 2>&1 &"]).wait(timeout=30)
    elif style == "setsid":
        procs.spawn(["setsid", "bash", str(_train_sh(out, retry=True))])
    elif style in ACCELERATE:
        started = _accelerate(procs, out, ACCELERATE[style])
    else:
        raise AssertionError(style)
    wait_until(lambda: (out / "r-000001.safetensors").exists() and _complete(out), timeout=90)
    return started


def _accelerate(procs: Procs, out: Path, options: list[str]) -> subprocess.Popen[bytes]:
    """The real ``accelerate launch OPTIONS -m sdxl_tui simulate …`` into ``out/training.log``."""
    out.mkdir(parents=True, exist_ok=True)
    acc = [PY, "-m", "accelerate.commands.launch", *options, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", *_sim(out)[2:]]
    with open(out / "training.log", "ab") as log:
        return procs.spawn(acc, stdout=log, stderr=subprocess.STDOUT)


def _complete(out: Path) -> bool:
    from sdxl_tui.control.kill import complete_checkpoints

    return bool(complete_checkpoints(out))


def _run_pids(out: Path, root: Path) -> dict[int, float]:
    """Every live process of the run: its trees, and anything naming its folder or scripts."""
    ids: dict[int, float] = {}
    for tree in discover(out).trees:
        for p in tree.all():
            ids[p.pid] = p.create_time
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if str(out) in cmd or f"train-{out.name}.sh" in cmd:
            ids[proc.info["pid"]] = proc.info["create_time"]
    return ids


def _described(pids: set[int]) -> list[str]:
    """pid, parent, status and command of each process, for a failure message."""
    out = []
    for pid in sorted(pids):
        try:
            p = psutil.Process(pid)
            out.append(f"{pid} (parent {p.ppid()}, {p.status()}): {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{pid} (gone)")
    return out


def _decoys(procs: Procs, tmp_path: Path, out: Path) -> list[subprocess.Popen[bytes]]:
    other = tmp_path / "other"
    other.mkdir()
    with open(other / "training.log", "ab") as log:
        same_cmd = procs.spawn(_sim(other), stdout=log, stderr=subprocess.STDOUT)
    # same output directory on its command line, unrelated parent (a `tail -f`-like reader)
    reader = procs.spawn([PY, "-c", "import sys, time; time.sleep(600)", str(out / "training.log")])
    return [same_cmd, reader]


def _check_ranks(out: Path, style: str) -> None:
    """The run is found as one tree: rank 0 its trainer, the other rank beside it."""
    tree = wait_until(lambda: discover(out).tree, timeout=30)
    if style != "accelerate-ranks":
        assert not tree.ranks and tree.trainer.rank is None, tree
        return
    assert [(p.rank, p.local_rank, p.world_size) for p in tree.trainers] == [(0, 0, 2), (1, 1, 2)], tree
    assert [p.role for p in tree.launchers][-1:] == ["launcher"], tree.launchers
    assert len(discover(out).trees) == 1


@pytest.mark.parametrize("style", ["python", "bash", "retry", "nohup", "setsid", "accelerate", "accelerate-ranks"])
def test_kill_stops_every_launch_style(procs: Procs, tmp_path: Path, style: str) -> None:
    out = tmp_path / "run"
    launcher = _start(procs, style, out)
    if style in ACCELERATE:
        _check_ranks(out, style)
    decoys = _decoys(procs, tmp_path, out)
    before = _run_pids(out, tmp_path)
    assert before, "the run's processes were not found"
    done = subprocess.run([*KILL_CMD, str(out)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all processes of the run exited" in done.stdout
    if style == "accelerate-ranks":  # the plan and the outcome name each rank
        ranks = [line.split()[:3] for line in done.stdout.splitlines() if line.startswith("rank ")]
        assert {r[1] for r in ranks} == {"0", "1"} and len(ranks) == 4, done.stdout
    files = list_checkpoints(out)
    logs = sorted(os.listdir(out / "logs")) if (out / "logs").is_dir() else []
    # nothing of the run lives, and nothing comes back within the retry delay and more (the
    # ranks: 10 s, though torchrun's agent would restart within its 0.1 s monitor interval)
    deadline = time.monotonic() + (10.0 if style == "accelerate-ranks" else WATCH)
    while time.monotonic() < deadline:
        living = {pid for pid, ct in _run_pids(out, tmp_path).items() if alive(pid, ct)}
        living -= {d.pid for d in decoys}
        assert not living, f"{style}: still alive or restarted: {_described(living)}"
        time.sleep(0.25)
    assert not any(alive(pid, ct) for pid, ct in before.items() if pid not in {d.pid for d in decoys})
    assert list_checkpoints(out) == files, "a checkpoint changed after the kill returned"
    assert (sorted(os.listdir(out / "logs")) if (out / "logs").is_dir() else []) == logs
    assert len(logs) <= 1, f"a second logs/<timestamp>: {logs}"
    for d in decoys:
        assert d.poll() is None, "a decoy was killed"
    snap = read_run(out, gpu=False)
    assert snap.state is RunState.STOPPED, snap.state_reason
    assert snap.state_reason.startswith("stopped by you (sdxl-tui kill, SIGINT, "), snap.state_reason
    assert "; last checkpoint r-0000" in snap.state_reason and "--network_weights" in snap.state_reason
    if launcher is not None:
        # simple_launcher turns its child's KeyboardInterrupt into exit 1 (CalledProcessError);
        # under ranks the agent got the SIGINT itself: _run_torchrun exits 128 + 2
        assert launcher.wait(timeout=30) == (130 if style == "accelerate-ranks" else 1)


def test_retry_wrapper_under_sdxl_tui_start_is_stopped_and_attributed(procs: Procs, tmp_path: Path) -> None:
    """``sdxl-tui start`` with a retry-loop prefix, a trainer that exits 1 on KeyboardInterrupt
    (real sd-scripts on a GPU): the supervisor records the wrapper's end; the verdict is STOPPED."""
    from sdxl_tui.control.launch import launch
    from sdxl_tui.formats.launch_config import LaunchConfig
    from tests.helpers.proctools import HELPERS

    out = procs.watch_dir(tmp_path / "run")
    retry = _script(tmp_path / "retry.sh", f"""\
        while true; do
          "$@"
          rc=$?
          [ $rc -eq 0 ] && break
          sleep {RETRY_DELAY}
        done
        """)
    cfg = LaunchConfig(prefix=("bash", str(retry), PY), sd_scripts_dir=str(HELPERS), script="fake_train_network.py",
                       output_dir=str(out), args={"save_every": 0.5, "interrupt_status": 1})
    res = launch(cfg, python=sys.executable)
    assert res.ok, res.message
    wait_until(lambda: _complete(out), timeout=60)
    tree = wait_until(lambda: discover(out).tree, timeout=30)
    roles = [p.role for p in tree.launchers]
    assert roles == ["supervisor", "wrapper"], roles
    before = {p.pid: p.create_time for p in tree.all()}
    done = subprocess.run([*KILL_CMD, str(out)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trainer" in done.stdout and "exited after SIGINT" in done.stdout, done.stdout
    files = list_checkpoints(out)
    time.sleep(WATCH)
    assert not discover(out).trees, "the retry loop started the trainer again"
    assert not any(alive(pid, ct) for pid, ct in before.items())
    assert list_checkpoints(out) == files
    snap = read_run(out, gpu=False)
    assert snap.state is RunState.STOPPED, snap.state_reason
    assert "stopped by you (sdxl-tui kill, SIGINT" in snap.state_reason


def _ignored(pid: int) -> set[int]:
    """The signals ``pid`` ignores (``SigIgn`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask >> (n - 1) & 1}
    return set()


def test_sdxl_tui_start_from_nohup_gives_the_trainer_default_signals(procs: Procs, tmp_path: Path) -> None:
    """``nohup sdxl-tui start … &`` hands the starter SIGINT and SIGHUP ignored; the trainer must
    not inherit that (kill's SIGINT would do nothing), and a kill stops it at the SIGINT step."""
    import signal as _signal

    from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config
    from tests.helpers.proctools import HELPERS

    out = procs.watch_dir(tmp_path / "run")
    cfg = LaunchConfig(prefix=(PY,), sd_scripts_dir=str(HELPERS), script="fake_train_network.py",
                       output_dir=str(out), args={"save_every": 0.5})
    launch_file = write_launch_config(cfg, tmp_path / "launch.toml")
    script = (f"from sdxl_tui.control.launch import launch; from sdxl_tui.formats.launch_config import "
              f"load_launch_config; print(launch(load_launch_config({str(launch_file)!r})).ok, flush=True)")

    def like_nohup_and_background() -> None:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)

    starter = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL, preexec_fn=like_nohup_and_background)
    assert starter.stdout.strip() == "True", starter.stdout + starter.stderr
    tree = wait_until(lambda: discover(out).tree, timeout=30)
    ignored = _ignored(tree.trainer.pid)
    assert not ignored & {_signal.SIGINT, _signal.SIGHUP}, ignored
    done = subprocess.run([*KILL_CMD, str(out)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith("trainer") and "exited after SIGINT" in line for line in done.stdout.splitlines())


def test_stop_after_checkpoint_behind_a_retry_loop_stops_the_whole_run(procs: Procs, tmp_path: Path) -> None:
    """``kill --after-checkpoint`` ends in the same kill: the retry loop does not start the
    trainer again, and the verdict names the stop-after-checkpoint."""
    import json

    out = tmp_path / "run"
    _start(procs, "retry", out)
    started = subprocess.run([PY, "-m", "sdxl_tui", "kill", "--yes", "--after-checkpoint", str(out)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stdout + started.stderr
    watch = out / ".sdxl-tui" / "stop-after-checkpoint.json"

    def finished() -> dict[str, object] | None:
        data = json.loads(watch.read_text())
        return data if data.get("state") in ("done", "incomplete", "failed") else None

    data = wait_until(finished, timeout=120)
    assert data["state"] == "done", data
    files = list_checkpoints(out)
    time.sleep(WATCH)
    assert not discover(out).trees, "the retry loop started the trainer again"
    assert list_checkpoints(out) == files
    assert len(os.listdir(out / "logs")) == 1
    snap = read_run(out, gpu=False)
    assert snap.state is RunState.STOPPED, snap.state_reason
    assert snap.state_reason.startswith("stopped by you (sdxl-tui kill --after-checkpoint, SIGINT"), snap.state_reason


def test_accelerate_exits_1_when_one_rank_is_interrupted_alone(procs: Procs, tmp_path: Path) -> None:
    """Not our kill: one rank gets a KeyboardInterrupt (SIGINT to it alone). torchrun's agent in
    accelerate ends the other rank and accelerate exits 1 (ChildFailedError), like the simple
    launcher's CalledProcessError; with no stop record of ours the verdict is "interrupted", not
    "stopped by you"."""
    import signal as _signal

    out = procs.watch_dir(tmp_path / "run")
    # torchrun's default --max_restarts 0 (with restarts left the agent starts both ranks again)
    launcher = _accelerate(procs, out, ACCELERATE["accelerate-ranks"][:-2])
    wait_until(lambda: _complete(out), timeout=90)  # training, not starting up
    tree = wait_until(lambda: (t := discover(out).tree) is not None and len(t.trainers) == 2 and t, timeout=30)
    os.kill(tree.ranks[0].pid, _signal.SIGINT)
    assert launcher.wait(timeout=60) == 1
    assert not any(alive(p.pid, p.create_time) for p in tree.all())
    snap = read_run(out, gpu=False)
    assert snap.state is not RunState.STOPPED and "stopped by you" not in snap.state_reason, snap.state_reason
    # the rank's KeyboardInterrupt traceback is in the log above accelerate's ChildFailedError
    assert snap.state is RunState.INTERRUPTED, (snap.state, snap.state_reason)
    assert snap.state_reason.startswith("SIGINT (KeyboardInterrupt) at step "), snap.state_reason
