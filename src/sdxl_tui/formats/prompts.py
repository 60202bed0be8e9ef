"""sd-scripts' sample-prompt lines: ``PROMPT --n NEGATIVE --w W --h H --d SEED --l SCALE --s STEPS --ss SAMPLER``.

``library/train_util.py:sample_images`` reads a ``--sample_prompts`` .txt file one prompt a line
(blank lines and ``#`` comments skipped); each ``--x VALUE`` after the prompt sets one field. A
value that does not convert is ignored, as are options it does not know. The simulator samples
with these fields; the built-in evaluator takes the prompt, negative, seed, steps and scale.
"""

from __future__ import annotations

from typing import Any

#: option letter -> (field name as sd-scripts' prompt dict calls it, conversion)
PROMPT_OPTIONS: dict[str, tuple[str, type[Any]]] = {
    "n": ("negative_prompt", str),
    "w": ("width", int),
    "h": ("height", int),
    "d": ("seed", int),
    "l": ("scale", float),
    "s": ("sample_steps", int),
    "ss": ("sample_sampler", str),
}


def parse_prompt_line(line: str) -> dict[str, Any] | None:
    """The fields of one prompt line (``prompt`` and those its options set); None for a blank
    line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    parts = line.split(" --")
    fields: dict[str, Any] = {"prompt": parts[0].strip()}
    for part in parts[1:]:
        key, _, value = part.partition(" ")
        known = PROMPT_OPTIONS.get(key)
        if known is None:
            continue
        name, convert = known
        try:
            fields[name] = convert(value.strip())
        except ValueError:
            continue
    return fields


__all__ = ["PROMPT_OPTIONS", "parse_prompt_line"]
