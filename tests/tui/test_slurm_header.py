"""The header's Slurm job and queue words, and the watcher giving way to polling for a Slurm run."""

from __future__ import annotations

import threading
from pathlib import Path

from sdxl_tui.model import QueueEntry, RunSnapshot, RunState, SchedulerStatus
from sdxl_tui.tui.feeds import DirectoryWatcher
from sdxl_tui.tui.widgets.progress import header_text, job_text, queue_text


def test_job_words_per_state() -> None:
    pending = SchedulerStatus(kind="slurm", job_id="12", state="PENDING", reason="Resources", queue_position=2)
    assert job_text(pending) == "slurm 12 PENDING (Resources) #2"
    assert job_text(SchedulerStatus(kind="slurm", job_id="12", state="RUNNING", node="gpu07")) == "slurm 12 RUNNING gpu07"
    assert job_text(SchedulerStatus(kind="slurm", job_id="12", state="TIMEOUT", node="gpu07")) == "slurm 12 TIMEOUT"


def test_header_shows_the_job_and_the_queue_only_when_there_are_some() -> None:
    queue = (QueueEntry(id="1", launch_file="a.toml", output_dir="/r/a", status="done"),
             QueueEntry(id="2", launch_file="b.toml", output_dir="/r/b", status="submitted"),
             QueueEntry(id="3", launch_file="c.toml", output_dir="/r/c", status="waiting"))
    assert queue_text(queue) == "queue: 1 submitted, 1 waiting"
    assert queue_text(queue[:1]) == ""
    job = SchedulerStatus(kind="slurm", job_id="41", state="PENDING", reason="Priority", queue_position=3)
    snap = RunSnapshot(run_dir="/r/b", taken_at=0.0, state=RunState.WAITING, scheduler=job, queue=queue)
    plain = header_text(snap).plain
    assert "slurm 41 PENDING (Priority) #3" in plain and "queue: 1 submitted, 1 waiting" in plain
    local = header_text(RunSnapshot(run_dir="/r/b", taken_at=0.0, state=RunState.WAITING)).plain
    assert "slurm" not in local and "queue" not in local


def test_a_slurm_run_is_polled(tmp_path: Path) -> None:
    watcher = DirectoryWatcher(threading.Event())
    try:
        assert watcher.sync([str(tmp_path)]) == "inotify"
        assert watcher.poll_instead("polling (Slurm job: its node writes the files)") == (
            "polling (Slurm job: its node writes the files)")
        assert watcher.mode.startswith("polling (Slurm")
        assert watcher.poll_instead("again") is None  # said once
        assert watcher.sync([str(tmp_path / "x")]) is None  # and it stays polling
    finally:
        watcher.stop()
