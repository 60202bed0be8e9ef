"""Terminal inline-image protocols: detect kitty / iTerm2 / sixel support and encode images.

Why: a half-block rendering shows 2 pixels per cell; a terminal with an image protocol can
show the real 1024x1024 sample. Detection is from the environment only (no terminal
queries, which would race with Textual's input reader), so it is a best guess: the
dashboard always keeps half blocks as the fallback. Inside tmux the escapes must be wrapped
in a DCS passthrough (``\\x1bPtmux;`` ... ``\\x1b\\\\`` with every ESC doubled), and tmux
needs ``set -g allow-passthrough on`` (tmux >= 3.3) for them to reach the terminal.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass

ESC = "\x1b"
ST = ESC + "\\"
BEL = "\x07"
KITTY_CHUNK = 4096

KITTY = "kitty"
ITERM2 = "iterm2"
SIXEL = "sixel"
NONE = "none"

_SIXEL_TERMS = ("foot", "mlterm", "yaft", "contour")


@dataclass(frozen=True, slots=True)
class ImageSupport:
    """What the environment says about inline images."""

    protocol: str  # "kitty" | "iterm2" | "sixel" | "none"
    tmux: bool = False  # escapes must be wrapped for tmux passthrough
    reason: str = ""

    @property
    def inline(self) -> bool:
        """True when :func:`encode_image` can produce an escape for this terminal."""
        return self.protocol in (KITTY, ITERM2)


def in_tmux(env: Mapping[str, str] | None = None) -> bool:
    """True inside tmux (``$TMUX`` set, or a ``tmux``/``screen``-type TERM with TERM_PROGRAM=tmux)."""
    env = os.environ if env is None else env
    return bool(env.get("TMUX")) or env.get("TERM_PROGRAM", "").lower() == "tmux"


def detect_image_support(env: Mapping[str, str] | None = None) -> ImageSupport:
    """Guess the inline image protocol from the environment.

    kitty: ``KITTY_WINDOW_ID``, ``TERM=xterm-kitty``, or TERM_PROGRAM ghostty (kitty's
    protocol). iTerm2: ``TERM_PROGRAM=iTerm.app`` or ``LC_TERMINAL=iTerm2`` (the latter
    survives into tmux and SSH), WezTerm. sixel: foot, mlterm, or ``sixel`` in TERM.
    Inside tmux, TERM_PROGRAM is tmux's own, so only the variables inherited from the outer
    terminal (KITTY_WINDOW_ID, LC_TERMINAL) count.
    """
    env = os.environ if env is None else env
    tmux = in_tmux(env)
    term = env.get("TERM", "").lower()
    program = env.get("TERM_PROGRAM", "").lower()
    if env.get("SDXL_TUI_IMAGES", "").lower() in (KITTY, ITERM2, SIXEL, NONE):
        return ImageSupport(env["SDXL_TUI_IMAGES"].lower(), tmux, "SDXL_TUI_IMAGES")
    if env.get("KITTY_WINDOW_ID") or term == "xterm-kitty" or program == "ghostty" or term == "xterm-ghostty":
        return ImageSupport(KITTY, tmux, "kitty terminal")
    if program == "iterm.app" or env.get("LC_TERMINAL", "").lower() == "iterm2":
        return ImageSupport(ITERM2, tmux, "iTerm2")
    if program == "wezterm":
        return ImageSupport(ITERM2, tmux, "WezTerm (iTerm2 protocol)")
    if "sixel" in term or any(term.startswith(t) for t in _SIXEL_TERMS):
        return ImageSupport(SIXEL, tmux, f"TERM={term}")
    return ImageSupport(NONE, tmux, "no inline image protocol detected")


def tmux_wrap(sequence: str) -> str:
    """Wrap an escape sequence in tmux's DCS passthrough (every ESC inside doubled)."""
    return ESC + "Ptmux;" + sequence.replace(ESC, ESC + ESC) + ST


def kitty_escape(
    png: bytes,
    *,
    cols: int | None = None,
    rows: int | None = None,
    tmux: bool = False,
    image_id: int | None = None,
) -> str:
    """Transmit-and-display a PNG with the kitty graphics protocol.

    The base64 payload is sent in chunks of at most 4096 bytes; every chunk but the last
    carries ``m=1``. The first chunk carries the keys (``a=T,f=100`` = transmit and show a
    PNG, ``c``/``r`` = size in cells, ``q=2`` = no replies that would reach the app's input).
    Inside tmux every chunk is wrapped separately.
    """
    data = base64.standard_b64encode(png).decode("ascii")
    chunks = [data[i : i + KITTY_CHUNK] for i in range(0, len(data), KITTY_CHUNK)] or [""]
    keys = ["a=T", "f=100", "q=2"]
    if image_id is not None:
        keys.append(f"i={image_id}")
    if cols:
        keys.append(f"c={cols}")
    if rows:
        keys.append(f"r={rows}")
    out = []
    for index, chunk in enumerate(chunks):
        more = 1 if index < len(chunks) - 1 else 0
        control = ",".join([*keys, f"m={more}"]) if index == 0 else f"m={more}"
        seq = f"{ESC}_G{control};{chunk}{ST}"
        out.append(tmux_wrap(seq) if tmux else seq)
    return "".join(out)


def iterm2_escape(
    data: bytes,
    *,
    name: str = "image.png",
    cols: int | None = None,
    rows: int | None = None,
    tmux: bool = False,
) -> str:
    """An iTerm2 inline image (OSC 1337 File=...), sized in cells, aspect ratio kept."""
    args = [
        "name=" + base64.standard_b64encode(name.encode("utf-8")).decode("ascii"),
        f"size={len(data)}",
        "inline=1",
        "preserveAspectRatio=1",
    ]
    if cols:
        args.append(f"width={cols}")
    if rows:
        args.append(f"height={rows}")
    seq = f"{ESC}]1337;File={';'.join(args)}:{base64.standard_b64encode(data).decode('ascii')}{BEL}"
    return tmux_wrap(seq) if tmux else seq


def encode_image(
    path: str | os.PathLike[str],
    support: ImageSupport,
    *,
    cols: int | None = None,
    rows: int | None = None,
    max_pixels: int = 1024,
) -> str | None:
    """The escape that shows the image file ``path`` inline, or None if the terminal has none.

    Images are re-encoded as PNG (kitty's ``f=100`` needs PNG) and shrunk to ``max_pixels``
    on the long side to keep the escape small. Sixel is detected but not encoded: callers
    fall back to half blocks.
    """
    if not support.inline:
        return None
    import io

    from PIL import Image

    with Image.open(path) as img:
        img.load()
        img = img.convert("RGBA") if img.mode not in ("RGB", "RGBA") else img.copy()
    if max(img.size) > max_pixels:
        img.thumbnail((max_pixels, max_pixels))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    if support.protocol == KITTY:
        return kitty_escape(png, cols=cols, rows=rows, tmux=support.tmux)
    return iterm2_escape(png, name=os.path.basename(os.fspath(path)), cols=cols, rows=rows, tmux=support.tmux)
