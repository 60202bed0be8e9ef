"""Log pane: follows the tail, pauses when scrolled up with an "N new lines" marker, search.

A virtual ``ScrollView`` over a bounded deque renders only the visible lines (toolong), so a
tqdm bar redrawn thousands of times stays one updating line: a batch line whose number equals
the last shown line's replaces it instead of appending.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Label

from sdxl_tui.model import LogLine

MAX_LINES = 5000

_LEVEL_STYLE = {
    "WARNING": Style(color="yellow"),
    "ERROR": Style(color="red", bold=True),
    "CRITICAL": Style(color="red", bold=True, reverse=True),
}
_KIND_STYLE = {"progress": Style(color="cyan"), "traceback": Style(color="red")}
_MATCH = Style(bgcolor="dark_goldenrod", color="black")
_CURRENT = Style(bgcolor="grey30")


class LogView(ScrollView, can_focus=True):
    """The tail of the trainer's console log."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow tail", show=False, id="log-follow"),
        Binding("n", "find_next", "Older match", show=False, id="log-next-match"),
        Binding("N", "find_previous", "Newer match", show=False, id="log-previous-match"),
    ]

    unseen: reactive[int] = reactive(0)
    """Lines that arrived while the user was scrolled up (the marker shows them)."""
    following: reactive[bool] = reactive(True)

    class FollowChanged(Message):
        """Posted when following starts or stops, or the unseen count changes."""

        def __init__(self, following: bool, unseen: int) -> None:
            super().__init__()
            self.following = following
            self.unseen = unseen

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines: deque[LogLine] = deque(maxlen=max_lines)
        self._width = 0
        self.search_text = ""
        self.match_index: int | None = None  # index into self.lines
        #: Rendered lines by (line number, text, match state, x offset, width): scrolling by
        #: one line on append re-renders only the new line.
        self._strips: dict[tuple[object, ...], Strip] = {}
        self._base_style: Style | None = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._strips.clear()

    # -- data ---------------------------------------------------------------------------
    def add_lines(self, lines: tuple[LogLine, ...], reset: bool = False) -> None:
        """Append a batch; a redraw of the last line replaces it."""
        at_end = self.following
        if reset:
            self.lines.clear()
            self.match_index = None
            self._width = 0
        added = 0
        for line in lines:
            if self.lines and line.number == self.lines[-1].number:
                self.lines[-1] = line
            elif self.lines and line.number < self.lines[-1].number:
                continue  # already shown (a window overlap)
            else:
                full = len(self.lines) == self.lines.maxlen
                self.lines.append(line)
                added += 1
                if full and self.match_index is not None:
                    self.match_index = self.match_index - 1 if self.match_index > 0 else None
            self._width = max(self._width, len(line.text))
        self.virtual_size = Size(self._width + 1, len(self.lines))
        if at_end:
            self._scroll_to_tail()
        elif added:
            self.unseen += added
        self.refresh()

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    # -- follow / pause ------------------------------------------------------------------
    def _at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 0.5

    def _scroll_to_tail(self) -> None:
        # Until a layout has shown the scrollbar (the first batch of lines, a resize), Textual
        # refuses to scroll: scroll after that refresh, or the pane shows the log's start.
        self.scroll_end(animate=False, immediate=self.allow_vertical_scroll, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        at_bottom = self._at_bottom()
        if at_bottom and not self.following:
            self.following = True
            self.unseen = 0
        elif not at_bottom and self.following and new < old:
            self.following = False

    def watch_following(self) -> None:
        self.post_message(self.FollowChanged(self.following, self.unseen))

    def watch_unseen(self) -> None:
        self.post_message(self.FollowChanged(self.following, self.unseen))

    def action_follow(self) -> None:
        self.following = True
        self.unseen = 0
        self._scroll_to_tail()

    def on_resize(self, event: events.Resize) -> None:
        if self.following:
            self._scroll_to_tail()

    # -- search --------------------------------------------------------------------------
    def find(self, query: str, *, newer: bool = False, restart: bool = False) -> bool:
        """Move to the next older (or ``newer``) line containing ``query``, case-insensitive.

        A new search starts from the newest line and goes up: in a log tail the latest
        occurrence is the one wanted. Wraps around at either end.
        """
        self.search_text = query
        if restart:
            self.match_index = None
        if not query or not self.lines:
            self.match_index = None
            self.refresh()
            return False
        q = query.lower()
        n = len(self.lines)
        step = 1 if newer else -1
        start = (n - 1) if self.match_index is None else self.match_index + step
        for k in range(n):
            i = (start + step * k) % n
            if q in self.lines[i].text.lower():
                self.match_index = i
                self.following = False
                self.scroll_to(y=max(0, i - self.size.height // 2), animate=False, immediate=True)
                self.refresh()
                return True
        self.match_index = None
        self.refresh()
        return False

    def action_find_next(self) -> None:
        """``n``: the next older match."""
        if self.search_text:
            self.find(self.search_text)

    def action_find_previous(self) -> None:
        """``N``: the next newer match."""
        if self.search_text:
            self.find(self.search_text, newer=True)

    # -- rendering -----------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if self._base_style is None:
            self._base_style = self.rich_style
        widget_style = self._base_style
        if index >= len(self.lines):
            return Strip.blank(width, widget_style)
        line = self.lines[index]
        q = self.search_text.lower()
        key = (line.number, line.text, index == self.match_index, q, scroll_x, width)
        cached = self._strips.get(key)
        if cached is not None:
            return cached
        if len(self._strips) > 4 * max(50, self.size.height):
            self._strips.clear()
        base = _LEVEL_STYLE.get(line.level or "") or _KIND_STYLE.get(line.kind) or Style()
        if index == self.match_index:
            base = base + _CURRENT
        text = line.text
        segments: list[Segment] = []
        if q and q in text.lower():
            low = text.lower()
            pos = 0
            while True:
                hit = low.find(q, pos)
                if hit < 0:
                    segments.append(Segment(text[pos:], base))
                    break
                segments.append(Segment(text[pos:hit], base))
                segments.append(Segment(text[hit : hit + len(q)], base + _MATCH))
                pos = hit + len(q)
        else:
            segments.append(Segment(text, base))
        strip = Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width, widget_style)
        strip = strip.apply_style(widget_style)
        self._strips[key] = strip
        return strip


class LogPane(Vertical):
    """The log view, its "N new lines" marker and the search box (``/``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_search", "Close search", show=False, id="log-close-search"),
    ]

    def compose(self) -> ComposeResult:
        yield LogView(id="log-view")
        yield Label("", id="log-marker")
        yield Input(placeholder="search the log, newest first (enter: search, then n older / N newer; esc: close)",
                    id="log-search")

    def on_mount(self) -> None:
        self.query_one("#log-marker", Label).display = False
        self.query_one("#log-search", Input).display = False

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_log_view_follow_changed(self, event: LogView.FollowChanged) -> None:
        marker = self.query_one("#log-marker", Label)
        if event.following:
            marker.display = False
        else:
            marker.display = True
            n = event.unseen
            marker.update(
                f"▼ {n} new line{'s' if n != 1 else ''}  (end: follow the tail)"
                if n
                else "paused  (end: follow the tail)"
            )

    def open_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.focus()

    def action_close_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = False
        self.view.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape closes an open search only; otherwise it goes on to the app (back to the runs view)."""
        if action == "close_search":
            return bool(self.query_one("#log-search", Input).display)
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        view = self.view
        found = view.find(event.value, restart=view.search_text != event.value)
        if not found:
            self.app.notify(f"not found in the log: {event.value!r}", severity="warning", timeout=3)
        view.focus()  # n / N now step through the matches; / edits the query again

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.view.find(event.value, restart=True)
