"""Built-in SDXL + kohya LoRA evaluator (``python -m sdxl_tui.evaluator``).

For users without an evaluation script of their own: loads the SDXL base model (single
``.safetensors`` file or a diffusers folder), applies a kohya-format LoRA, renders fixed
prompts with fixed seeds and writes the PNGs, a contact sheet and ``manifest.json``.

This is the only package that imports torch/diffusers, and only inside
:mod:`sdxl_tui.evaluator.pipeline`; the modules imported here stay light so ``--help`` and
the clear "install the [eval] extra" message work without the heavy stack.
"""

from __future__ import annotations

from sdxl_tui.evaluator.cli import build_parser, main
from sdxl_tui.evaluator.errors import EvaluatorError

__all__ = ["EvaluatorError", "build_parser", "main"]
