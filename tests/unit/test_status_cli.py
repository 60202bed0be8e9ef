"""`sdxl-tui status`: text, the documented JSON schema, exit codes; GPU alerts through fake NVML."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sdxl_tui.cli import main
from sdxl_tui.model import RunState
from sdxl_tui.sources.gpu import GpuMonitor
from sdxl_tui.sources.rundir import RunReader
from tests.fakes import fake_nvml as fk

#: The issue's minimum schema (README "status --json").
REQUIRED = {"state", "epoch", "epochs", "step", "total_steps", "eta_seconds", "loss", "checkpoints",
            "process", "gpus", "alerts", "state_reason", "eta_at", "config", "samples", "evaluations",
            "problems"}


def test_status_text_on_the_real_run(capsys: pytest.CaptureFixture[str], real_run: Path) -> None:
    assert main(["status", str(real_run), "--no-gpu", "--no-procs"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("state       finished:")
    assert "step 9/9 (100.0%)" in out
    assert "tiny_lora-000002.safetensors" in out and "complete" in out
    assert "INFO    finished: training finished at step 9" in out


def test_status_json_schema_on_the_real_run(capsys: pytest.CaptureFixture[str], real_run: Path) -> None:
    assert main(["status", str(real_run), "--json", "--no-gpu", "--no-procs"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(data)
    assert data["schema"] == 1
    assert (data["state"], data["step"], data["total_steps"], data["epochs"]) == ("finished", 9, 9, 3)
    assert data["eta_seconds"] is None and data["process"] is None and data["gpus"] == []
    assert data["loss"]["current"] == pytest.approx(0.9742230772972107)
    assert data["loss"]["average"] == pytest.approx(1.0538215637207031)
    ck = data["checkpoints"][-1]
    assert {"name", "path", "kind", "epoch", "step", "size", "complete", "metadata"} <= set(ck)
    assert (ck["name"], ck["kind"], ck["epoch"], ck["step"], ck["size"], ck["complete"]) == (
        "tiny_lora.safetensors", "final", 3, 9, 21585180, True)
    assert ck["metadata"]["ss_output_name"] == "tiny_lora"
    assert data["config"]["network_dim"] == 4 and data["config"]["steps_per_epoch"] == 3
    assert [a["kind"] for a in data["alerts"] if a["kind"] != "reader"] == ["finished"]
    assert all({"kind", "severity", "message", "fix", "key"} <= set(a) for a in data["alerts"])


def test_missing_directory_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["status", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"sdxl-tui status: no such directory: {missing}\n"
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["status", str(f), "--json"]) == 2
    assert capsys.readouterr().err.strip() == f"sdxl-tui status: not a directory: {f}"


def test_bad_settings_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path), "--config", str(tmp_path / "none.toml"), "--no-gpu"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_empty_directory_is_waiting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path), "--json", "--no-gpu", "--no-procs"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "waiting" and data["checkpoints"] == [] and data["loss"]["current"] is None


def test_help_documents_exit_codes_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    out = capsys.readouterr().out
    for text in ("--json", "--no-procs", "--logs", "exit status", "permission denied", "state_reason"):
        assert text in out


def test_gpu_alerts_through_the_nvml_boundary(real_run: Path) -> None:
    reader = RunReader(real_run, gpu=GpuMonitor(nvml=fk.hot_gpu()).sample, procs=False)
    snap = reader.refresh()
    assert snap.state is RunState.FINISHED
    assert snap.gpu.available and snap.gpu.gpus[0].temperature == 89
    kinds = {a.kind: a for a in snap.alerts}
    assert "89 C" in kinds["gpu_heat"].message and "slowdown at 90 C" in kinds["gpu_heat"].message
    assert "hw_thermal_slowdown" in kinds["gpu_throttle"].message
    no_driver = RunReader(real_run, gpu=GpuMonitor(nvml=fk.driver_not_loaded()).sample, procs=False).refresh()
    assert not no_driver.gpu.available and no_driver.gpu.reason
    assert not [a for a in no_driver.alerts if a.kind.startswith("gpu")]


@pytest.mark.slow
def test_console_script_path_end_to_end(real_run: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "sdxl_tui", "status", str(real_run), "--json", "--no-gpu"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"] == "finished"
    assert "tbparse" not in out.stderr


def test_the_quick_exit_writes_everything_and_keeps_the_exit_status(real_run: Path, tmp_path: Path) -> None:
    """``status`` ends its process with ``os._exit`` (``cli.entry``): the whole output is still
    there through a pipe, the exit status is the command's, and a reader that stops early
    (``| head -1``) gets no traceback."""
    cmd = [sys.executable, "-m", "sdxl_tui", "status", str(real_run), "--no-gpu"]
    full = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert full.returncode == 0 and full.stdout.endswith("}\n") and json.loads(full.stdout)["checkpoints"]
    missing = subprocess.run([*cmd[:4], str(tmp_path / "nope")], capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    head = subprocess.run(f"{shlex.join(cmd)} | head -1", shell=True, capture_output=True, text=True,
                          timeout=60, check=False)
    assert head.stdout.count("\n") == 1 and "Traceback" not in head.stderr and "Exception" not in head.stderr


@pytest.mark.slow
def test_benchmark_smoke_with_tiny_sizes(tmp_path: Path) -> None:
    """The benchmark runs end to end (tiny sizes, no tbparse, no 1 GB run); figures not asserted."""
    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_reader.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--workdir", str(tmp_path), "--repeat", "1", "--log-mb", "0.3",
         "--scalars", "2000", "--checkpoints", "3", "--skip-tbparse", "--skip-rss", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sdxl-tui status --json (cold process, median)" in out.stdout
    assert "refresh after 100 new steps (median)" in out.stdout
    figures = json.loads(out.stdout[out.stdout.index("{"):])
    assert figures["status_state"] == "finished"
    assert figures["refresh_last_step"] > 0


def test_log_and_logs_options_point_outside_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str], real_run: Path) -> None:
    rc = main(["status", str(tmp_path), "--log", str(real_run / "training.log"), "--logs", str(real_run / "logs"),
               "--json", "--no-gpu", "--no-procs"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "finished" and data["step"] == 9 and data["checkpoints"] == []
    assert data["log_path"] == str(real_run / "training.log")
    assert data["series"]["loss/current"]["count"] == 18 and data["loss"]["source"] == "tensorboard"
    assert data["config"]["num_batches_per_epoch"] == 6  # from the log's "running training" block


def test_text_lists_one_remedy_per_line_for_a_simulated_oom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.commands.status import _split_fix
    from sdxl_tui.sim import run_simulated

    run = tmp_path / "run"
    rc = run_simulated(run, ["--output_name", "luca", "--max_train_epochs", "1", "--gradient_accumulation_steps", "2",
                             "--train_batch_size", "4", "--logging_dir", str(run / "logs"), "--sim-step-seconds", "0",
                             "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "8",
                             "--sim-fault", "oom", "--sim-fault-step", "2"])
    assert rc == 1
    assert main(["status", str(run), "--no-gpu", "--no-procs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("state       failed: CUDA out of memory at step 1")
    i = next(n for n, ln in enumerate(lines) if ln.startswith("  ERROR   oom: CUDA out of memory"))
    assert lines[i + 1] == ("          fix: set --train_batch_size 2 and --gradient_accumulation_steps 4 "
                            "(effective batch 8 -> 8 unchanged)")
    assert lines[i + 2] == "               add --gradient_checkpointing (missing)"
    assert _split_fix("a; b (c; d); e") == ["a", "b (c; d)", "e"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("logs", [False, True])
def test_status_json_same_with_the_event_prefetch_child(logs: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], real_run: Path) -> None:
    """The prefetch child (forced on for these small files) changes nothing in the output,
    with the default roots and with --logs; the child is reaped before status returns."""
    import os

    from sdxl_tui.sources import events

    argv = ["status", str(real_run), "--json", "--no-gpu", "--no-procs", "--no-cache"]
    if logs:
        argv += ["--logs", str(real_run / "logs")]
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    started: list[bool] = []
    real_prefetch = events.EventReader.prefetch

    pids: list[int] = []

    def forced(self: events.EventReader, *, min_bytes: int = 0) -> bool:
        started.append(real_prefetch(self, min_bytes=0))
        if self._fork is not None and self._fork.pid not in pids and self._fork.pid is not None:
            pids.append(self._fork.pid)
        return started[-1]

    monkeypatch.setattr(events.EventReader, "prefetch", forced)
    assert main(argv) == 0
    forked = json.loads(capsys.readouterr().out)
    assert started and started[0] is True
    for data in (plain, forked):
        data.pop("taken_at")
        for alert in data["alerts"]:
            alert.pop("at", None)
    assert forked == plain
    assert len(pids) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # already reaped: no child left behind
