"""Render an image as Rich text with upper-half blocks: two pixel rows per terminal cell.

Why: it is the one image rendering that works everywhere a dashboard runs — any terminal
with colour, over SSH and inside tmux (no escape passthrough needed). Each cell shows the
upper pixel as the foreground of ``▀`` and the lower pixel as its background. Colours are
true colour; Rich downsamples them to 256 or 16 colours when the console has fewer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.color import Color
from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

UPPER_HALF = "\u2580"  # ▀

def fit_pixels(image_size: tuple[int, int], max_cols: int, max_rows: int) -> tuple[int, int]:
    """Pixel size (width, height) an image is resampled to for a ``max_cols`` x ``max_rows`` box.

    A cell is one pixel wide and two pixels tall, and terminal cells are about twice as tall
    as wide, so one pixel per half cell keeps the aspect ratio. Never returns zero.
    """
    width, height = image_size
    max_cols, max_rows = max(1, max_cols), max(1, max_rows)
    if width <= 0 or height <= 0:
        return (max_cols, max_rows * 2)
    scale = min(max_cols / width, (max_rows * 2) / height)
    return (
        max(1, min(max_cols, round(width * scale))),
        max(1, min(max_rows * 2, round(height * scale))),
    )


def fit_size(image_size: tuple[int, int], max_cols: int, max_rows: int) -> tuple[int, int]:
    """Cells (cols, rows) an image takes in a ``max_cols`` x ``max_rows`` box."""
    cols, pixel_rows = fit_pixels(image_size, max_cols, max_rows)
    return cols, (pixel_rows + 1) // 2


def _load(source: Any) -> Image:
    from PIL import Image as PILImage

    if isinstance(source, (str, os.PathLike)):
        with PILImage.open(source) as img:
            img.load()
            converted: Image = img.convert("RGBA")
            return converted
    rgba: Image = source.convert("RGBA")
    return rgba


def _flatten(rgba: tuple[int, ...], background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b, a = rgba
    if a >= 255:
        return (r, g, b)
    f = a / 255.0
    return tuple(round(c * f + bc * (1 - f)) for c, bc in zip((r, g, b), background, strict=False))  # type: ignore[return-value]


def halfblock_pixels(
    source: Any,
    max_cols: int,
    max_rows: int,
    *,
    background: tuple[int, int, int] = (0, 0, 0),
) -> list[list[tuple[tuple[int, int, int], tuple[int, int, int] | None]]]:
    """Cells as ``[(top_rgb, bottom_rgb | None), ...]`` per row, for the image fitted to the box.

    ``bottom`` is ``None`` on the last row of an image with an odd pixel height.
    """
    from PIL import Image as PILImage

    img = _load(source)
    cols, pixel_rows = fit_pixels(img.size, max_cols, max_rows)
    if img.size != (cols, pixel_rows):
        # BOX averages when shrinking (a 1024 px sample); NEAREST keeps flat blocks when growing
        grow = cols > img.size[0] or pixel_rows > img.size[1]
        img = img.resize((cols, pixel_rows), PILImage.Resampling.NEAREST if grow else PILImage.Resampling.BOX)
    access: Any = img.load()
    cells: list[list[tuple[tuple[int, int, int], tuple[int, int, int] | None]]] = []
    for y in range(0, pixel_rows, 2):
        row = []
        for x in range(cols):
            top = _flatten(access[x, y], background)
            bottom = _flatten(access[x, y + 1], background) if y + 1 < pixel_rows else None
            row.append((top, bottom))
        cells.append(row)
    return cells


def render_halfblock(
    source: Any,
    max_cols: int,
    max_rows: int,
    *,
    background: tuple[int, int, int] = (0, 0, 0),
) -> Text:
    """An image (path or PIL image) as a Rich ``Text`` fitting ``max_cols`` x ``max_rows`` cells.

    Raises:
        OSError: the file cannot be read or is not an image Pillow understands.
    """
    text = Text(no_wrap=True, overflow="crop", end="")
    cells = halfblock_pixels(source, max_cols, max_rows, background=background)
    for index, row in enumerate(cells):
        if index:
            text.append("\n")
        for top, bottom in row:
            style = Style(
                color=Color.from_rgb(*top),
                bgcolor=Color.from_rgb(*bottom) if bottom is not None else None,
            )
            text.append(UPPER_HALF, style)
    return text
