"""``python -m sdxl_tui.control.evaluate runner DIR``: the detached queue runner."""

from __future__ import annotations

import sys

from sdxl_tui.control.evaluate.runner import main

sys.exit(main())
