"""Run discovery, run summaries, the one watcher of a folder of runs, optimisation folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sdxl_tui.formats.safetensors import peek_metadata, read_header
from sdxl_tui.sources.discovery import discover
from sdxl_tui.sources.optimisation import read_optimisation
from sdxl_tui.sources.runs import RunsWatcher
from tests.helpers.runs_folder import FIXTURE_TRIALS, build_runs_folder, sim_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    build_runs_folder(root)
    return root


def _no_live() -> frozenset[str]:
    return frozenset()


def test_discovery_finds_runs_and_trials_never_the_unrelated(runs_root: Path) -> None:
    d = discover(runs_root)
    assert d.root is None
    assert [r.name for r in d.runs] == ["sdxl_v1", "sdxl_v2"]
    assert [r.name for r in d.trials] == ["optimization_overnight"]
    assert "training.log" in d.runs[0].markers and "logs/*/network_train" in d.runs[0].markers
    assert all("stray" not in r.path for r in d.all)


def test_a_run_dir_is_one_run_and_its_subfolders_are_not_runs(runs_root: Path) -> None:
    d = discover(runs_root / "luca" / "sdxl_v1")
    assert d.is_run and not d.holds_runs


def test_a_run_with_runs_inside_shows_both(tmp_path: Path) -> None:
    from sdxl_tui.commands.runs_tui import runs_below_notice

    outer = sim_run(tmp_path / "outer", "outer")
    sim_run(outer / "rerun", "rerun")
    d = discover(outer)
    assert d.is_run and [r.name for r in d.runs] == ["rerun"]
    assert runs_below_notice(str(outer)) == "this run holds 1 other run(s): rerun (open one with its own path)"
    assert runs_below_notice(str(outer / "rerun")) is None


def test_neither_a_run_nor_runs(tmp_path: Path) -> None:
    (tmp_path / "apt.log").write_text("x\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    d = discover(tmp_path)
    assert d.root is None and not d.holds_runs


def test_symlink_loops_are_not_followed_and_depth_is_bounded(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c" / "d" / "e"
    sim_run(deep, "deep")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert discover(tmp_path, max_depth=3).runs == ()
    assert [r.name for r in discover(tmp_path, max_depth=6).runs] == ["e"]


def test_safetensors_metadata_alone_marks_a_run(runs_root: Path, tmp_path: Path) -> None:
    src = runs_root / "luca" / "sdxl_v1" / "luca_sdxl_v1.safetensors"
    md = peek_metadata(src)
    assert md == read_header(src).metadata and md["ss_output_name"] == "luca_sdxl_v1"
    (tmp_path / "copied").mkdir()
    shutil.copy(src, tmp_path / "copied" / "x.safetensors")
    assert discover(tmp_path / "copied").is_run
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "y.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    assert not discover(tmp_path / "other").is_run


def test_watcher_rows_and_idle_refresh_reads_nothing(runs_root: Path) -> None:
    w = RunsWatcher(runs_root, live_dirs=_no_live)
    view = w.refresh()
    by = {r.name: r for r in view.rows}
    assert by["sdxl_v1"].state == "finished" and by["sdxl_v1"].kind == "SDXL"
    assert by["sdxl_v1"].step == 10 and by["sdxl_v1"].checkpoints == 2
    assert by["sdxl_v1"].best_loss is not None and by["sdxl_v1"].loss is not None
    assert by["sdxl_v2"].state == "failed" and by["sdxl_v2"].last_alert
    assert by["optimization_overnight"].kind == "trials" and by["optimization_overnight"].state == "converged"
    assert view.reread == 2
    again = w.refresh()
    assert again.reread == 0 and again.rows == view.rows


def test_watcher_rereads_only_the_run_that_changed(tmp_path: Path) -> None:
    build_runs_folder(tmp_path)
    w = RunsWatcher(tmp_path, live_dirs=_no_live)
    w.refresh()
    with open(tmp_path / "luca" / "sdxl_v1" / "training.log", "a") as f:
        f.write("epoch 3/3\n")
    assert w.refresh().reread == 1


def test_optimisation_best_score_source_and_convergence() -> None:
    opt = read_optimisation(FIXTURE_TRIALS, now=0.0)
    assert opt.best is not None and opt.best.name == "trial_0025"
    assert opt.score_field == "score" and opt.score_source == "result.json"
    assert opt.convergence_alert and "Convergence reached" in opt.convergence_alert
    assert opt.state == "converged"
    states = {t.name: t.state for t in opt.trials}
    assert states["trial_0030"] == "failed" and states["trial_0031"] == "no result"
    values = [v for _, _, v in opt.best_so_far]
    assert values == sorted(values) and values[-1] == 0.864
    from sdxl_tui.sources.optimisation import convergence

    xs, ys = convergence(opt)
    assert xs == [1.0, 2.0, 3.0, 4.0] and ys == sorted(ys) and ys[-1] == 0.864  # 4 scored trials


def test_demo_folder_is_a_folder_of_runs(tmp_path: Path) -> None:
    from sdxl_tui.sim.folders import build_demo_folder

    luca = build_demo_folder(tmp_path, trials=3)
    view = RunsWatcher(luca, live_dirs=_no_live).refresh()
    assert {r.name: r.state for r in view.rows} == {
        "sdxl_v1": "finished", "sdxl_v2": "failed", "optimization_overnight": "converged"}
    from sdxl_tui.formats.safetensors import peek_metadata

    ckpt = view.optimisations[0].trials[0].checkpoint
    assert ckpt is not None and peek_metadata(ckpt)["ss_base_model_version"] == "sd_v1"  # SD1.5 trials
    opt = view.optimisations[0]
    assert opt.best is not None and opt.best.name == "trial_0003" and opt.best.checkpoint


def test_an_sd15_simulated_run_is_kind_sd15(tmp_path: Path) -> None:
    from sdxl_tui.formats.safetensors import read_header
    from sdxl_tui.sim.folders import SD15_SCRIPT_ARGS

    run = sim_run(tmp_path / "sd15_v1", "luca_sd15", *SD15_SCRIPT_ARGS, "--clip_skip", "2")
    header = read_header(run / "luca_sd15.safetensors", names=True)
    assert header.complete and header.metadata["ss_base_model_version"] == "sd_v1"
    assert any(n.startswith("lora_te_text_model") for n in header.tensor_names)
    assert not any(n.startswith(("lora_te1_", "lora_te2_")) for n in header.tensor_names)
    assert any(n.startswith("lora_unet_down_blocks_0_attentions_0") for n in header.tensor_names)
    row = RunsWatcher(tmp_path, live_dirs=_no_live).refresh().rows[0]
    assert row.kind == "SD1.5" and row.state == "finished"
    assert "SDXL" not in (run / "training.log").read_text()  # no SDXL clip_skip warning


def test_a_live_run_comes_first_with_its_pid_and_gpu(tmp_path: Path) -> None:
    """A real simulated trainer process: the one process scan finds it, the row is live and
    first, and the one NVML sample (fake NVML: the trainer holds 17 GiB) fills its GPU."""
    import signal
    import time

    from fakes.fake_nvml import FakeDevice, FakeNVML

    from sdxl_tui.sim import start_simulated
    from sdxl_tui.sources.gpu import GpuMonitor

    sim_run(tmp_path / "sdxl_v1", "done")
    live = tmp_path / "sdxl_v2"
    proc = start_simulated(live, ["--output_name", "live", "--max_train_epochs", "50", "--sim-step-seconds", "0.5",
                                  "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "20",
                                  "--logging_dir", str(live / "logs"), "--log_with", "tensorboard"])
    try:
        nvml = FakeNVML([FakeDevice(processes={proc.pid: 17 * 1024**3})])
        w = RunsWatcher(tmp_path, gpu=GpuMonitor(nvml=nvml).sample)
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:
            rows = w.refresh().rows
            row = rows[0]
            if row.live and row.step:
                break
            time.sleep(0.2)
        assert row is not None and row.name == "sdxl_v2" and row.live and row.pid == proc.pid
        assert row.gpu == "GPU0 97% 17.0 GiB" and row.state in ("training", "saving", "sampling")
        assert w.refresh().reread >= 1  # a live run is read again every refresh
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_skeleton_names_the_rows_before_the_first_read(runs_root: Path) -> None:
    w = RunsWatcher(runs_root, live_dirs=_no_live)
    first = w.skeleton()
    assert {r.name: r.state for r in first.rows} == {
        "sdxl_v1": "reading", "sdxl_v2": "reading", "optimization_overnight": "reading"}
    full = w.refresh()
    assert {r.name: r.state for r in w.skeleton().rows} == {r.name: r.state for r in full.rows}
