"""How an alert leaves the app: terminal bell, desktop notification escapes, a hook command.

Pure and blocking, no Textual import: the Textual layer decides *when* (once per new alert
key) and writes the escape sequences through its driver; a worker thread runs the hook.

Why escape sequences: the dashboard usually lives in a tmux pane on a remote box left open
overnight, so the only channel back to the user's desktop is the terminal itself. OSC 9
(iTerm2, WezTerm, Windows Terminal, kitty, foot…) and OSC 777 (urxvt, VTE/GNOME Terminal,
Ghostty) are both sent; terminals ignore the one they do not know. Inside tmux they are
wrapped in a DCS passthrough (tmux needs ``set -g allow-passthrough on``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sdxl_tui.model import Alert

BEL = "\a"
ESC = "\x1b"
ST = ESC + "\\"

#: Default seconds a hook may run (``alerts.hook_timeout``) before it is killed.
HOOK_TIMEOUT = 30.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: str, *, limit: int = 240) -> str:
    """Remove control characters (an escape inside a message would end the OSC early)."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def osc9(message: str) -> str:
    """OSC 9 desktop notification (iTerm2 style)."""
    return f"{ESC}]9;{_clean(message)}{BEL}"


def osc777(title: str, body: str) -> str:
    """OSC 777 ``notify`` (urxvt/VTE style); ``;`` separates fields so it is replaced."""
    return f"{ESC}]777;notify;{_clean(title).replace(';', ',')};{_clean(body).replace(';', ',')}{BEL}"


def tmux_passthrough(sequence: str) -> str:
    """Wrap an escape sequence so tmux forwards it to the outer terminal.

    Every ESC inside the payload is doubled, as tmux's DCS passthrough requires.
    """
    return f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ST}"


def in_tmux(environ: Mapping[str, str] | None = None) -> bool:
    """True when running inside tmux (``$TMUX`` is set by tmux for its panes)."""
    env = os.environ if environ is None else environ
    return bool(env.get("TMUX"))


def alert_title(alert: Alert, run_name: str | None = None) -> str:
    """Short notification title: ``sdxl-tui luca_sdxl_v1: oom``."""
    prefix = f"sdxl-tui {run_name}" if run_name else "sdxl-tui"
    return f"{prefix}: {alert.kind}"


def desktop_sequences(
    alert: Alert, *, run_name: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """OSC 9 and OSC 777 for one alert, tmux-wrapped when inside tmux."""
    title = alert_title(alert, run_name)
    body = alert.message
    seqs = [osc9(f"{title} - {body}"), osc777(title, body)]
    if in_tmux(environ):
        seqs = [tmux_passthrough(s) for s in seqs]
    return "".join(seqs)


def terminal_output(
    alert: Alert,
    *,
    bell: bool = True,
    desktop: bool = True,
    run_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Everything to write to the terminal for one new alert (may be empty)."""
    out = ""
    if desktop:
        out += desktop_sequences(alert, run_name=run_name, environ=environ)
    if bell:
        out += BEL
    return out


def alert_payload(alert: Alert, *, run_dir: str | None = None, run_name: str | None = None) -> str:
    """The JSON document a hook reads on stdin."""
    data = alert.to_json()
    data["run_dir"] = run_dir
    data["run_name"] = run_name
    return json.dumps(data, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class HookResult:
    """What happened when the hook ran (shown in the alerts pane when it failed)."""

    argv: tuple[str, ...]
    returncode: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


def run_hook(
    argv: Sequence[str], payload: str, *, timeout: float = HOOK_TIMEOUT, cwd: str | None = None
) -> HookResult:
    """Run the user's hook once with the alert JSON on stdin.

    ``argv`` is a list, never a shell string: nothing from the alert is ever interpreted by a
    shell. Output is discarded (it would scribble over the dashboard), the hook gets its own
    session so a Ctrl-C in the terminal does not reach it, and a hung hook is killed after
    ``timeout`` seconds. Blocking: call it from a worker thread.
    """
    args = tuple(str(a) for a in argv)
    if not args:
        return HookResult(args, None, "no hook configured")
    try:
        proc = subprocess.run(
            args,
            input=payload.encode("utf-8"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            cwd=cwd,
            start_new_session=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return HookResult(args, None, f"hook timed out after {timeout:g}s")
    except OSError as exc:
        return HookResult(args, None, f"hook could not start: {exc}")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = err[-1] if err else ""
        return HookResult(args, proc.returncode, f"hook exited {proc.returncode}: {tail}".rstrip(": "))
    return HookResult(args, 0)


class AlertTracker:
    """Remembers which alert keys were already announced, so each fires exactly once.

    Keys are remembered for the life of the tracker: a condition that flaps (a GPU hovering
    around the heat threshold) is announced once, not every time it comes back.
    """

    def __init__(self, seen: Iterable[str] = ()) -> None:
        self._seen: set[str] = set(seen)

    @staticmethod
    def key(alert: Alert) -> str:
        return alert.key or alert.kind

    def new(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Alerts whose key was never seen before (and remember them)."""
        fresh: list[Alert] = []
        for alert in alerts:
            k = self.key(alert)
            if k not in self._seen:
                self._seen.add(k)
                fresh.append(alert)
        return fresh
