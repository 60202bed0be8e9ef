"""``python -m sdxl_tui.evaluator``: the card script's options, no script of your own needed."""

from __future__ import annotations

import sys

from sdxl_tui.evaluator.cli import main

if __name__ == "__main__":
    sys.exit(main())
