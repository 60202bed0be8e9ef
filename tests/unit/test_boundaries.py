"""The layers of docs/architecture.md, checked by import-linter's contracts in pyproject.toml.

The contracts are the rule (``lint-imports`` also runs in CI); this test makes ``pytest``
fail on a broken contract too, and checks what a static import graph cannot see: the
command-line entry point stays light at run time (lazy imports of the heavy libraries).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else shutil.which("lint-imports")


@pytest.mark.skipif(_lint_imports() is None, reason="import-linter is not installed (the test extra has it)")
def test_import_contracts_are_kept() -> None:
    exe = _lint_imports()
    assert exe is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_cli_help_does_not_import_textual_or_tbparse() -> None:
    code = (
        "import sys\n"
        "from sdxl_tui.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('textual', 'tbparse', 'pandas', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
