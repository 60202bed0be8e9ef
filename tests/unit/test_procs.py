"""Trainer discovery and process trees, with real processes (fakes only for AccessDenied)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from sdxl_tui.formats.cmdline import (
    cmdline_matches,
    is_direct,
    mentions_trainer,
    option_value,
    script_span,
    trainer_output_dir,
)
from sdxl_tui.sources.procs import (
    ProcessWatcher,
    discover,
    find_trainer,
)
from tests.helpers.proctools import (
    FAKE_TRAINER,
    PY,
    Procs,
    accelerate_argv,
    conda_argv,
    managed_procs,
    trainer_argv,
    wait_until,
)


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes started by a test, all ended by PID afterwards."""
    yield from managed_procs()

# --------------------------------------------------------------------------- pure command lines


@pytest.mark.parametrize(
    "cmd, direct",
    [
        (["python", "sdxl_train_network.py", "--output_dir", "o"], True),
        (["/opt/env/bin/python3.10", "-u", "train_network.py"], True),
        (["python", "-X", "dev", "train_network.py"], True),
        (["./flux_train_network.py"], True),
        (["python", "-m", "sdxl_tui", "simulate", "--output_dir", "o"], True),
        (["/venv/bin/python", "/venv/bin/sdxl-tui", "simulate"], True),
        (["python", "/x/bin/accelerate", "launch", "--num_cpu_threads_per_process", "1", "sdxl_train_network.py"], False),
        (["python", "/opt/conda/bin/conda", "run", "-n", "k", "python", "train_network.py"], False),
        (["python", "-m", "torch.distributed.run", "train_network.py"], False),
        (["python", "-m", "sdxl_tui.control.supervisor", "--", "python", "train_network.py"], False),
    ],
)
def test_direct_trainer_versus_launcher(cmd: list[str], direct: bool) -> None:
    span = script_span(cmd)
    assert span is not None
    assert is_direct(cmd, span[0]) is direct


def test_shell_wrapper_mentions_the_trainer() -> None:
    cmd = ["sh", "-c", "conda run -n k python train_network.py --output_dir o > log 2>&1"]
    assert script_span(cmd) is None
    assert mentions_trainer(cmd)
    assert not mentions_trainer(["bash", "run_all.sh"])


def test_no_trainer_script() -> None:
    assert script_span(["python", "train.py", "--output_dir", "x"]) is None
    assert script_span(["sleep", "100"]) is None
    assert script_span(["python", "-m", "sdxl_tui", "status"]) is None


def test_output_dir_forms(tmp_path: Path) -> None:
    base = ["python", "train_network.py"]
    assert trainer_output_dir(base + ["--output_dir", str(tmp_path)], None) == str(tmp_path)
    assert trainer_output_dir(base + [f"--output_dir={tmp_path}"], None) == str(tmp_path)
    assert trainer_output_dir(base + ["--output_d", str(tmp_path)], None) == str(tmp_path)  # argparse prefix
    assert trainer_output_dir(base + ["--output_", str(tmp_path)], None) is None  # ambiguous for argparse
    assert trainer_output_dir(base + ["--output_dir", "a", "--output_dir", str(tmp_path)], None) == str(tmp_path)
    assert trainer_output_dir(base + ["--output_dir", "rel/out"], str(tmp_path)) == str(tmp_path / "rel" / "out")
    assert trainer_output_dir(base + ["--output_dir", "rel"], None) is None  # cwd unknown
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert trainer_output_dir(base + ["--output_dir", str(link)], None) == str(tmp_path)
    # from --config_file (sd-scripts appends .toml when missing)
    (tmp_path / "c.toml").write_text(f'[model]\noutput_dir = "{tmp_path}/fromcfg"\n')
    assert trainer_output_dir(base + ["--config_file", "c"], str(tmp_path)) == str(tmp_path / "fromcfg")
    assert trainer_output_dir(base + ["--config_file", "c.toml", "--output_dir", "x"], str(tmp_path)) == str(tmp_path / "x")
    assert option_value(["--a", "1", "--", "--output_dir", "z"], "--output_dir") is None


