"""Print an image to a terminal: the inline image protocol where there is one, half blocks
everywhere else (``sdxl-tui eval --show``).

Why: the CLI is the dashboard's headless twin; a user on SSH wants to glance at an
evaluation's contact sheet without copying files around. Escapes are only written to a
real terminal; a pipe or ``--halfblock`` gets half blocks (plain Rich text).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from typing import IO

from sdxl_tui.render.halfblock import fit_size, render_halfblock
from sdxl_tui.render.protocols import detect_image_support, encode_image


def print_image(
    path: str | os.PathLike[str],
    *,
    file: IO[str] | None = None,
    max_cols: int | None = None,
    max_rows: int | None = None,
    halfblock: bool = False,
    env: Mapping[str, str] | None = None,
) -> str:
    """Show ``path``; returns the method used ("kitty", "iterm2" or "halfblock").

    Raises:
        OSError: the image cannot be read.
    """
    from PIL import Image
    from rich.console import Console

    out = file or sys.stdout
    size = shutil.get_terminal_size((100, 40))
    cols = max_cols or size.columns
    rows = max_rows or max(4, size.lines - 4)
    support = detect_image_support(env)
    tty = hasattr(out, "isatty") and out.isatty()
    if support.inline and tty and not halfblock:
        with Image.open(path) as img:
            cell_cols, cell_rows = fit_size(img.size, cols, rows)
        escape = encode_image(path, support, cols=cell_cols, rows=cell_rows)
        if escape:
            out.write(escape + "\n")
            out.flush()
            return support.protocol
    console = Console(file=out, force_terminal=tty or None, width=cols)
    console.print(render_halfblock(path, cols, rows))
    return "halfblock"
