"""Which ancestors of a trainer belong to its run (``sources/lineage.py``), and what ``kill``
says when something outside the run starts the trainer again (a real respawning parent)."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdxl_tui.sources.lineage import ancestor_role
from tests.helpers.proctools import PY, Procs, managed_procs, trainer_argv, wait_until


@pytest.mark.parametrize(("cmdline", "role"), [
    (["bash", "train.sh"], "wrapper"),
    (["/bin/sh", "-c", "python sdxl_train_network.py --output_dir x"], "wrapper"),
    (["bash", "/tmp/tmpab12.sh"], "wrapper"),  # the script `conda run` writes
    (["/usr/bin/python3", "/venv/bin/accelerate", "launch", "--num_processes", "1", "sdxl_train_network.py"], "launcher"),
    (["/venv/bin/python", "-m", "accelerate.commands.launch", "-m", "sdxl_tui", "simulate"], "launcher"),
    (["/venv/bin/python", "-m", "torch.distributed.run", "--nproc_per_node", "2", "train_network.py"], "launcher"),
    (["torchrun", "--nproc_per_node", "2", "x.py"], "launcher"),
    (["timeout", "10h", "python", "x.py"], "launcher"),
    (["python", "-m", "sdxl_tui.control.supervisor", "--record", "r", "--", "python", "x.py"], "supervisor"),
    # the user's session: never part of the run
    (["-bash"], None),
    (["/bin/bash"], None),
    (["zsh", "-i"], None),
    (["tmux: server"], None),
    (["tmux", "new", "-s", "train"], None),
    (["sshd: user@pts/0"], None),
    (["/sbin/init"], None),
    (["/usr/lib/systemd/systemd", "--user"], None),
    (["python", "-m", "pytest", "-q"], None),  # unknown: stop
    (["python", "my_retry_loop.py"], None),
])
def test_ancestor_roles(cmdline: list[str], role: str | None) -> None:
    assert ancestor_role(cmdline) == role


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from managed_procs()


@pytest.mark.slow
def test_a_respawn_from_outside_the_run_is_reported_loudly(procs: Procs, tmp_path: Path) -> None:
    """A Python loop that restarts the trainer is not recognisable as part of the run; the kill
    must not claim "all processes exited" when a new trainer appears."""
    out = procs.watch_dir(tmp_path / "run")
    loop = tmp_path / "loop.py"
    loop.write_text(textwrap.dedent(f"""\
        import subprocess, sys, time
        while True:
            subprocess.call({trainer_argv(out)!r})
            time.sleep(0.5)
        """))
    procs.spawn([PY, str(loop)])
    wait_until(lambda: (out / "fake-000001.safetensors").exists(), timeout=30)
    done = subprocess.run([PY, "-m", "sdxl_tui", "kill", "--yes", "--timeout-int", "5", "--timeout-term", "5",
                           "--respawn-watch", "8", str(out)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "RESPAWNED" in done.stdout and "A NEW TRAINER STARTED" in done.stderr
    assert "all processes of the run exited" not in done.stdout
