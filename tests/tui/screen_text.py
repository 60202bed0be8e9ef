"""Read what the app shows as plain text (assert on the screen, not on internals)."""

from __future__ import annotations

from textual.app import App


def screen_text(app: App[object]) -> str:
    """The current screen, one line per terminal row, trailing spaces removed."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)
