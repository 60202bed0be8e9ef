"""The evaluator's one exception (its own module, so the pipeline and the CLI share it
without importing each other)."""

from __future__ import annotations


class EvaluatorError(Exception):
    """A problem the user can fix; its message is printed as one line, exit status 2."""
