"""Sample images and evaluation contact sheets, downscaled and inlined as ``data:`` URIs.

Why inline: the report must open from a copy (``scp`` to a laptop, a chat attachment) with no
files beside it and no network, so every picture travels inside the HTML. Pictures are
downscaled and JPEG-encoded to keep the file to a few megabytes, with a total budget past
which further pictures are listed by path instead.
"""

from __future__ import annotations

import base64
import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sdxl_tui.model import Evaluation, Sample

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

__all__ = ["InlineImage", "comparison_grids", "encode_image", "evaluation_sheets", "latest_samples"]

#: Inline images stop here; the rest are named by path.
IMAGE_BUDGET_BYTES = 6_000_000
CONTACT_SHEET = "contact_sheet.png"  # written by the built-in evaluator (evaluator/pipeline.py)


@dataclass(frozen=True, slots=True)
class InlineImage:
    """A picture ready for ``<img src=...>``."""

    caption: str
    path: str
    data_uri: str
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.data_uri)


def _encode(img: PILImage, caption: str, path: str, *, max_side: int, quality: int = 80) -> InlineImage:
    rgb = img.convert("RGB")
    from PIL.Image import Resampling

    rgb.thumbnail((max_side, max_side), Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, optimize=True)
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return InlineImage(caption, path, uri, rgb.width, rgb.height)


def encode_image(path: str, caption: str, *, max_side: int) -> InlineImage | None:
    """Downscale ``path`` to ``max_side`` and encode it as a JPEG ``data:`` URI; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return _encode(img, caption, path, max_side=max_side)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class Budget:
    """Counts inlined bytes; what does not fit is remembered by path."""

    def __init__(self, limit: int = IMAGE_BUDGET_BYTES) -> None:
        self.left = limit
        self.skipped: list[str] = []

    def take(self, image: InlineImage | None, path: str) -> InlineImage | None:
        if image is None:
            return None
        if image.size > self.left:
            self.skipped.append(path)
            return None
        self.left -= image.size
        return image


def latest_samples(samples: Sequence[Sample], budget: Budget, *, limit: int = 8,
                   max_side: int = 320) -> tuple[str, tuple[InlineImage, ...]]:
    """The images of the newest sampling (highest epoch, then step), with a group caption."""
    if not samples:
        return "", ()

    def key(s: Sample) -> tuple[int, int]:
        return (s.epoch or 0, s.step or 0)

    newest = max(key(s) for s in samples)
    group = sorted((s for s in samples if key(s) == newest), key=lambda s: (s.prompt_index or 0, s.name))
    epoch, step = newest
    where = f"epoch {epoch}" if epoch else (f"step {step}" if step else "latest")
    out = []
    for s in group[:limit]:
        caption = f"prompt {s.prompt_index}" if s.prompt_index is not None else s.name
        img = budget.take(encode_image(s.path, caption, max_side=max_side), s.path)
        if img is not None:
            out.append(img)
    return f"{where}: {len(group)} image{'s' if len(group) != 1 else ''}", tuple(out)


def _sheet_for(ev: Evaluation, max_side: int) -> InlineImage | None:
    """The evaluation's contact sheet, or one made now from its images."""
    caption = f"{ev.name} ({ev.checkpoint or 'checkpoint ?'})"
    sheet = os.path.join(ev.path, CONTACT_SHEET)
    if os.path.isfile(sheet):
        return encode_image(sheet, caption, max_side=max_side)
    if not ev.images:
        return None
    from sdxl_tui.render.sheet import contact_sheet

    return _encode(contact_sheet(list(ev.images), cell=192), caption, ev.path, max_side=max_side)


def evaluation_sheets(evaluations: Sequence[Evaluation], budget: Budget, *, limit: int = 4,
                      max_side: int = 900) -> tuple[InlineImage, ...]:
    """Contact sheets of the newest finished evaluations (by epoch, then name)."""
    done = [e for e in evaluations if e.status == "done"]
    done.sort(key=lambda e: (e.epoch or 0, e.name), reverse=True)
    out = []
    for ev in done[:limit]:
        img = budget.take(_sheet_for(ev, max_side), ev.path)
        if img is not None:
            out.append(img)
    return tuple(out)


def comparison_grids(run_dir: str, budget: Budget, *, limit: int = 2,
                     max_side: int = 1100) -> tuple[InlineImage, ...]:
    """The newest ``compare_<label>.png`` grids (``sdxl-tui eval --compare``, key ``g``)."""
    paths = sorted(glob.glob(os.path.join(glob.escape(run_dir), "compare_*.png")),
                   key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0.0, reverse=True)
    out = []
    for path in paths[:limit]:
        label = os.path.basename(path)[len("compare_"):-len(".png")]
        img = budget.take(encode_image(path, f"comparison {label}", max_side=max_side), path)
        if img is not None:
            out.append(img)
    return tuple(out)
