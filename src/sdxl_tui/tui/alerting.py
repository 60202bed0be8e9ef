"""Alerts as the dashboard delivers them: the Alerts tab's count, a short toast for each
alert seen live (never for what was already true when the run was opened), the bell and
OSC 9 / OSC 777 desktop notifications, and the user's hook command.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.widgets import TabbedContent

from sdxl_tui import notify
from sdxl_tui.model import Alert, Severity
from sdxl_tui.tui.flows import ActionFlows
from sdxl_tui.tui.messages import AlertsRaised, HookFinished
from sdxl_tui.tui.widgets.alerts import AlertsPane
from sdxl_tui.tui.widgets.progress import run_name

if TYPE_CHECKING:
    from typing import TypeVar

    from textual.widget import Widget

    _W = TypeVar("_W", bound=Widget)

_SEVERITY = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "information"}


def _short(message: str, limit: int = 120) -> str:
    """A toast's body: one line, cut at ``limit`` characters (the Alerts pane has it all)."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"



class AlertNotices(ActionFlows):
    """The App's alert delivery (a base class: the App owns the state)."""

    if TYPE_CHECKING:
        environ: dict[str, str]
        terminal_writes: list[str]
        _hook_notes: tuple[str, ...]

        def main_query(self, selector: type[_W]) -> _W | None: ...

    def watch_alerts(self, alerts: tuple[Alert, ...]) -> None:
        tabs = self.main_query(TabbedContent)
        if tabs is not None:
            try:
                tabs.get_tab("tab-alerts").label = f"Alerts ({len(alerts)})" if alerts else "Alerts"
            except Exception:  # noqa: BLE001 - a tab row being rebuilt must not break the alert count
                pass

    def on_alerts_raised(self, message: AlertsRaised) -> None:
        """Every new alert: a notification; unless it was already there when we opened the
        run, also the bell, OSC 9/777 and the hook (each key exactly once)."""
        snap = self.snapshot
        name = run_name(snap) if snap is not None else None
        for alert in message.alerts:
            if message.initial:
                # already true when the run was opened: the Alerts tab counts it; a toast (and a
                # "finished" each time a finished run is opened) would only cover the log
                continue
            body = _short(alert.message) + ("\nfix: see Alerts (a)" if alert.fix else "")
            self.notify(
                body,
                title=f"{alert.kind}",
                severity=_SEVERITY.get(alert.severity, "information"),  # type: ignore[arg-type]
                timeout=10 if alert.severity is Severity.ERROR else 5,
            )
            out = notify.terminal_output(
                alert,
                bell=self.settings.alerts.bell,
                desktop=self.settings.alerts.desktop,
                run_name=name,
                environ=self.environ,
            )
            if out:
                self.terminal_writes.append(out)
                self._write_to_terminal(out)
            hook = self.settings.alerts.hook
            if hook:
                payload = notify.alert_payload(alert, run_dir=self.run_dir, run_name=name)
                self._run_hook(hook, payload)

    def _run_hook(self, argv: tuple[str, ...], payload: str) -> None:
        """A daemon thread per hook run: a slow hook never delays quitting."""
        timeout = self.settings.alerts.hook_timeout

        def target() -> None:
            result = notify.run_hook(argv, payload, timeout=timeout)
            self.post_message(HookFinished(result.ok, result.error or "ok"))

        threading.Thread(target=target, name="alert-hook", daemon=True).start()

    def on_hook_finished(self, message: HookFinished) -> None:
        if not message.ok:
            self._hook_notes = (*self._hook_notes[-4:], f"alert hook: {message.detail}")
            pane = self.main_query(AlertsPane)
            if pane is not None:
                pane.notes = self._hook_notes
            self.notify(message.detail, title="alert hook failed", severity="warning")

    def _write_to_terminal(self, text: str) -> None:
        """Bell and OSC 9/777 notifications go to the terminal itself, in order with the frames.

        Textual has no public call for raw escape sequences; its own ``App.bell`` writes through
        the driver the same way, which is why the Textual pin has an upper bound.
        """
        if not self.is_headless and self._driver is not None:
            self._driver.write(text)
