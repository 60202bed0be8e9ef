"""humanize.py: the one formatter of each kind of number (dashboard, status and alerts agree)."""

from __future__ import annotations

import math

from sdxl_tui.humanize import (
    format_ago,
    format_binary_bytes,
    format_bytes,
    format_duration,
    format_duration_words,
    format_value,
)


def test_format_duration_is_compact_and_honest_about_unknowns() -> None:
    assert format_duration(None) == "--"
    assert format_duration(-1) == "--"
    assert format_duration(math.nan) == "--"
    assert format_duration(59) == "59s"
    assert format_duration(65) == "1m05s"
    assert format_duration(3725) == "1h02m"
    assert format_duration(90000) == "1d01h"


def test_words_ago_and_sizes() -> None:
    assert format_duration_words(45) == "45 s"
    assert format_duration_words(720) == "12 min"
    assert format_duration_words(3 * 3600 + 300) == "3 h 05 min"
    assert format_ago(None) == "?"
    assert format_ago(42) == "42 s"
    assert format_ago(720) == "12 min"
    assert format_ago(3.5 * 3600) == "3.5 h"
    assert format_bytes(None) == "--"
    assert format_bytes(999) == "999 B"
    assert format_bytes(190_200_000) == "190.2 MB"
    assert format_binary_bytes(12) == "12 bytes"
    assert format_binary_bytes(3 << 19) == "1.5 MiB"
    assert format_binary_bytes(5 << 30) == "5.0 GiB"


def test_values() -> None:
    assert format_value(0) == "0"
    assert format_value(0.0001) == "1.00e-04"
    assert format_value(0.1234) == "0.123"
    assert format_value(math.inf) == "inf"
