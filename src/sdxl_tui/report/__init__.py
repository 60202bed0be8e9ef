"""Outputs derived from runs: the morning report (HTML and Markdown)."""
