"""Pure image -> terminal renderers (no Textual).

``halfblock`` turns an image into a Rich ``Text`` of upper-half blocks (two pixels per
cell, works in any colour terminal and through tmux), ``protocols`` detects and encodes the
kitty / iTerm2 inline image protocols, and ``sheet`` assembles contact sheets and
comparison grids with Pillow. Pillow is imported lazily inside the functions that need it,
so importing this package stays cheap.
"""

from __future__ import annotations
