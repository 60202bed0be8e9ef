"""``python -m sdxl_tui`` == ``sdxl-tui``."""

import sys

from sdxl_tui.cli import main

sys.exit(main())
