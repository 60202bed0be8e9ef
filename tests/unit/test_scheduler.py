"""sources/scheduler.py and sources/jobstate.py on outputs recorded from real Slurm.

The runner replays tests/fixtures/slurm (what squeue, scontrol, sacct and srun printed on the
one-node test cluster); the tests against the live cluster are in tests/slurm/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from sdxl_tui.formats.statedir import RunRecord, read_stop_record
from sdxl_tui.model import RunState, SchedulerStatus, Severity, StateDir
from sdxl_tui.sources.jobstate import (
    merge_scheduler_state,
    scheduler_alert,
    scheduler_liveness,
)
from sdxl_tui.sources.scheduler import (
    CommandResult,
    SchedulerWatcher,
    query_job,
    read_slurm_record,
    remote_gpu,
    run_command,
)
from sdxl_tui.sources.stops import applicable_stop, describe_stop

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"


def rec(name: str) -> str:
    return (FIX / f"{name}.txt").read_text(encoding="utf-8")


class Replay:
    """Answers each Slurm command with a recorded output; remembers what was asked."""

    def __init__(self, *, squeue: str | None = None, scontrol: str | None = None, order: str | None = None,
                 srun: tuple[int, str, str] | None = None) -> None:
        self.squeue, self.scontrol, self.order, self.srun = squeue, scontrol, order, srun
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        if argv[0] == "squeue" and "PD" in argv:
            return CommandResult(0, rec(self.order or "squeue-pending-order"), "")
        if argv[0] == "squeue":
            if self.squeue is None:
                return CommandResult(1, "", rec("squeue-unknown-job.stderr"))
            return CommandResult(0, rec(self.squeue), "")
        if argv[0] == "scontrol":
            if self.scontrol is None:
                return CommandResult(1, "", rec("scontrol-unknown-job.stderr"))
            return CommandResult(0, rec(self.scontrol), "")
        if argv[0] == "sacct":
            return CommandResult(1, "", rec("sacct-disabled.stderr"))
        if argv[0] == "srun" and self.srun is not None:
            return CommandResult(*self.srun)
        raise AssertionError(f"unexpected command {argv}")


def test_pending_job_with_its_place_in_the_queue() -> None:
    runner = Replay(squeue="squeue-pending-priority")
    s = query_job("3", runner=runner)
    assert (s.state, s.reason, s.queue_position, s.node, s.time_limit, s.source) == (
        "PENDING", "Priority", 2, None, 300, "squeue")
    assert [c[0] for c in runner.calls] == ["squeue", "squeue"]  # no scontrol for a live job
    assert runner.calls[1][:5] == ["squeue", "-h", "-p", "debug", "-t"]


def test_running_job_asks_only_squeue() -> None:
    runner = Replay(squeue="squeue-running")
    s = query_job("1", runner=runner, cluster="sdxltest")
    assert (s.state, s.node, s.elapsed, s.time_limit, s.exit_code, s.cluster) == ("RUNNING", "vm", 4, None, None, "sdxltest")
    assert len(runner.calls) == 1


def test_ended_job_gets_its_exit_code_from_scontrol() -> None:
    s = query_job("7", runner=Replay(squeue="squeue-interrupted", scontrol="scontrol-interrupted"))
    assert (s.state, s.exit_code, s.exit_signal, s.source, s.ended_at is not None) == ("CANCELLED", 130, None, "squeue", True)
    t = query_job("8", runner=Replay(squeue="squeue-timeout", scontrol="scontrol-timeout"))
    assert (t.state, t.reason, t.exit_signal, t.time_limit, t.elapsed) == ("TIMEOUT", "TimeLimit", 15, 60, 80)


def test_forgotten_job_without_sacct_falls_back_to_the_end_record(tmp_path: Path) -> None:
    (tmp_path / "slurm-end.json").write_text(rec("slurm-end-interrupted"), encoding="utf-8")
    s = query_job("7", runner=Replay(), state_dir=tmp_path)
    assert (s.state, s.exit_code, s.node, s.source) == (None, 130, "vm", "end record")
    assert s.problem is not None and "accounting storage is disabled" in s.problem
    gone = query_job("9", runner=Replay(), state_dir=tmp_path)  # the record is about job 7
    assert gone.state is None and gone.exit_code is None and "no longer known" in (gone.problem or "")


def test_no_slurm_commands_here() -> None:
    s = query_job("5", runner=lambda argv: run_command(["sdxl-tui-no-such-squeue", *argv[1:]]))
    assert s.state is None and s.problem is not None and "command not found" in s.problem


def test_remote_gpu_parses_nvidia_smi_or_says_why_not() -> None:
    running = SchedulerStatus(kind="slurm", job_id="1", state="RUNNING", node="gpu07")
    csv = (FIX / "nvidia-smi-query-gpu.csv").read_text(encoding="utf-8")
    ok = remote_gpu(running, runner=Replay(srun=(0, csv, "")))
    assert ok.available and ok.gpus[0].name == "NVIDIA H200"
    missing = remote_gpu(running, runner=Replay(srun=(2, "", rec("srun-nvidia-smi-missing.stderr"))))
    assert not missing.available
    assert missing.reason == ("GPU figures not available from here: nvidia-smi on node gpu07 via srun: "
                              "slurmstepd-vm: error: execve(): nvidia-smi: No such file or directory")
    queued = remote_gpu(SchedulerStatus(kind="slurm", job_id="2", state="PENDING"), runner=Replay())
    assert queued.reason == "GPU figures not available from here: Slurm job 2 is not running"


def _write_record(run_dir: Path, **fields: object) -> None:
    (run_dir / ".sdxl-tui").mkdir(parents=True, exist_ok=True)
    data = {"backend": "slurm", "job_id": "1", "cluster": "sdxltest", "submitted_at": 1.0, **fields}
    (run_dir / ".sdxl-tui" / "run.json").write_text(json.dumps(data), encoding="utf-8")


def test_watcher_asks_at_its_interval_and_only_for_slurm_runs(tmp_path: Path) -> None:
    clock = [100.0]
    runner = Replay(squeue="squeue-running")
    w = SchedulerWatcher(tmp_path, runner=runner, interval=10.0, clock=lambda: clock[0])
    assert w.sample() is None and runner.calls == []  # a local run: nothing asked
    (tmp_path / ".sdxl-tui").mkdir()
    (tmp_path / ".sdxl-tui" / "run.json").write_text(json.dumps({"pid": 5, "argv": ["x"]}), encoding="utf-8")
    assert w.sample() is None and runner.calls == []
    _write_record(tmp_path)
    assert read_slurm_record(tmp_path) is not None
    first = w.sample()
    assert first is not None and first.state == "RUNNING" and len(runner.calls) == 1
    clock[0] += 5
    assert w.sample() is first and len(runner.calls) == 1
    clock[0] += 6
    w.sample()
    assert len(runner.calls) == 2


# --------------------------------------------------------------------------- the state merge


def S(state: str | None, **kw: object) -> SchedulerStatus:
    return SchedulerStatus(kind="slurm", job_id="12", state=state, **kw)  # type: ignore[arg-type]


def test_liveness_from_the_job() -> None:
    assert scheduler_liveness(S("RUNNING"), None, None, None) == (True, None, None)
    assert scheduler_liveness(S("PENDING"), None, None, None) == (None, None, None)
    assert scheduler_liveness(S("CANCELLED", exit_code=130), None, None, None) == (False, 130, None)
    assert scheduler_liveness(S("TIMEOUT", exit_signal=15), None, None, None) == (False, None, 15)
    assert scheduler_liveness(S("COMPLETING"), True, None, None) == (True, None, None)
    assert scheduler_liveness(S(None), None, 3, None) == (None, 3, None)


def test_pending_is_shown_before_any_log() -> None:
    state, reason = merge_scheduler_state(
        RunState.WAITING, "no output yet and no trainer running",
        S("PENDING", reason="Resources", queue_position=2, submitted_at=1000.0), step=None, now=1000.0 + 300)
    assert state is RunState.WAITING
    assert reason == "Slurm job 12 pending (Resources), #2 in the queue, submitted 5 min ago"


def test_running_job_names_its_node() -> None:
    state, reason = merge_scheduler_state(RunState.WAITING, "x", S("RUNNING", node="gpu07", elapsed=65,
                                                                   time_limit=3600), step=None)
    assert (state, reason) == (RunState.LOADING, "Slurm job 12 running on gpu07 (1:05 of 1:00:00); no log yet")
    state, reason = merge_scheduler_state(RunState.TRAINING, "the trainer is alive", S("RUNNING", node="gpu07"), step=5)
    assert (state, reason) == (RunState.TRAINING, "Slurm job 12 running on gpu07; the trainer is alive")


STATES = (StateDir(name="luca-000002-state", path="/runs/luca/luca-000002-state", epoch=2, step=40, complete=True),
          StateDir(name="luca-000004-state", path="/runs/luca/luca-000004-state", epoch=4, step=80, complete=False))


@pytest.mark.parametrize(("job", "file_state", "expected_state", "expected"), [
    (S("TIMEOUT", time_limit=60), RunState.INTERRUPTED, RunState.INTERRUPTED,
     ('hit the time limit (1:00) at step 97: resume with resume = "/runs/luca/luca-000002-state" in [args] '
      "and a longer [slurm] time (sbatch --time)")),
    (S("OUT_OF_MEMORY", node="gpu07"), RunState.INTERRUPTED, RunState.FAILED,
     ("host out of memory on gpu07 at step 97: the job passed its Slurm memory limit (--mem; host RAM, not GPU "
      "VRAM); raise [slurm] mem")),
    (S("NODE_FAIL", node="gpu07"), RunState.INTERRUPTED, RunState.FAILED, "node gpu07 failed (Slurm NODE_FAIL) at step 97"),
    (S("PREEMPTED"), RunState.INTERRUPTED, RunState.INTERRUPTED, "preempted by Slurm for another job at step 97"),
    (S("CANCELLED"), RunState.FAILED, RunState.INTERRUPTED,
     "Slurm job 12 CANCELLED (scancel by someone other than sdxl-tui) at step 97; no final checkpoint"),
    (S("FAILED", exit_code=1), RunState.INTERRUPTED, RunState.FAILED,
     "Slurm job 12 FAILED (exit code 1) at step 97, without the final checkpoint"),
    (S("COMPLETED"), RunState.FINISHED, RunState.FINISHED, "'model saved.' logged; Slurm job 12 COMPLETED"),
])
def test_ended_jobs(job: SchedulerStatus, file_state: RunState, expected_state: RunState, expected: str) -> None:
    file_reason = "'model saved.' logged" if file_state is RunState.FINISHED else "the trainer has exited"
    state, reason = merge_scheduler_state(file_state, file_reason, job, step=97, states=STATES)
    assert state is expected_state
    assert reason.startswith(expected)


def test_cancelled_by_sdxl_tui_says_stopped_by_you(tmp_path: Path) -> None:
    (tmp_path / ".sdxl-tui").mkdir()
    stop = {"stop": {"by": "sdxl-tui kill", "how": "kill", "signal": "SIGINT", "requested_at": 50.0}}
    (tmp_path / ".sdxl-tui" / "last-kill.json").write_text(json.dumps(stop), encoding="utf-8")
    record = read_stop_record(tmp_path)
    later = RunRecord(started_at=100.0, backend="slurm", job_id="12")
    assert applicable_stop(record, alive=False, record=later, last_write_at=60.0) is None  # asked before this job
    earlier = RunRecord(started_at=40.0, backend="slurm", job_id="12")
    assert applicable_stop(record, alive=True, record=earlier, last_write_at=60.0) is None  # still running
    applied = applicable_stop(record, alive=False, record=earlier, last_write_at=60.0)
    assert applied is not None and applied.by == "sdxl-tui kill"
    by = describe_stop(applied)
    assert by.startswith("sdxl-tui kill, SIGINT, ")
    state, reason = merge_scheduler_state(RunState.FAILED, "PID 4 exited with status 130", S("CANCELLED"),
                                          step=31, stopped=by)
    assert (state, reason) == (RunState.STOPPED, f"stopped by you ({by}) at step 31; Slurm job 12 CANCELLED")


def test_alerts_for_abnormal_ends_only() -> None:
    alert = scheduler_alert(RunState.INTERRUPTED, "hit the time limit", S("TIMEOUT"), 5.0)
    assert alert is not None and (alert.kind, alert.severity, alert.key) == ("slurm", Severity.WARNING, "slurm:12:TIMEOUT")
    oom = scheduler_alert(RunState.FAILED, "host out of memory", S("OUT_OF_MEMORY"), 5.0)
    assert oom is not None and oom.severity is Severity.ERROR and "raise [slurm] mem" in (oom.fix or "")
    assert scheduler_alert(RunState.FINISHED, "done", S("COMPLETED"), 5.0) is None
    assert scheduler_alert(RunState.INTERRUPTED, "stopped", S("CANCELLED"), 5.0) is None
