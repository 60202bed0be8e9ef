"""The shared y/N confirmation of `start` and `kill`."""

from __future__ import annotations

import io

import pytest

from sdxl_tui.commands._prompt import confirm


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "expected"), [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False), ("", False)])
def test_answers_on_a_terminal(monkeypatch: pytest.MonkeyPatch, typed: str, expected: bool) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(typed))
    assert confirm("Kill?") is expected


def test_no_terminal_means_nobody_can_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # piped "y" is not a person
    assert confirm("Kill?") is None
