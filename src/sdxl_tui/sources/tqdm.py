"""tqdm progress bars as they appear in a log file, and the numbers in them.

Why: sd-scripts draws its progress with tqdm (``train_network.py:NetworkTrainer.train``); in a
file each redraw is one ``\\r``-separated segment such as ``steps:  41%|####  | 490/1200
[05:12<07:32, 1.57it/s, avr_loss=0.0912]``. Its elapsed and remaining times, rate and postfix
are all the log says about speed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["TqdmBar", "display_cells", "parse_interval", "parse_number", "parse_tqdm"]


_TQDM = re.compile(
    r"^(?:(?P<desc>.*?): *)?(?P<pct>\d+)%\|(?P<bar>[^|]*)\| *(?P<n>\d+)/(?P<total>\d+|\?) *"
    r"\[(?P<elapsed>[\d:]+)(?:<(?P<remaining>[\d:?]+))?, *(?P<rate>[^,\]]*?)(?P<postfix>(?:, *[^\]]*)?)\]"
)

def parse_interval(text: str | None) -> float | None:
    """``mm:ss`` / ``h:mm:ss`` (tqdm's format_interval) to seconds; ``?`` and junk to None."""
    if not text or "?" in text:
        return None
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        return None
    secs = 0
    for p in parts:
        secs = secs * 60 + p
    return float(secs)

def parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

@dataclass(frozen=True, slots=True)
class TqdmBar:
    """One tqdm redraw, parsed."""

    desc: str
    n: int
    total: int | None
    elapsed: float | None
    remaining: float | None
    seconds_per_it: float | None  # None for ``?it/s``
    postfix: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    end: int = 0  # index in the text just after the closing ``]``

def parse_tqdm(text: str) -> TqdmBar | None:
    """Parse a tqdm meter line (``steps:  44%|███| 4/9 [01:24<01:45, 21.06s/it, avr_loss=1.1]``)."""
    if "%|" not in text:
        return None
    m = _TQDM.match(text.strip(" "))
    if m is None:
        return None
    rate = m.group("rate").strip()
    spi: float | None = None
    if rate.endswith("s/it"):
        spi = parse_number(rate[:-4])
    elif rate.endswith("it/s"):
        v = parse_number(rate[:-4])
        spi = 1.0 / v if v else None
    postfix: dict[str, str] = {}
    pf = m.group("postfix")
    if pf:
        for item in pf.split(","):
            if "=" in item:
                key, _, val = item.partition("=")
                postfix[key.strip()] = val.strip()
    total = m.group("total")
    lead = len(text) - len(text.lstrip(" "))
    return TqdmBar(
        desc=(m.group("desc") or "").strip(),
        n=int(m.group("n")),
        total=int(total) if total.isdigit() else None,
        elapsed=parse_interval(m.group("elapsed")),
        remaining=parse_interval(m.group("remaining")),
        seconds_per_it=spi,
        postfix=MappingProxyType(postfix),
        end=lead + m.end(),
    )

def display_cells(s: str) -> int:
    """Terminal cells of ``s`` (CJK wide characters take two), as rich counts them."""
    if s.isascii():
        return len(s)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)
