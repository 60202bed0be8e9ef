"""Confirmation dialogs: kill (names pid, user and command of every process, nvitop style),
start (the launch argv and the preflight findings) and the evaluation choice."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[str | None]):
    """A titled body and a row of buttons; dismisses with the pressed button's id."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def __init__(
        self,
        title: str,
        body: str,
        buttons: list[tuple[str, str, str]],
        *,
        id: str | None = None,
    ) -> None:
        """``buttons``: (id, label, variant) with variant one of default/primary/error/warning."""
        super().__init__(id=id)
        self.title_text = title
        self.body = body
        self.buttons = buttons

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="dialog-title", markup=False)
            with VerticalScroll(id="dialog-body"):
                yield Static(self.body, markup=False)
            with Horizontal(id="dialog-buttons"):
                for button_id, label, variant in self.buttons:
                    yield Button(label, id=button_id, variant=variant)  # type: ignore[arg-type]
            yield Static(default_hint(self.buttons), id="dialog-hint", markup=False)

    def on_mount(self) -> None:
        # Focus the safe choice (the last button is always "cancel"); the hint says so.
        self.query(Button).last().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


def default_hint(buttons: list[tuple[str, str, str]]) -> str:
    """The line under the buttons: what Enter does now (the safe, focused last button)."""
    safe = buttons[-1][1] if buttons else "Close"
    others = " · tab / arrows: another button" if len(buttons) > 1 else ""
    return f"enter: {safe} (the default){others} · esc: {safe.lower()}"


def kill_body(processes: list[dict[str, object]], refusals: list[str], notes: list[str]) -> str:
    """Text naming every process the kill will signal."""
    lines = ["These processes will be stopped (SIGINT, then SIGTERM, then SIGKILL):", ""]
    lines.append(f"{'PID':>7}  {'USER':<10} {'ROLE':<9} COMMAND")
    for p in processes:
        cmd = str(p.get("cmdline", ""))
        lines.append(f"{p.get('pid', '?')!s:>7}  {p.get('user') or '?'!s:<10} {p.get('role') or ''!s:<9} {cmd}")
    if refusals:
        lines += ["", "Refused:"] + [f"  {r}" for r in refusals]
    if notes:
        lines += ["", *notes]
    lines += ["", "Nothing is saved on interrupt: progress since the last checkpoint is lost."]
    return "\n".join(lines)


__all__ = ["ConfirmScreen", "default_hint", "escape", "kill_body"]
