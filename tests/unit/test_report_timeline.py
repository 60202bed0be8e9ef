"""The report's clocks: log marks from RichHandler records, the timeline built from every clock,
and the GPU history file with its recorder (NVML faked at its boundary)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sdxl_tui.control.run_end import GpuRecorder
from sdxl_tui.formats.gpulog import append_gpu_sample, read_gpu_history
from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    GpuStatus,
    RunState,
    Sample,
    ScalarPoint,
    Series,
)
from sdxl_tui.report.logmarks import LogMarks, scan_log
from sdxl_tui.report.timeline import RunEnd, TimelineInputs, build_timeline
from sdxl_tui.sources.gpu import GpuMonitor
from tests.fakes import fake_nvml as fk

BAR = "█"
LOG = (
    "2026-12-04 10:00:00 INFO     Loading dataset config from    train_network.py:519\n"
    "                             /data/luca_dataset.toml                            \n"
    "                    INFO     caching latents...               train_util.py:1170\n"
    f"\r  0%|          | 0/2 [00:00<?, ?it/s]\r100%|{BAR * 10}| 2/2 [00:01<00:00,  1.00it/s]\n"
    "running training / 学習開始\n"
    "2026-12-04 10:00:07 INFO     epoch is incremented.             train_util.py:784\n"
    f"\rsteps:  10%|{BAR}         | 1/10 [00:01<00:09,  1.00s/it, avr_loss=0.1]"
    "\r                                                                          "
    "\r2026-12-04 10:00:30 INFO                                      train_util.py:6177\n"
    "                    INFO     generating sample images at step train_util.py:6178\n"
    "                             / サンプル画像生成 ステップ: 10                      \n"
    "Traceback (most recent call last):\n"
    '  File "train_network.py", line 1, in <module>\n'
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.25 GiB.\n"
)


def _t(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_log_marks_from_records_folded_lines_and_cleared_bars(tmp_path: Path) -> None:
    log = tmp_path / "training.log"
    log.write_bytes(LOG.encode("utf-8") + b"\xff\xfe broken bytes\n")
    marks = scan_log(log)
    got = [(m.kind, m.at, m.step, m.approx) for m in marks.marks]
    assert got == [
        ("loading", _t("2026-12-04 10:00:00"), None, False),
        ("caching", _t("2026-12-04 10:00:00"), None, False),
        ("training", _t("2026-12-04 10:00:00"), None, True),  # printed: the last record's time
        ("sampling", _t("2026-12-04 10:00:30"), 10, False),  # a record after a cleared bar, folded
        ("oom", _t("2026-12-04 10:00:30"), None, True),
    ]
    assert marks.first_at == _t("2026-12-04 10:00:00") and marks.last_at == _t("2026-12-04 10:00:30")


def test_missing_log_gives_no_marks(tmp_path: Path) -> None:
    assert scan_log(tmp_path / "nope.log") == LogMarks()
    assert scan_log(None).missing


def _series(start: float, steps: range, *, pauses: dict[int, float]) -> list[ScalarPoint]:
    """One point per step, 1 s apart, plus ``pauses[step]`` seconds after that step."""
    out, t = [], start
    for s in steps:
        out.append(ScalarPoint(s, 0.1, t))
        t += 1.0 + pauses.get(s, 0.0)
    return out


def _ckpt(name: str, step: int, mtime: float, kind: CheckpointKind = CheckpointKind.EPOCH) -> Checkpoint:
    return Checkpoint(name, f"/run/{name}", kind, None, step, 1000, mtime, CheckpointStatus.COMPLETE)


def test_timeline_sessions_pauses_and_the_final_save() -> None:
    t0 = 10_000.0
    first = _series(t0, range(101), pauses={50: 120.0, 80: 300.0})  # save + sample; then a stall
    second = _series(first[-1].wall_time + 600.0, range(101, 151), pauses={})
    points = tuple(first + second)
    series = {"loss/current": Series("loss/current", points, len(points), points[-1])}
    at50 = first[50].wall_time
    ckpts = (_ckpt("a-000001.safetensors", 50, at50 + 30.0),
             _ckpt("a.safetensors", 150, second[-1].wall_time + 20.0, CheckpointKind.FINAL))
    samples = (Sample("s.png", "/run/sample/s.png", 1, None, 0, at50 + 60.0),)
    marks = scan_log(None)
    inp = TimelineInputs(marks, series, (101,), ckpts, samples, RunState.FINISHED, second[-1].wall_time + 60,
                         RunEnd(started_at=t0 - 100.0, ended_at=second[-1].wall_time + 25.0, exit_code=0))
    tl = build_timeline(inp)
    kinds = [(p.kind, round(p.seconds)) for p in tl.phases]
    assert kinds == [
        ("training", 50), ("saving", 30), ("sampling", 91),  # the save ends at the file's mtime
        ("training", 29), ("paused", 301), ("training", 19),
        ("stopped", 600),
        ("training", 49), ("saving", 20),
    ]
    texts = [e.text for e in tl.events]
    assert texts[0] == "started by sdxl-tui start"
    assert "stopped at step 100" in texts and "resumed at step 101 after 10m00s" in texts
    assert "paused 5m01s (no save or sample in it)" in texts
    assert texts[-1] == "process ended (exit status 0)"
    assert tl.sessions == 2 and tl.start == t0 - 100.0 and tl.end == second[-1].wall_time + 25.0
    assert tl.total("training") == sum(p.seconds for p in tl.phases if p.kind == "training")


def test_timeline_of_a_live_run_reaches_now_and_has_no_tail() -> None:
    pts = tuple(_series(500.0, range(20), pauses={}))
    series = {"loss/average": Series("loss/average", pts, len(pts), pts[-1])}
    tl = build_timeline(TimelineInputs(scan_log(None), series, (), (), (), RunState.TRAINING, 900.0))
    assert [p.kind for p in tl.phases] == ["training"]
    assert tl.end == 900.0


def test_gpu_history_append_read_and_thinning(tmp_path: Path) -> None:
    path = tmp_path / ".sdxl-tui" / "gpu.jsonl"
    monitor = GpuMonitor(nvml=fk.hot_gpu())
    status = monitor.sample()
    for i in range(200):
        append_gpu_sample(path, status, at=1000.0 + i, trainer_pids=[4242], max_bytes=8_000)
    assert path.stat().st_size <= 8_000
    with open(path, "a") as fh:
        fh.write('{"t": 5000, "gpus": [{"i": 0, "na')  # a line cut by a crash
    history = read_gpu_history(path)
    assert history.exists and len(history.points) > 10
    assert history.points[-1].at == 1199.0  # the newest sample survives thinning
    p = history.points[-1]
    assert p.name == "NVIDIA GeForce RTX 4090" and p.temperature == 89
    assert p.process_memory == 23 * 1024**3 and p.memory_total == 24 * 1024**3
    assert set(p.throttle_reasons) == {"hw_thermal_slowdown", "sw_power_cap"}
    gaps = {b.at - a.at for a, b in zip(history.points, history.points[1:])}
    assert max(gaps) > 1.0  # older samples got sparser


def test_gpu_recorder_samples_at_its_interval_and_notes_no_gpu_once(tmp_path: Path) -> None:
    now = [0.0]
    rec = GpuRecorder(tmp_path, interval=30.0, monitor=GpuMonitor(nvml=fk.two_gpus()),
                      clock=lambda: now[0], wall=lambda: 1_000.0 + now[0])
    wrote = []
    for t in (0.0, 10.0, 29.0, 30.0, 45.0, 61.0):
        now[0] = t
        wrote.append(rec.tick([4242]))
    assert wrote == [True, False, False, True, False, True]
    lines = [json.loads(x) for x in (tmp_path / ".sdxl-tui" / "gpu.jsonl").read_text().splitlines()]
    assert [x["t"] for x in lines] == [1000.0, 1030.0, 1061.0]
    assert len(lines[0]["gpus"]) == 2 and lines[0]["gpus"][0]["proc"] == 18 * 1024**3
    rec.close()

    none = GpuRecorder(tmp_path / "nogpu", interval=0.0, monitor=GpuMonitor(nvml=fk.no_library()))
    assert [none.tick() for _ in range(3)] == [True, False, False]
    history = read_gpu_history(tmp_path / "nogpu" / ".sdxl-tui" / "gpu.jsonl")
    assert history.points == () and "NVML library" in history.unavailable[0][1]


def test_gpu_recorder_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rec = GpuRecorder(blocker, interval=0.0, monitor=GpuMonitor(nvml=fk.two_gpus()))
    assert rec.tick() is False and rec.tick() is False  # cannot write: gives up quietly
    assert GpuStatus(available=False).gpus == ()


def test_file_times_from_after_the_run_are_left_out() -> None:
    pts = tuple(_series(1_000.0, range(10), pauses={}))
    series = {"loss/current": Series("loss/current", pts, len(pts), pts[-1])}
    copied = 1_000.0 + 86_400.0  # `cp -r` a day later: every file dated to the copy
    ckpts = (_ckpt("a-000001.safetensors", 5, copied), _ckpt("a.safetensors", 9, copied, CheckpointKind.FINAL))
    tl = build_timeline(TimelineInputs(scan_log(None), series, (), ckpts, (), RunState.FINISHED, copied + 60))
    assert [e.kind for e in tl.events] == ["training"]
    assert tl.end == pts[-1].wall_time and [p.kind for p in tl.phases] == ["training"]
    assert tl.notes == (("2 file times left out: modified after the run ended (copied without keeping "
                        "modification times?)"),)


def test_sparkline_shows_the_trend_not_the_noise() -> None:
    from sdxl_tui.report.markdown import sparkline

    noisy = [10.0 - i / 100 + (1.0 if i % 2 else -1.0) for i in range(1000)]  # falling, with +-1 noise
    line = sparkline(noisy, 10)
    assert len(line) == 10 and line[0] == "█" and line[-1] == "▁"
    assert list(line) == sorted(line, reverse=True)  # never up: the noise averages out
    assert sparkline([]) == "" and sparkline([float("nan")]) == ""
