"""The value every check produces: one problem, how bad it is, and its fix.

Why a module of its own: the dataset, option and launch checks all produce findings, and the
report type must not depend on any of them (no import cycles, cheap to import from the TUI).
"""

from __future__ import annotations

from dataclasses import dataclass

_RANK = {"error": 0, "warning": 1, "note": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check.

    ``severity``: "error" (the run would fail), "warning" (it would run, but not as meant) or
    "note" (worth knowing). ``code`` is a stable kebab-case identifier (see the README's rules
    table); ``fix`` says what to change.
    """

    severity: str
    code: str
    message: str
    fix: str = ""
    subject: str | None = None  # the option, key or path the finding is about

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def rank(self) -> int:
        return _RANK[self.severity]

    def to_json(self) -> dict[str, str | None]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
            "subject": self.subject,
        }


def exit_code_for(findings: tuple[Finding, ...] | list[Finding]) -> int:
    """0 clean (notes allowed), 1 warnings only, 2 at least one error."""
    if any(f.severity == "error" for f in findings):
        return 2
    if any(f.severity == "warning" for f in findings):
        return 1
    return 0
