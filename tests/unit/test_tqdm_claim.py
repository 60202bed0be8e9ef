"""Issue 15 said the simulator's tqdm "clock is wrong at short steps" because a run at 50
steps/s printed ``[00:00<00:00, 517539140.48it/s]``. Checked against the real tqdm: that is
what tqdm itself prints when, as sd-scripts does, ``progress_bar.unpause()`` follows every
optimizer step (it moves ``start_t`` forward by the time since the last redraw, and below
``mininterval`` most steps are not redrawn). The simulator is faithful; what was wrong was
trusting tqdm's elapsed in the header, which now comes from the run's own timestamps
(tests/tui/test_soak.py, tests/snapshots/test_matrix.py).
"""

from __future__ import annotations

import io
import re

import pytest

from sdxl_tui.sim.progress import Bar

tqdm_std = pytest.importorskip("tqdm.std")


class Clock:
    """Step time plus a microsecond per look, like a real clock between two calls."""

    def __init__(self) -> None:
        self.t = 1_795_000_000.0

    def __call__(self) -> float:
        self.t += 1e-6
        return self.t


def _meter(line: str) -> tuple[str, float]:
    """``[00:00<00:00, 4441027.76it/s`` -> ("00:00<00:00", steps per second)."""
    m = re.search(r"\[([0-9:]+)<([0-9:?]+), *([0-9.]+)(it/s|s/it)", line)
    assert m, line
    rate = float(m.group(3))
    return f"{m.group(1)}<{m.group(2)}", rate if m.group(4) == "it/s" else 1 / rate


def run_both(step_seconds: float, steps: int, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    clock = Clock()
    monkeypatch.setattr(tqdm_std, "time", clock)
    monkeypatch.setattr(tqdm_std.tqdm, "monitor_interval", 0)
    real_out = io.StringIO()
    real = tqdm_std.tqdm(total=steps, desc="steps", smoothing=0, file=real_out, ascii=False)
    sim_out: list[str] = []
    sim = Bar(steps, sim_out.append, clock, desc="steps", smoothing=0)
    for _ in range(steps):
        clock.t += step_seconds
        real.update(1)
        sim.update(1)
        real.unpause()  # sd-scripts, after each step's sample_images check
        sim.unpause()
    real_line, sim_line = str(real), str(sim)
    real.close()
    return real_line, sim_line


def test_at_short_steps_real_tqdm_shows_the_same_zero_elapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    real, sim = run_both(0.02, 200, monkeypatch)  # 4 s of training at 50 steps/s
    (real_clock, real_rate), (sim_clock, sim_rate) = _meter(real), _meter(sim)
    assert real_clock == sim_clock == "00:00<00:00"  # real tqdm too: elapsed 0 after 4 s
    assert real_rate > 1e4 and sim_rate > 1e4  # and an absurd rate, not 50 it/s


def test_at_long_steps_both_show_the_true_elapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    real, sim = run_both(2.5, 40, monkeypatch)  # 100 s: every step is redrawn
    (real_clock, real_rate), (sim_clock, sim_rate) = _meter(real), _meter(sim)
    assert real_clock == sim_clock == "01:40<00:00"
    assert real_rate == pytest.approx(0.4, rel=0.01) and sim_rate == pytest.approx(0.4, rel=0.01)
