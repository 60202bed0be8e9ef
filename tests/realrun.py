"""The real sd-scripts run stored in ``tests/fixtures/``, rebuilt as a run directory.

The repository keeps the real run's log and event file byte for byte, but only the header of
each checkpoint: three 21 MB files of tensor data that no test reads would dominate the
repository. :func:`materialize` writes the directory the real trainer left behind (each
checkpoint as its header plus a sparse hole up to the real size, the real modification
times), so readers meet the same sizes, names, headers and times as on the real machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
STORED = FIXTURES / "real-sdxl-run"
INPUTS = FIXTURES / "real-sdxl-run-inputs"
HEADER_SUFFIX = ".header"
_NOT_COPIED = {"README.md", "mtimes.json"}


def materialize(target: Path) -> Path:
    """Rebuild the real run directory under ``target`` (created) and return ``target``."""
    manifest = json.loads((STORED / "mtimes.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    for src in sorted(STORED.rglob("*")):
        rel = src.relative_to(STORED)
        if src.is_dir() or rel.name in _NOT_COPIED:
            continue
        if src.name.endswith(HEADER_SUFFIX):
            name = str(rel)[: -len(HEADER_SUFFIX)]
            dst = target / name
            dst.write_bytes(src.read_bytes())
            os.truncate(dst, manifest["sizes"][name])
        else:
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    for name, mtime in manifest["mtimes"].items():
        os.utime(target / name, (mtime, mtime))
    return target