def test_cmdline_matches_handles_shebang() -> None:
    argv = ["conda", "run", "-n", "k", "python", "train_network.py", "--output_dir", "/o"]
    assert cmdline_matches(["/opt/conda/bin/python", "/opt/conda/bin/conda", *argv[1:]], argv)
    assert cmdline_matches(argv, argv)
    assert not cmdline_matches(["sleep", "100"], argv)
    assert not cmdline_matches(["/opt/conda/bin/conda", *argv[1:-1], "/other"], argv)


# --------------------------------------------------------------------------- real processes


def _wait_tree(out: Path, n_children: int = 0, timeout: float = 10.0) -> Any:
    def ready() -> Any:
        tree = find_trainer(out)
        return tree if tree is not None and len(tree.children) >= n_children else None

    return wait_until(ready, timeout)


def test_direct_trainer_relative_output_dir_and_workers(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = procs.spawn([PY, FAKE_TRAINER, "--workers", "2", "--output_dir", "run"], cwd=tmp_path)
    tree = _wait_tree(out, 2)
    assert tree.trainer.pid == p.pid
    assert tree.launchers == ()
    assert [c.role for c in tree.children] == ["worker", "worker"]
    assert not tree.recorded
    # a trainer of another output dir is not this run's
    assert find_trainer(tmp_path / "elsewhere") is None


def test_conda_chain_roles_and_decoy(procs: Procs, tmp_path: Path) -> None:
    out, decoy_out = tmp_path / "run", tmp_path / "decoy"
    conda = procs.spawn(conda_argv(out, "--workers", "1"))
    decoy = procs.spawn(trainer_argv(decoy_out))
    tree = _wait_tree(out, 1)
    assert tree.launchers[0].pid == conda.pid
    assert len(tree.launchers) == 2  # conda (python) -> bash tmp script
    assert os.path.basename(tree.launchers[1].cmdline[0]) == "bash"
    assert tree.trainer.cmdline[1] == FAKE_TRAINER
    assert decoy.pid not in {p.pid for p in tree.all()}
    found = discover(out)
    assert (decoy.pid, str(decoy_out)) in found.other_trainers


def test_accelerate_chain(procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "run"
    acc = procs.spawn(accelerate_argv(out))
    tree = _wait_tree(out)
    assert [lp.pid for lp in tree.launchers] == [acc.pid]
    assert tree.trainer.ppid == acc.pid
    assert script_span(tree.trainer.cmdline) is not None


def test_recorded_pid_reused_is_not_adopted(procs: Procs, tmp_path: Path) -> None:
    sleeper = procs.spawn(["sleep", "60"])
    ctime = psutil.Process(sleeper.pid).create_time()
    state = tmp_path / ".sdxl-tui"
    state.mkdir()
    for rec in (
        {"pid": sleeper.pid, "create_time": ctime - 1000, "argv": ["sleep", "60"]},  # wrong create time
        {"pid": sleeper.pid, "create_time": ctime, "argv": trainer_argv(tmp_path)},  # wrong command
    ):
        (state / "run.json").write_text(json.dumps(rec))
        found = discover(tmp_path)
        assert found.trees == ()
        assert found.record_state == "mismatch"
        assert any(f"recorded pid {sleeper.pid} now belongs to another process" in n for n in found.notes)


def test_watcher_fills_cpu_rss_and_reports_exit(procs: Procs, tmp_path: Path) -> None:
    # no workers: an orphaned DataLoader worker looks like a trainer until it exits (see report)
    p = procs.spawn(trainer_argv(tmp_path))
    _wait_tree(tmp_path)
    w = ProcessWatcher(tmp_path)
    first = w.sample()
    assert first is not None and first.trainer.cpu_percent is None  # no delta yet
    assert first.trainer.rss and first.trainer.rss > 1_000_000
    assert first.trainer.username
    time.sleep(0.1)
    second = w.sample()
    assert second is not None and second.trainer.cpu_percent is not None
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=5)
    wait_until(lambda: w.sample() is None, 5)
    assert w.last_exit is not None and w.last_exit.pid == p.pid


def test_exit_info_from_record(tmp_path: Path) -> None:
    state = tmp_path / ".sdxl-tui"
    state.mkdir()
    (state / "run.json").write_text(json.dumps({"pid": 2**22 + 12345, "create_time": 1.0, "argv": ["x"],
                                                "ended_at": 5.0, "exit_code": None, "signal": 9}))
    w = ProcessWatcher(tmp_path)
    assert w.sample() is None
    assert w.last_exit is not None
    assert w.last_exit.signal_name == "SIGKILL"
    assert "host out of memory" in w.last_exit.description


# --------------------------------------------------------------------------- psutil boundary


class _FakeProc:
    def __init__(self, pid: int, ppid: int, cmdline: list[str] | None, *, deny_cwd: bool = False) -> None:
        self.pid = pid
        self.info = {"pid": pid, "ppid": ppid, "cmdline": cmdline, "create_time": 100.0 + pid}
        self._deny = deny_cwd

    def cwd(self) -> str:
        if self._deny:
            raise psutil.AccessDenied(self.pid)
        return "/work"


def _fake_psutil(procs_: list[_FakeProc]) -> Any:
    return SimpleNamespace(
        process_iter=lambda attrs=None, ad_value=None: iter(procs_),
        Process=lambda pid: (_ for _ in ()).throw(psutil.NoSuchProcess(pid)),
        Error=psutil.Error, NoSuchProcess=psutil.NoSuchProcess, AccessDenied=psutil.AccessDenied,
        ZombieProcess=psutil.ZombieProcess, STATUS_ZOMBIE=psutil.STATUS_ZOMBIE,
    )


def test_access_denied_and_unreadable_cmdlines_are_skipped(tmp_path: Path) -> None:
    fake = _fake_psutil([
        _FakeProc(10, 1, None),  # another user's process: cmdline unreadable (ad_value None)
        _FakeProc(11, 1, ["python", "train_network.py", "--output_dir", "rel"], deny_cwd=True),
        _FakeProc(12, 1, ["python", "train_network.py", "--output_dir", str(tmp_path)]),
        _FakeProc(13, 12, ["python", "train_network.py", "--output_dir", str(tmp_path)]),
    ])
    found = discover(tmp_path, psutil_module=fake)
    assert [t.trainer.pid for t in found.trees] == [12]
    assert [(c.pid, c.role) for c in found.trees[0].children] == [(13, "worker")]
    # the watcher survives processes vanishing between the scan and the sample
    w = ProcessWatcher(tmp_path, psutil_module=fake)
    tree = w.sample()
    assert tree is not None and tree.trainer.alive is False


@pytest.mark.slow
def test_sample_cost_with_300_processes(procs: Procs, tmp_path: Path) -> None:
    """Measure ms per sample on a box with ~300 more processes (reported, loosely bounded)."""
    have = len(psutil.pids())
    extra = max(0, 300 - have)
    batch = [procs.spawn(["sleep", "60"]) for _ in range(extra)]
    assert len(batch) == extra
    procs.spawn(trainer_argv(tmp_path))
    _wait_tree(tmp_path)
    w = ProcessWatcher(tmp_path)
    w.sample()
    t0 = time.perf_counter()
    for _ in range(5):
        assert w.sample() is not None
    ms = (time.perf_counter() - t0) * 1000 / 5
    print(f"\nProcessWatcher.sample: {ms:.1f} ms with {len(psutil.pids())} processes")
    assert ms < 1000


def test_module_imports_no_textual() -> None:
    code = ("import sys, sdxl_tui.sources.procs, sdxl_tui.control.kill, sdxl_tui.control.launch; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"



def test_scan_without_a_trainer_does_not_import_psutil(tmp_path) -> None:
    """/proc is read directly; psutil is imported only for a trainer found (or an odd error)."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("the /proc scan is Linux-only")
    code = (
        "import sys\n"
        "from sdxl_tui.sources.procs import ProcessWatcher\nfrom sdxl_tui.sources.proctable import boot_time as _boot_time, LAZY_PSUTIL as _LAZY_PSUTIL\n"
        f"w = ProcessWatcher({str(tmp_path)!r})\n"
        "assert w.sample() is None and w.last_discovery.scanned > 1\n"
        "assert 'psutil' not in sys.modules, 'psutil imported'\n"
        "b = _boot_time(_LAZY_PSUTIL)\n"
        "import psutil\n"
        "assert b == psutil.boot_time(), (b, psutil.boot_time())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
