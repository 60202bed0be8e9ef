"""``python -m sdxl_tui`` == ``sdxl-tui``."""

from sdxl_tui.cli import entry

entry()
