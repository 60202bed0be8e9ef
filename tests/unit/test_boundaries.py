"""The architecture's one hard rule: only ``sdxl_tui.tui`` may import Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sdxl_tui


def _modules_outside_tui() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(sdxl_tui.__path__, "sdxl_tui."):
        if info.name.startswith(("sdxl_tui.tui", "sdxl_tui.evaluator")) or info.name == "sdxl_tui.__main__":
            continue
        names.append(info.name)
    return names


def test_core_never_imports_textual() -> None:
    modules = _modules_outside_tui()
    assert "sdxl_tui.model" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"textual imported by core modules: {out.stdout}"


def test_cli_help_does_not_import_textual_or_tbparse() -> None:
    code = (
        "import sys\n"
        "from sdxl_tui.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('textual', 'tbparse', 'pandas', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
