"""The simulator's tqdm re-implementation against the reference's rendered samples and the
bars of the real run (format_meter, format_num, padding, throttling, nested bars)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdxl_tui.sim.progress import Bar, format_meter, format_num
from tests.oracles import TQDM_RE, segments


@pytest.mark.parametrize(
    ("n", "total", "elapsed", "postfix", "expected"),
    [
        (0, 1500, 0, None, "steps:   0%|          | 0/1500 [00:00<?, ?it/s]"),
        (120, 1500, 300, "avr_loss=0.0923", "steps:   8%|▊         | 120/1500 [05:00<57:30,  2.50s/it, avr_loss=0.0923]"),
        (1500, 1500, 3720, "avr_loss=0.0811", "steps: 100%|██████████| 1500/1500 [1:02:00<00:00,  2.48s/it, avr_loss=0.0811]"),
        (1, 9, 22.2, "avr_loss=1.04", "steps:  11%|█         | 1/9 [00:22<02:57, 22.20s/it, avr_loss=1.04]"),
        (3, 6, 0.1059, "avr_loss=0.095", "steps:  50%|█████     | 3/6 [00:00<00:00, 28.33it/s, avr_loss=0.095]"),
    ],
)
def test_format_meter_matches_reference_samples(n, total, elapsed, postfix, expected) -> None:
    assert format_meter(n, total, elapsed, "steps", postfix) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0923, "0.0923"), (0.1, "0.1"), (1.5e-5, "1.5e-5"), (float("nan"), "nan"), (1.0954, "1.1"), (1.0378, "1.04")],
)
def test_format_num(value, text) -> None:
    assert format_num(value) == text


def test_real_bars_parse_and_rerender(real_run: Path) -> None:
    """Every bar segment of the real log re-renders identically from its own numbers."""
    data = (real_run / "training.log").read_bytes()
    seen = 0
    for text, _term in segments(data):
        m = TQDM_RE.match(text.rstrip(" "))
        if not m or "<?" in text:
            continue
        n, total = int(m["n"]), int(m["total"])
        rate_txt = m["rate"].strip()
        value = float(rate_txt[:-4])
        rate = 1 / value if rate_txt.endswith("s/it") else value
        mins, secs = m["elapsed"].split(":")[-2:]
        elapsed = int(mins) * 60 + int(secs) + 0.5
        got = format_meter(n, total, elapsed, m["desc"] or "", m["postfix"], rate=rate)
        assert got == text.rstrip(" "), (got, text)
        seen += 1
    assert seen > 20


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bar_redraws_with_cr_padding_and_no_newline_until_close() -> None:
    out: list[str] = []
    clock = FakeClock()
    flushed: list[int] = []
    bar = Bar(9, out.append, clock, desc="steps", smoothing=0, on_create=lambda: flushed.append(1))
    assert flushed == [1]  # tqdm's status_printer flushes stdout+stderr on creation
    clock.t += 12.0
    bar.set_postfix(avr_loss=1.0399)
    clock.t += 10.2
    bar.update(1)
    bar.set_postfix(avr_loss=1.0995)
    text = "".join(out)
    assert "\n" not in text
    parts = text.split("\r")[1:]
    assert parts[0] == "steps:   0%|          | 0/9 [00:00<?, ?it/s]"
    assert parts[1] == "steps:   0%|          | 0/9 [00:12<?, ?it/s, avr_loss=1.04]"
    assert parts[2] == "steps:  11%|█         | 1/9 [00:22<02:57, 22.20s/it, avr_loss=1.04]"
    # shorter postfix: padded with one space to the previous length, as in the real log
    assert parts[3] == "steps:  11%|█         | 1/9 [00:22<02:57, 22.20s/it, avr_loss=1.1] "
    bar.close()
    assert "".join(out).endswith("avr_loss=1.1]\n")


def test_update_is_throttled_by_mininterval_but_postfix_is_not() -> None:
    out: list[str] = []
    clock = FakeClock()
    bar = Bar(100, out.append, clock, desc="steps", smoothing=0)
    for _ in range(5):
        clock.t += 0.01
        bar.update(1)
    assert len(out) == 1  # only the initial draw
    bar.set_postfix(avr_loss=0.5)
    assert len(out) == 2 and "5/100" in out[-1]


def test_nested_bar_uses_newline_cursor_up_and_clears() -> None:
    out: list[str] = []
    clock = FakeClock()
    inner = Bar(3, out.append, clock, leave=False, position=1)
    clock.t += 1
    inner.update(1)
    inner.close()
    text = "".join(out)
    assert text.startswith("\n\r  0%|          | 0/3 [00:00<?, ?it/s]\x1b[A")
    assert re.search(r"\n\r +\x1b\[A$", text)
