"""Which prompts to render: a prompts file, the config, the LoRA's own captions, or defaults.

Why: the same prompts and seeds must be rendered for every checkpoint so they can be compared, and a
user without a prompts file still wants prompts that mean something for their LoRA — the trigger
words live in the LoRA's ``ss_tag_frequency`` metadata (``train_network.py:NetworkTrainer.train``).
Everything here is light (no torch): the safetensors header is read as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from sdxl_tui.formats.prompts import parse_prompt_line as parse_sd_prompt_line
from sdxl_tui.formats.safetensors import read_metadata

DEFAULT_PROMPTS: tuple[str, ...] = (
    "a portrait photo of a person, detailed face, soft light",
    "a character standing in a sunny park, full body",
    "a close-up of a smiling face, studio lighting",
    "a character sitting at a wooden table, indoors, warm light",
)

#: Variations added to the LoRA's own top tags, one per prompt.
TAG_VARIATIONS: tuple[str, ...] = (
    "",
    "portrait, looking at viewer",
    "full body, standing, outdoors",
    "smiling, close-up, soft light",
    "sitting, indoors, warm light",
    "from side, walking, city street",
    "upper body, simple background",
    "night, dramatic lighting",
)


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One prompt line; ``None`` fields use the command-line defaults."""

    prompt: str
    negative: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None


def parse_prompt_line(line: str) -> PromptSpec | None:
    """A prompts-file line. sd-scripts' sample-prompt options are understood
    (:mod:`sdxl_tui.formats.prompts`): ``--n`` negative prompt, ``--d`` seed, ``--s`` steps,
    ``--l`` guidance scale; ``--w``/``--h`` and the rest are left to the command line."""
    fields = parse_sd_prompt_line(line)
    if fields is None or not fields["prompt"]:
        return None
    return PromptSpec(
        fields["prompt"],
        negative=fields.get("negative_prompt"),
        seed=fields.get("seed"),
        steps=fields.get("sample_steps"),
        guidance=fields.get("scale"),
    )


def read_prompts_file(path: str | os.PathLike[str]) -> list[PromptSpec]:
    """Prompts from a file, one per line (blank lines and ``#`` comments skipped)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        specs = [parse_prompt_line(line) for line in fh]
    return [s for s in specs if s is not None]


def top_tags(metadata: Mapping[str, str], count: int = 3) -> list[str]:
    """The most frequent caption tags of the training set, from ``ss_tag_frequency``."""
    raw = metadata.get("ss_tag_frequency")
    if not raw:
        return []
    try:
        table = json.loads(raw)
    except ValueError:
        return []
    totals: Counter[str] = Counter()
    if isinstance(table, dict):
        for tags in table.values():
            if isinstance(tags, dict):
                for tag, n in tags.items():
                    try:
                        totals[str(tag).strip()] += int(n)
                    except (TypeError, ValueError):
                        continue
    return [tag for tag, _ in totals.most_common(count) if tag]


def prompts_from_tags(tags: list[str], n: int) -> list[PromptSpec]:
    """Prompts built from the LoRA's own top tags ("luca, 3d render") plus fixed variations."""
    base = ", ".join(tags)
    out = []
    for i in range(max(1, min(n, len(TAG_VARIATIONS)))):
        extra = TAG_VARIATIONS[i]
        out.append(PromptSpec(f"{base}, {extra}" if extra else base))
    return out


def resolve_prompts(
    checkpoint: str | os.PathLike[str],
    *,
    prompts_file: str | None,
    config_prompts_file: str | None,
    num_samples: int,
) -> tuple[list[PromptSpec], str]:
    """The prompts to render and where they came from ("file", "config", "lora tags", "default").

    Raises:
        OSError: the prompts file named on the command line cannot be read.
    """
    if prompts_file:
        specs = read_prompts_file(prompts_file)
        if specs:
            return specs, f"file {prompts_file}"
    if config_prompts_file and os.path.isfile(config_prompts_file):
        specs = read_prompts_file(config_prompts_file)
        if specs:
            return specs, f"config {config_prompts_file}"
    tags = top_tags(read_metadata(checkpoint))
    if tags:
        return prompts_from_tags(tags, num_samples), "lora tags"
    return [PromptSpec(p) for p in DEFAULT_PROMPTS], "default"


def quote_prompt(spec: PromptSpec) -> str:
    """The prompts-file line for ``spec`` (so a comparison can pin the exact prompts)."""
    line = spec.prompt.replace("\n", " ")
    if spec.negative:
        line += f" --n {spec.negative}"
    if spec.seed is not None:
        line += f" --d {spec.seed}"
    if spec.steps is not None:
        line += f" --s {spec.steps}"
    if spec.guidance is not None:
        line += f" --l {spec.guidance}"
    return line


__all__ = [
    "DEFAULT_PROMPTS",
    "PromptSpec",
    "parse_prompt_line",
    "prompts_from_tags",
    "quote_prompt",
    "read_prompts_file",
    "resolve_prompts",
    "top_tags",
]
