"""Unit tests of the pure helpers behind the dashboard: notify.py, charting.py, feeds helpers."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from sdxl_tui import notify
from sdxl_tui.charting import (
    Canvas,
    Plot,
    downsample_minmax,
    ema_debiased,
    plot,
    y_range,
)
from sdxl_tui.model import Alert, LogLine, RunSnapshot, RunState, Severity

ALERT = Alert("nan", Severity.ERROR, "loss is NaN since step 412", fix="lower the learning rate", key="nan:412", step=412)


# ----------------------------------------------------------------------------- notify
def test_osc_sequences_plain_and_inside_tmux() -> None:
    plain = notify.desktop_sequences(ALERT, run_name="luca", environ={})
    assert plain.startswith("\x1b]9;sdxl-tui luca: nan - loss is NaN since step 412\a")
    assert "\x1b]777;notify;sdxl-tui luca: nan;loss is NaN since step 412\a" in plain
    wrapped = notify.desktop_sequences(ALERT, run_name="luca", environ={"TMUX": "/tmp/tmux-1000/default,42,0"})
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]9;") and wrapped.endswith("\x1b\\")
    assert wrapped.count("\x1bPtmux;") == 2


def test_control_characters_cannot_break_out_of_the_osc() -> None:
    evil = Alert("crash", Severity.ERROR, "boom\x1b]52;c;AAAA\a;rest")
    seq = notify.osc777("t", evil.message)
    assert seq.count("\x1b") == 1 and seq.count("\a") == 1
    assert seq.split(";")[2:] == ["t", "boom ]52,c,AAAA ,rest\a"]


def test_terminal_output_respects_settings() -> None:
    assert notify.terminal_output(ALERT, bell=False, desktop=False, environ={}) == ""
    assert notify.terminal_output(ALERT, bell=True, desktop=False, environ={}) == "\a"


def test_tracker_announces_each_key_once() -> None:
    tracker = notify.AlertTracker()
    other = Alert("stall", Severity.WARNING, "no step for 20 min", key="stall:900")
    assert tracker.new([ALERT]) == [ALERT]
    assert tracker.new([ALERT]) == []
    assert tracker.new([ALERT, other]) == [other]
    assert tracker.new([]) == []
    assert tracker.new([ALERT]) == []  # a flapping condition is not announced again


def test_hook_gets_the_alert_json_on_stdin_and_no_shell(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    argv = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())", "$(touch pwned)"]
    result = notify.run_hook(argv, notify.alert_payload(ALERT, run_dir="/r", run_name="luca"))
    assert result.ok
    data = json.loads(out.read_text())
    assert data["kind"] == "nan" and data["key"] == "nan:412" and data["run_name"] == "luca" and data["fix"]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_hook_failures_are_reported_not_raised(tmp_path: Path) -> None:
    missing = notify.run_hook([str(tmp_path / "nope")], "{}")
    assert not missing.ok and "could not start" in (missing.error or "")
    failing = notify.run_hook([sys.executable, "-c", "import sys; sys.stderr.write('bad token'); sys.exit(3)"], "{}")
    assert failing.returncode == 3 and "bad token" in (failing.error or "")
    slow = notify.run_hook([sys.executable, "-c", "import time; time.sleep(5)"], "{}", timeout=0.3)
    assert not slow.ok and "timed out" in (slow.error or "")


# --------------------------------------------------------------------------- charting
def test_ema_matches_tensorboard_debiasing() -> None:
    values = [1.0, 2.0, 3.0, float("nan"), 4.0]
    out = ema_debiased(values, 0.5)
    assert out[0] == 1.0  # debiased: the first point is the value itself
    assert math.isclose(out[1], (0.5 * 0.5 * 1 + 0.5 * 2) / (1 - 0.25))
    assert math.isnan(out[3])  # non-finite values pass through
    last, n = 0.0, 0
    for v in (1.0, 2.0, 3.0, 4.0):
        last = last * 0.5 + 0.5 * v
        n += 1
    assert math.isclose(out[4], last / (1 - 0.5**n))
    assert ema_debiased(values[:3], 0.0) == values[:3]


def test_y_range_clips_outliers_and_handles_log_and_flat() -> None:
    values = [0.1 + 0.001 * i for i in range(100)] + [50.0]
    lo, hi = y_range(values)  # type: ignore[misc]
    assert hi == 50.0
    lo, hi = y_range(values, clip_outliers=True)  # type: ignore[misc]
    assert hi < 1.0
    assert y_range([float("nan")]) is None
    lo, hi = y_range([0.2, 0.2])  # type: ignore[misc]
    assert lo < 0.2 < hi
    lo, hi = y_range([0.001, 0.1, -1.0], log_y=True)  # type: ignore[misc]
    assert math.isclose(lo, -3) and math.isclose(hi, -1)


def test_downsample_keeps_spikes() -> None:
    xs = list(range(10_000))
    ys = [0.1] * 10_000
    ys[5_123] = 9.0
    dx, dy = downsample_minmax(xs, ys, 50)
    assert len(dx) <= 100 and 9.0 in dy and dx == sorted(dx)


def test_canvas_draws_a_line_and_markers() -> None:
    canvas = Canvas(10, 2)
    plot(canvas, [Plot([0, 10], [0, 1], color=3)], x_bounds=(0, 10), y_bounds=(0, 1), markers=[5])
    text = canvas.text()
    assert len(text.splitlines()) == 2 and all(len(r) == 10 for r in text.splitlines())
    rows = canvas.rows()
    assert rows[1][0][1] == 3 and rows[0][9][1] == 3  # bottom-left to top-right
    assert any(color == 9 for row in rows for _, color in row)  # the resume marker


# ------------------------------------------------------------------------------ feeds
def test_log_delta_appends_replaces_and_resets() -> None:
    from sdxl_tui.tui.feeds import LogDelta

    def snap(lines: list[LogLine], count: int) -> RunSnapshot:
        return RunSnapshot("/r", 0.0, RunState.TRAINING, log_lines=tuple(lines), log_line_count=count)

    delta = LogDelta()
    first = [LogLine(0, "a"), LogLine(1, "steps: 1%")]
    assert delta.update(snap(first, 2)) == (tuple(first), False)
    assert delta.update(snap(first, 2)) == ((), False)
    redraw = [LogLine(0, "a"), LogLine(1, "steps: 2%")]
    assert delta.update(snap(redraw, 2)) == ((LogLine(1, "steps: 2%"),), False)
    more = [*redraw, LogLine(2, "b")]
    assert delta.update(snap(more, 3)) == ((LogLine(2, "b"),), False)
    truncated = [LogLine(0, "new log")]
    assert delta.update(snap(truncated, 1)) == (tuple(truncated), True)


def test_remote_filesystems_are_detected(tmp_path: Path) -> None:
    from sdxl_tui.tui.feeds import filesystem_type, is_remote

    nfs = tmp_path / "data"
    sshfs = tmp_path / "with space"
    nfs.mkdir()
    sshfs.mkdir()
    mounts = tmp_path / "mounts"
    escaped = str(sshfs).replace(" ", "\\040")
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        f"server:/export {nfs} nfs4 rw 0 0\n"
        f"me@box:/home {escaped} fuse.sshfs rw 0 0\n"
    )
    assert filesystem_type(nfs, str(mounts)) == "nfs4"
    # a run directory not created yet: its nearest existing parent decides
    assert is_remote(nfs / "lora" / "luca" / "sdxl_v1", str(mounts)) == "nfs4"
    assert is_remote(sshfs / "run", str(mounts)) == "fuse.sshfs"
    assert is_remote(tmp_path / "local", str(mounts)) is None


# ----------------------------------------------------------------------- compare default
def test_default_compare_selection() -> None:
    from stub_reader import checkpoint, snapshot

    from sdxl_tui.model import CheckpointStatus
    from sdxl_tui.tui.actions import compare_choices, default_compare_selection

    run = "/r"
    all_done = snapshot(checkpoints=[checkpoint(run, e) for e in (2, 4, 6, 8, 10, 12)])
    assert default_compare_selection(all_done) == "6-10"
    writing = snapshot(checkpoints=[*(checkpoint(run, e) for e in (4, 6, 8)), checkpoint(run, 10, status=CheckpointStatus.WRITING)])
    assert default_compare_selection(writing) == "6,8"  # a range would pick up the file being written
    early = snapshot(checkpoints=[checkpoint(run, e) for e in (1, 2, 3)])
    assert default_compare_selection(early) == "1,2,3"
    assert compare_choices(early) == "complete checkpoints: epochs 1, 2, 3"


def test_start_dialog_fact_lines_from_the_check_report() -> None:
    from types import MappingProxyType

    from sdxl_tui.planning.check import CheckReport
    from sdxl_tui.tui.actions import start_facts

    facts = {
        "train_images_with_repeats": 100, "batch_size": 2, "gradient_accumulation_steps": 2, "effective_batch": 4,
        "batches_per_epoch": 50, "steps_per_epoch": 25, "epochs": 12, "total_steps": 300,
        "time_estimate": "~2 h 10 min", "vram_estimate_gb": 19.5, "gpu_free_gb": 23.1, "gpu": "RTX 4090",
        "checkpoint_files": 12, "checkpoint_bytes": 200_000_000, "disk_needed_bytes": 2_400_000_000,
        "disk_free_bytes": 50_000_000_000,
    }
    lines = start_facts(CheckReport(findings=(), facts=MappingProxyType(facts)))
    text = "\n".join(lines)
    assert "= 300 steps" in text and "time: ~2 h 10 min" in text
    assert "VRAM: ~19.5 GiB estimated, 23.1 GiB free on RTX 4090" in text and text.count("disk: 12 x") == 1
    assert start_facts(None) == []
