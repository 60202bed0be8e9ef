"""``report.on_end``: the supervisor of ``sdxl-tui start`` writes the report when the run ends,
and records a GPU history while it runs (real processes: the simulator under the supervisor)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdxl_tui.control.launch import launch
from sdxl_tui.formats.gpulog import gpu_history_path, read_gpu_history
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.formats.statedir import read_run_record
from tests.helpers.html_check import check_html, external_references
from tests.helpers.proctools import Procs, alive, managed_procs, wait_until


@pytest.fixture
def procs() -> Iterator[Procs]:
    yield from managed_procs()


def _cfg(out: Path, env: dict[str, str]) -> LaunchConfig:
    return LaunchConfig(
        prefix=(sys.executable, "-m", "sdxl_tui", "simulate", "--sim-batches-per-epoch", "10",
                "--sim-step-seconds", "0.01", "--sim-startup-seconds", "0"),
        script="", output_dir=str(out), env=env,
        args={"output_name": "night run", "max_train_epochs": 2, "save_every_n_epochs": 1, "network_dim": 4},
    )


@pytest.mark.slow
def test_supervisor_writes_the_report_when_the_run_ends(procs: Procs, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user settings file
    monkeypatch.delenv("SDXL_TUI_CONFIG", raising=False)
    out = procs.watch_dir(tmp_path / "run")
    res = launch(_cfg(out, {"SDXL_TUI_REPORT_ON_END": "1"}))
    assert res.ok, res.message
    state = out / ".sdxl-tui"
    assert wait_until(lambda: (state / "report.md").is_file(), 120), (state / "report.log").read_text()
    record = read_run_record(out)
    assert record is not None and record.exit_code == 0
    text = (state / "report.html").read_text()
    parser = check_html(text)
    assert external_references(text, parser) == []
    assert parser.title == "night run: finished - sdxl-tui report"
    # the exact command, shell-quoted (the output name has a space), from the run record
    assert "From the run record of <code>sdxl-tui start</code>:" in text
    assert "--output_name &#x27;night run&#x27;" in text and "started by sdxl-tui start" in text
    assert "process ended (exit status 0)" in text
    md = (state / "report.md").read_text()
    assert md.startswith("# night run: finished") and "--output_name 'night run'" in md
    history = read_gpu_history(gpu_history_path(out))
    assert history.exists and (history.points or history.unavailable)  # a GPU, or why there is none


@pytest.mark.slow
def test_no_report_without_the_setting(procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SDXL_TUI_CONFIG", raising=False)
    monkeypatch.delenv("SDXL_TUI_REPORT_ON_END", raising=False)
    out = procs.watch_dir(tmp_path / "run")
    res = launch(_cfg(out, {}))
    assert res.ok, res.message
    record = wait_until(lambda: (r := read_run_record(out)) is not None and r.ended and r, 60)
    assert record
    # the supervisor has gone (it would have written the report before exiting)
    assert record.supervisor_pid is not None
    assert wait_until(lambda: not alive(record.supervisor_pid, record.supervisor_create_time), 60)
    assert not (out / ".sdxl-tui" / "report.html").exists()
    assert gpu_history_path(out).is_file()  # the history is written either way
