"""``i``: the sample and evaluation images of the selected checkpoint.

Half-cell block rendering (works through tmux and SSH) in the screen; with a terminal image
protocol (kitty, iTerm2) ``p`` shows the image at full resolution outside the app. Decoding
happens in a thread worker: PIL must not block the event loop.
"""

from __future__ import annotations

import os
import sys
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static


class ImageRendered(Message):
    def __init__(self, text: Text) -> None:
        super().__init__()
        self.text = text


class ImageScreen(Screen[None]):
    """One image at a time, ``left``/``right`` to move through them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,i", "close", "Back", id="images-close"),
        Binding("right,l,n", "move(1)", "Next", id="images-next"),
        Binding("left,h,N", "move(-1)", "Previous", id="images-previous"),
        Binding("p", "protocol", "Full resolution", id="images-protocol"),
    ]

    def __init__(self, title: str, images: list[str]) -> None:
        super().__init__(id="image-screen")
        self.title_text = title
        self.images = images
        self.index = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="image-title", markup=False)
        yield Static("", id="image-view")
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def on_resize(self) -> None:
        self._show()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "protocol":
            from sdxl_tui.render.protocols import detect_image_support

            return True if detect_image_support().inline else None
        return True

    def _show(self) -> None:
        title = self.query_one("#image-title", Static)
        if not self.images:
            title.update(f"{self.title_text}: no images yet")
            return
        path = self.images[self.index]
        title.update(f"{self.title_text}  [{self.index + 1}/{len(self.images)}]  {os.path.basename(path)}")
        view = self.query_one("#image-view", Static)
        self._render_image(path, max(8, view.size.width), max(4, view.size.height))

    @work(thread=True, exclusive=True, group="image-render")
    def _render_image(self, path: str, cols: int, rows: int) -> None:
        try:
            from sdxl_tui.render.halfblock import render_halfblock

            text = render_halfblock(path, cols, rows)
        except Exception as exc:  # noqa: BLE001 - unreadable or half-written image
            text = Text(f"cannot show {path}: {exc}", style="red")
        self.post_message(ImageRendered(text))

    def on_image_rendered(self, message: ImageRendered) -> None:
        self.query_one("#image-view", Static).update(message.text)

    def action_move(self, delta: int) -> None:
        if self.images:
            self.index = (self.index + delta) % len(self.images)
            self._show()

    def action_protocol(self) -> None:
        from sdxl_tui.render.protocols import detect_image_support, encode_image

        if not self.images:
            return
        support = detect_image_support()
        seq = encode_image(self.images[self.index], support)
        if seq is None:
            self.notify("this terminal has no inline image protocol; showing half blocks", severity="warning")
            return
        with self.app.suspend():
            sys.stdout.write("\x1b[2J\x1b[H" + seq + "\n\npress enter to return to sdxl-tui ")
            sys.stdout.flush()
            try:
                sys.stdin.readline()
            except Exception:  # noqa: BLE001 - a closed terminal ends the full-size view
                pass

    def action_close(self) -> None:
        self.dismiss(None)
