"""Contact sheets and comparison grids with Pillow.

Why: picking the best epoch means looking at the same prompts side by side. A contact
sheet tiles one evaluation's images; a comparison grid puts checkpoints in rows and
prompts in columns, labelled, so epochs 6-10 can be compared in one picture (saved as a
PNG and viewable in the terminal).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

BACKGROUND = (24, 24, 24)
FOREGROUND = (235, 235, 235)
MISSING = (70, 20, 20)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def _open_fitted(path: str | os.PathLike[str] | None, cell: int) -> Image:
    from PIL import Image as PILImage

    tile = PILImage.new("RGB", (cell, cell), MISSING)
    if path is None:
        return tile
    try:
        with PILImage.open(path) as img:
            img.load()
            img = img.convert("RGB")
    except OSError:
        return tile
    img.thumbnail((cell, cell))
    tile = PILImage.new("RGB", (cell, cell), BACKGROUND)
    tile.paste(img, ((cell - img.size[0]) // 2, (cell - img.size[1]) // 2))
    return tile


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(
    images: Sequence[str | os.PathLike[str]],
    *,
    columns: int | None = None,
    cell: int = 256,
    labels: Sequence[str] | None = None,
) -> Image:
    """Tile images into one picture, ``columns`` wide (default: a near-square grid).

    Unreadable images become a dark red tile instead of failing the sheet.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    count = max(1, len(images))
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    label_h = 18 if labels else 0
    sheet = PILImage.new("RGB", (columns * cell, rows * (cell + label_h)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for index, path in enumerate(images):
        x, y = (index % columns) * cell, (index // columns) * (cell + label_h)
        sheet.paste(_open_fitted(path, cell), (x, y + label_h))
        if labels and index < len(labels):
            draw.text((x + 3, y + 2), _fit_text(draw, labels[index], font, cell - 6), fill=FOREGROUND, font=font)
    return sheet


def comparison_grid(
    rows: Sequence[tuple[str, Sequence[str | os.PathLike[str] | None]]],
    column_labels: Sequence[str] = (),
    *,
    cell: int = 256,
    title: str | None = None,
) -> Image:
    """Rows = checkpoints, columns = prompts: ``rows`` is ``[(label, [image or None, ...]), ...]``.

    Missing images (a failed or unfinished evaluation) are drawn as dark red tiles, so the
    grid keeps its shape.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw

    ncols = max([len(images) for _, images in rows] + [len(column_labels), 1])
    font = _font(14)
    small = _font(12)
    row_label_w = 150
    header_h = 40 if column_labels else 0
    title_h = 26 if title else 0
    width = row_label_w + ncols * cell
    height = title_h + header_h + len(rows) * cell
    grid = PILImage.new("RGB", (width, max(height, 1)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((6, 5), _fit_text(draw, title, font, width - 12), fill=FOREGROUND, font=font)
    for col, label in enumerate(column_labels):
        x = row_label_w + col * cell
        words = label
        first = _fit_text(draw, words, small, cell - 8)
        draw.text((x + 4, title_h + 4), first, fill=FOREGROUND, font=small)
        rest = words[len(first.rstrip("…")) :].strip()
        if rest and first.endswith("…"):
            draw.text((x + 4, title_h + 20), _fit_text(draw, rest, small, cell - 8), fill=FOREGROUND, font=small)
    for r, (label, images) in enumerate(rows):
        y = title_h + header_h + r * cell
        draw.text((6, y + cell // 2 - 8), _fit_text(draw, label, font, row_label_w - 10), fill=FOREGROUND, font=font)
        for col in range(ncols):
            path = images[col] if col < len(images) else None
            grid.paste(_open_fitted(path, cell), (row_label_w + col * cell, y))
    return grid
