"""formats/slurm.py and formats/nvidia_smi.py against what real Slurm and nvidia-smi printed.

The recorded outputs are in tests/fixtures/slurm (see its README for how they were made).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdxl_tui.formats.nvidia_smi import parse_query_gpu, query_argv
from sdxl_tui.formats.slurm import (
    BatchSpec,
    SlurmConfig,
    SlurmConfigError,
    batch_script,
    check_gres,
    check_mem,
    format_time_limit,
    parse_duration,
    parse_end_record,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_squeue,
    parse_time_limit,
    queue_position,
    sbatch_argv,
    slurm_config_from_dict,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"


def rec(name: str) -> str:
    return (FIX / f"{name}.txt").read_text(encoding="utf-8")


def local(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 5400), ("1:30", 90), ("01:02:03", 3723), ("2-3", 2 * 86400 + 3 * 3600),
    ("2-3:04", 2 * 86400 + 3 * 3600 + 4 * 60), ("1-00:00:05", 86405), ("0:00", 0),
    ("UNLIMITED", None), ("INFINITE", None), ("NOT_SET", None), ("10:00", 600),
])
def test_parse_duration_takes_every_slurm_form(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1:2:3:4", "abc", "-1", "1-", "1h", "1-2:3:4:5", "1.5"])
def test_parse_duration_rejects_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_time_limit_errors_name_the_accepted_forms() -> None:
    with pytest.raises(SlurmConfigError, match=r"MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED"):
        parse_time_limit("12h")
    with pytest.raises(SlurmConfigError, match="end the job at once"):
        parse_time_limit("0")
    assert parse_time_limit("1-12") == 36 * 3600


def test_format_duration_is_slurms_own_spelling() -> None:
    assert [format_time_limit(s) for s in (None, 59, 600, 3723, 90061)] == [
        "UNLIMITED", "0:59", "10:00", "1:02:03", "1-01:01:01"]
    for s in (59, 600, 3723, 90061):
        assert parse_duration(format_time_limit(s)) == s


@pytest.mark.parametrize("gres", ["gpu", "gpu:1", "gpu:a100:2", "gpu:1,shard:2", "gpu:a100-sxm4-80gb:1"])
def test_gres_syntax_accepted(gres: str) -> None:
    assert check_gres(gres) == gres


@pytest.mark.parametrize("gres", ["", "gpu:", ":1", "gpu 1", "gpu:a100:x:1", "gpu:1,", "gpu;1"])
def test_gres_syntax_rejected(gres: str) -> None:
    with pytest.raises(SlurmConfigError, match="NAME\\[:TYPE\\]\\[:COUNT\\]"):
        check_gres(gres)


def test_mem_syntax() -> None:
    assert [check_mem(m) for m in ("64G", "32000", "500m", "1T")] == ["64G", "32000", "500m", "1T"]
    for bad in ("64 GB", "1.5G", "G", "-1"):
        with pytest.raises(SlurmConfigError):
            check_mem(bad)


# --------------------------------------------------------------------------- the [slurm] table


def test_slurm_table_is_validated_and_kept() -> None:
    cfg = slurm_config_from_dict({
        "partition": "gpu", "gres": "gpu:a100:1", "time": "1-00:00:00", "cpus_per_task": 8, "mem": "64G",
        "account": "lab", "qos": "normal", "extra_args": ["--constraint=a100", "--exclusive"],
        "setup": ["module load cuda/12.1", "source ~/venvs/kohya/bin/activate"],
    })
    assert cfg.sbatch_lines() == [
        "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:a100:1", "#SBATCH --time=1-00:00:00",
        "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64G", "#SBATCH --account=lab", "#SBATCH --qos=normal"]
    assert cfg.time_limit_seconds == 86400
    assert slurm_config_from_dict({"time": 90, "mem": 32000}).time == "90"


@pytest.mark.parametrize(("table", "message"), [
    ({"partitoin": "gpu"}, "unknown key"),
    ({"partition": "gpu a"}, "one word"),
    ({"partition": "gpu#1"}, "one word"),
    ({"time": "12h"}, "not a Slurm time limit"),
    ({"gres": "gpu 1"}, "one word"),
    ({"gres": "gpu:"}, "--gres syntax"),
    ({"cpus_per_task": 0}, "whole number"),
    ({"cpus_per_task": "8"}, "whole number"),
    ({"extra_args": "--exclusive --x"}, None),
    ({"extra_args": ["exclusive"]}, "not an sbatch option"),
    ({"extra_args": ["--output=/tmp/x"]}, "set by sdxl-tui"),
    ({"extra_args": ["--dependency=afterok:1"]}, "queue add --after"),
    ({"setup": ["a\nb"]}, "one shell line"),
    ({"setup": [1]}, "list of strings"),
])
def test_slurm_table_errors_name_the_key(table: dict[str, object], message: str | None) -> None:
    if message is None:  # a single string is one argument, not split by a shell
        assert slurm_config_from_dict(table).extra_args == ("--exclusive --x",)
        return
    with pytest.raises(SlurmConfigError, match=message):
        slurm_config_from_dict(table, where="x.toml")


# --------------------------------------------------------------------------- batch script


def _spec(tmp_path: Path, argv: tuple[str, ...], **slurm: object) -> BatchSpec:
    state = tmp_path / "out" / ".sdxl-tui"
    state.mkdir(parents=True)
    return BatchSpec(slurm=slurm_config_from_dict(slurm), argv=argv, cwd=str(tmp_path),
                     output_dir=str(tmp_path / "out"), log_path=str(tmp_path / "out" / "training.log"),
                     state_dir=str(state), env=(("PYTHONUNBUFFERED", "1"), ("ODD", "a b $HOME 'q'")))


def test_batch_script_runs_the_argv_word_for_word(tmp_path: Path) -> None:
    """Every argv word reaches the trainer as it was, whatever shell syntax it holds."""
    tricky = ("a b", "$(touch pwned)", "it's", "`id`", "; rm -rf x", "*", "\"q\"", "--opt=1 2")
    argv = (sys.executable, "-c", "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['ODD']]))", *tricky)
    spec = _spec(tmp_path, argv, time="10", setup=["echo setup-ran"])
    script = tmp_path / "job.sh"
    script.write_text(batch_script(spec), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                         check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "setup-ran"
    assert json.loads(lines[1]) == [list(tricky), "a b $HOME 'q'"]
    assert not (tmp_path / "pwned").exists()
    end = json.loads((Path(spec.state_dir) / "slurm-end.json").read_text(encoding="utf-8"))
    assert end["exit_code"] == 0 and end["signal"] == "" and end["job_id"] == ""
    assert "#SBATCH --time=10" in script.read_text(encoding="utf-8")


def test_batch_script_records_the_trainers_status(tmp_path: Path) -> None:
    spec = _spec(tmp_path, (sys.executable, "-c", "raise SystemExit(3)"))
    script = tmp_path / "job.sh"
    script.write_text(batch_script(spec), encoding="utf-8")
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, timeout=60,
                         env={**os.environ, "SLURM_JOB_ID": "77"})
    assert res.returncode == 3
    end = json.loads((Path(spec.state_dir) / "slurm-end.json").read_text(encoding="utf-8"))
    info = parse_end_record(end, "77")
    assert info is not None and info.exit_code == 3 and info.ended_at is not None
    assert parse_end_record(end, "78") is None  # an older job's record is not this job's


def test_sbatch_line_is_an_argv_with_escaped_file_patterns(tmp_path: Path) -> None:
    spec = BatchSpec(slurm=SlurmConfig(extra_args=("--exclusive",)), argv=("python",), cwd="/w d",
                     output_dir="/runs/100%", log_path="/runs/100%/training.log", state_dir="/runs/100%/.sdxl-tui",
                     job_name="sdxl-tui:luca")
    argv = sbatch_argv(spec, "/runs/100%/.sdxl-tui/slurm-batch.sh", dependency="afterany:41")
    assert argv == ["sbatch", "--parsable", "--job-name=sdxl-tui:luca", "--chdir=/w d",
                    "--output=/runs/100%%/training.log", "--error=/runs/100%%/training.log",
                    "--open-mode=append", "--dependency=afterany:41", "--exclusive",
                    "/runs/100%/.sdxl-tui/slurm-batch.sh"]


# --------------------------------------------------------------------------- recorded outputs


def test_sbatch_parsable() -> None:
    assert parse_sbatch_parsable(rec("sbatch-parsable")) == ("1", None)
    assert parse_sbatch_parsable("4242;gpu-cluster\n") == ("4242", "gpu-cluster")
    with pytest.raises(ValueError, match="no job id"):
        parse_sbatch_parsable("sbatch: error: Batch job submission failed: Invalid partition name specified\n")


def test_squeue_pending_running_and_ended_jobs() -> None:
    pending = parse_squeue(rec("squeue-pending-resources"))["2"]
    assert (pending.state, pending.reason, pending.nodes, pending.time_limit, pending.elapsed) == (
        "PENDING", "Resources", None, 300, 0)
    assert pending.submitted_at == local("2026-12-04T18:03:02") and pending.started_at is None
    assert parse_squeue(rec("squeue-pending-priority"))["3"].reason == "Priority"
    running = parse_squeue(rec("squeue-running"))["1"]
    assert (running.state, running.reason, running.nodes, running.time_limit, running.elapsed, running.user,
            running.partition) == ("RUNNING", None, "vm", None, 4, "root", "debug")
    assert running.started_at == local("2026-12-04T18:03:02") and running.ended_at is None
    ended = {name: parse_squeue(rec(f"squeue-{name}")) for name in
             ("completed", "failed", "cancelled", "interrupted", "timeout")}
    assert {n: next(iter(j.values())).state for n, j in ended.items()} == {
        "completed": "COMPLETED", "failed": "FAILED", "cancelled": "CANCELLED", "interrupted": "CANCELLED",
        "timeout": "TIMEOUT"}
    timeout = ended["timeout"]["8"]
    assert (timeout.reason, timeout.time_limit, timeout.elapsed) == ("TimeLimit", 60, 80)
    assert timeout.ended_at == local("2026-12-04T18:04:29")
    assert parse_squeue(rec("squeue-unknown-job.stderr")) == {}


def test_queue_position_among_pending_jobs() -> None:
    order = rec("squeue-pending-order")
    assert (queue_position(order, "2"), queue_position(order, "3"), queue_position(order, "9")) == (1, 2, None)


def test_scontrol_show_job() -> None:
    pend = parse_scontrol_job(rec("scontrol-pending"))
    assert pend is not None and (pend.state, pend.reason, pend.nodes, pend.time_limit, pend.started_at) == (
        "PENDING", "Resources", None, 300, None)
    done = {n: parse_scontrol_job(rec(f"scontrol-{n}")) for n in
            ("running", "completed", "failed", "cancelled", "interrupted", "timeout")}
    got = {n: (j.state, j.exit_code, j.exit_signal) for n, j in done.items() if j is not None}
    assert got == {
        "running": ("RUNNING", 0, None), "completed": ("COMPLETED", 0, None), "failed": ("FAILED", 3, None),
        "cancelled": ("CANCELLED", None, 15), "interrupted": ("CANCELLED", 130, None),
        "timeout": ("TIMEOUT", None, 15)}
    t = done["timeout"]
    assert t is not None and (t.reason, t.time_limit, t.elapsed, t.user, t.nodes) == ("TimeLimit", 60, 80, "root", "vm")
    assert t.ended_at == local("2026-12-04T18:04:29") and t.started_at == local("2026-12-04T18:03:09")
    assert parse_scontrol_job(rec("scontrol-unknown-job.stderr")) is None


def test_end_record_written_by_an_interrupted_job() -> None:
    info = parse_end_record(json.loads(rec("slurm-end-interrupted")), "7")
    assert info is not None and (info.exit_code, info.nodes) == (130, "vm")


# --------------------------------------------------------------------------- nvidia-smi


def test_nvidia_smi_query_recorded_on_an_h200() -> None:
    assert query_argv()[1].startswith("--query-gpu=index,name,uuid,memory.used,memory.total")
    for name in ("nvidia-smi-query-gpu.csv", "nvidia-smi-query-gpu-units.csv"):
        (gpu,) = parse_query_gpu((FIX / name).read_text(encoding="utf-8"))
        assert (gpu.index, gpu.name, gpu.uuid) == (0, "NVIDIA H200", "GPU-0ab0242c-0805-f5bd-f659-ef5c9cb82d8e")
        assert (gpu.memory_used, gpu.memory_total) == (0, 143771 * 1024 * 1024)
        assert (gpu.utilization, gpu.memory_utilization, gpu.temperature, gpu.power_limit) == (0, 0, 42, 700.0)
        assert gpu.power_draw is not None and 90 < gpu.power_draw < 110


def test_nvidia_smi_not_supported_fields_and_other_lines() -> None:
    text = "0, Tesla T4, GPU-1, 100, 15360, [N/A], [Not Supported], 40, [N/A], 70.00\nNo devices were found\n"
    (gpu,) = parse_query_gpu(text)
    assert (gpu.utilization, gpu.memory_utilization, gpu.power_draw, gpu.power_limit) == (None, None, None, 70.0)
    assert parse_query_gpu((FIX / "nvidia-smi-query-gpu-throttle.csv").read_text(encoding="utf-8")) == ()
