"""Save schedule and honest-ETA arithmetic (sources/progress.py) on hand-built numbers."""

from __future__ import annotations

import pytest

from sdxl_tui.model import CheckpointKind, ScalarPoint, TrainConfig
from sdxl_tui.sources.progress import (
    compute_progress,
    count_upcoming_saves,
    pause_per_save,
    steps_per_second_from_points,
    upcoming_saves,
)

# The card's run: 12 epochs, save every 2, 100 batches per epoch, grad accum 2 -> 50 steps/epoch.
CARD = TrainConfig(
    output_name="luca_sdxl_v1",
    num_batches_per_epoch=100,
    num_epochs=12,
    gradient_accumulation_steps=2,
    total_steps=600,
    save_every_n_epochs=2,
)


def test_schedule_follows_sd_scripts_last_epoch_never_epoch_saved() -> None:
    saves = upcoming_saves(CARD, step=0, total_steps=600)
    assert [s.name for s in saves] == [
        "luca_sdxl_v1-000002.safetensors",
        "luca_sdxl_v1-000004.safetensors",
        "luca_sdxl_v1-000006.safetensors",
        "luca_sdxl_v1-000008.safetensors",
        "luca_sdxl_v1-000010.safetensors",
        "luca_sdxl_v1.safetensors",
    ]
    assert [s.step for s in saves] == [100, 200, 300, 400, 500, 600]
    assert saves[-1].kind is CheckpointKind.FINAL and saves[-1].epoch == 12
    assert count_upcoming_saves(CARD, step=0, total_steps=600) == 6


def test_save_at_current_step_counts_until_its_file_exists() -> None:
    pending = upcoming_saves(CARD, step=200, total_steps=600)
    assert pending[0].name == "luca_sdxl_v1-000004.safetensors"
    done = {"luca_sdxl_v1-000002.safetensors", "luca_sdxl_v1-000004.safetensors"}
    after = upcoming_saves(CARD, step=200, total_steps=600, done=done)
    assert after[0].name == "luca_sdxl_v1-000006.safetensors"
    assert count_upcoming_saves(CARD, step=200, total_steps=600, done=done) == 4
    finished = upcoming_saves(CARD, step=600, total_steps=600, done={"luca_sdxl_v1.safetensors"})
    assert finished == ()


def test_step_saves_interleave_and_no_output_name_uses_defaults() -> None:
    cfg = TrainConfig(num_batches_per_epoch=10, num_epochs=3, total_steps=30,
                      save_every_n_epochs=1, save_every_n_steps=15)
    saves = upcoming_saves(cfg, step=0, total_steps=30)
    assert [(s.name, s.step) for s in saves] == [
        ("epoch-000001.safetensors", 10),
        ("at-step00000015.safetensors", 15),
        ("epoch-000002.safetensors", 20),
        ("at-step00000030.safetensors", 30),
        ("last.safetensors", 30),
    ]
    assert count_upcoming_saves(cfg, step=0, total_steps=30) == 5
    assert count_upcoming_saves(cfg, step=15, total_steps=30, done={"at-step00000015.safetensors"}) == 3


def test_huge_step_schedule_is_bounded() -> None:
    cfg = TrainConfig(total_steps=10_000_000, save_every_n_steps=1)
    assert len(upcoming_saves(cfg, step=5, total_steps=10_000_000, limit=3)) == 4  # 3 + final
    assert count_upcoming_saves(cfg, step=5, total_steps=10_000_000) == (10_000_000 - 5) + 1 + 1  # 6..N, 5 itself (not saved yet), final


def test_median_rate_from_event_wall_times_ignores_pauses_and_micro_batches() -> None:
    pts = []
    t = 1000.0
    for step in range(11):
        pts.append(ScalarPoint(step, 1.0, t))  # two micro-batches per step
        pts.append(ScalarPoint(step, 1.0, t + 0.5))
        t += 2.0 if step != 5 else 300.0  # a 5-minute save after step 5
    assert steps_per_second_from_points(pts) == pytest.approx(2.0)
    assert steps_per_second_from_points([ScalarPoint(1, 1.0, 0.0)]) is None


def test_pause_per_save_measured_from_wall_span() -> None:
    first = ScalarPoint(0, 1.0, 1000.0)
    last = ScalarPoint(100, 1.0, 1000.0 + 100 * 2.0 + 2 * 60.0)  # 2 saves of 60 s
    assert pause_per_save(first, last, 2.0, 2) == pytest.approx(60.0)
    assert pause_per_save(first, last, 2.0, 0) is None
    assert pause_per_save(first, ScalarPoint(100, 1.0, 1150.0), 2.0, 2) == 0.0


def test_honest_eta_adds_save_pauses_and_subtracts_time_in_current_step() -> None:
    now = 10_000.0
    p = compute_progress(
        CARD, epoch=5, epochs=12, step=250, total_steps=600, seconds_per_step=3.0,
        elapsed_seconds=750.0, now=now, last_step_at=now - 1.0, pause_seconds=30.0,
        done={"luca_sdxl_v1-000002.safetensors", "luca_sdxl_v1-000004.safetensors"},
    )
    # 350 steps x 3 s + 4 saves (6, 8, 10, final) x 30 s - 1 s already in the current step
    assert p.eta_seconds == pytest.approx(350 * 3 + 4 * 30 - 1)
    assert p.eta_at == pytest.approx(now + p.eta_seconds)
    assert p.next_checkpoint == "luca_sdxl_v1-000006.safetensors"
    assert p.next_checkpoint_eta_seconds == pytest.approx(50 * 3 - 1)
    assert p.fraction == pytest.approx(250 / 600)


def test_eta_does_not_shrink_below_remaining_work_when_steps_stop() -> None:
    now = 10_000.0
    p = compute_progress(CARD, epoch=5, epochs=12, step=590, total_steps=600, seconds_per_step=3.0,
                         elapsed_seconds=None, now=now, last_step_at=now - 3600, done=())
    assert p.eta_seconds == pytest.approx(10 * 3 - 3)


def test_no_eta_when_over_or_rate_unknown() -> None:
    over = compute_progress(CARD, epoch=12, epochs=12, step=600, total_steps=600, seconds_per_step=3.0,
                            elapsed_seconds=1800.0, now=0.0, last_step_at=None, running=False)
    assert over.eta_seconds is None and over.next_checkpoint is None
    unknown = compute_progress(CARD, epoch=1, epochs=12, step=0, total_steps=600, seconds_per_step=None,
                               elapsed_seconds=None, now=0.0, last_step_at=None)
    assert unknown.eta_seconds is None and unknown.next_checkpoint == "luca_sdxl_v1-000002.safetensors"
