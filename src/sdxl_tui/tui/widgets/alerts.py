"""Alerts pane: every current alert with its fix, newest condition first by severity."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from sdxl_tui.model import Alert, Severity

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold blue"}
_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def alerts_text(alerts: tuple[Alert, ...], extra: tuple[str, ...] = ()) -> Text:
    """Alerts sorted by severity, each with its fix; ``extra`` are app-side notes (hook errors)."""
    if not alerts and not extra:
        return Text("no alerts", style="dim")
    text = Text()
    for n, a in enumerate(sorted(alerts, key=lambda a: _ORDER.get(a.severity, 9))):
        if n:
            text.append("\n")
        text.append(f"{a.severity.value.upper():<7} ", style=_STYLE.get(a.severity, ""))
        text.append(f"{a.kind}", style="bold")
        if a.step is not None:
            text.append(f" @ step {a.step}", style="dim")
        text.append(f": {a.message}")
        if a.fix:
            text.append("\n        fix: ", style="dim")
            text.append(a.fix, style="italic")
    for note in extra:
        text.append("\n" if text.plain else "")
        text.append("note    ", style="dim")
        text.append(note)
    return text


class AlertsPane(Static):
    """The list behind the notifications: alerts stay here while their condition holds."""

    alerts: reactive[tuple[Alert, ...]] = reactive(())
    notes: reactive[tuple[str, ...]] = reactive(())

    _last: str = ""

    def _show(self) -> None:
        text = alerts_text(self.alerts, self.notes)
        if text.markup != self._last:
            self._last = text.markup
            self.update(text)

    def watch_alerts(self) -> None:
        self._show()

    def watch_notes(self) -> None:
        self._show()
