"""Sample images of a simulated run (``library/train_util.py:sample_images``).

When a run samples (``--sample_at_first``, ``--sample_every_n_steps``/``_epochs``), the prompt
file's lines (``--n --w --h --d --l --s --ss``) and the file names sd-scripts gives the images.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sdxl_tui.formats.names import sample_file_name
from sdxl_tui.formats.prompts import parse_prompt_line
from sdxl_tui.sim.base import TrainerBase
from sdxl_tui.sim.png import png_bytes


class Sampling(TrainerBase):
    """Sampling at the steps and epochs the options ask for."""

    def _sample(self, *, epoch: int | None, steps: int) -> None:
        a = self.args
        if steps == 0:
            if not a.sample_at_first:
                return
        else:
            if a.sample_every_n_steps is None and a.sample_every_n_epochs is None:
                return
            if a.sample_every_n_epochs is not None:
                if epoch is None or epoch % a.sample_every_n_epochs != 0:
                    return
            elif steps % a.sample_every_n_steps != 0 or epoch is not None:
                return
        if not a.sample_prompts:
            return
        self.log("sample_empty", "")
        self.log("sample_header", f"generating sample images at step / サンプル画像生成 ステップ: {steps}")
        prompts = read_prompts(a.sample_prompts)
        if prompts is None:
            self.log(
                "no_prompt_file", f"No prompt file / プロンプトファイルがありません: {a.sample_prompts}", logging.ERROR
            )
            return
        sample_dir = self.output_dir / "sample"
        sample_dir.mkdir(parents=True, exist_ok=True)
        ranks = self.ranks  # rank r of N draws prompts r, r+N, ... (sample_images_common)
        for i, p in list(enumerate(prompts))[ranks.rank::ranks.world_size]:
            self.log("sample_prompt", f"prompt: {p['prompt']}")
            if p.get("negative_prompt") is not None:
                self.log("sample_negative", f"negative_prompt: {p['negative_prompt']}")
            h, w = int(p.get("height", 512)), int(p.get("width", 512))
            n_steps = int(p.get("sample_steps", 30))
            self.log("sample_height", f"height: {h}")
            self.log("sample_width", f"width: {w}")
            self.log("sample_steps", f"sample_steps: {n_steps}")
            self.log("sample_scale", f"scale: {p.get('scale', 7.5)}")
            self.log("sample_sampler", f"sample_sampler: {p.get('sample_sampler', a.sample_sampler)}")
            seed = p.get("seed")
            if seed is not None:
                self.log("sample_seed", f"seed: {seed}")
            bar = self.new_bar(n_steps, leave=False, position=1 if self.bar is not None else 0)
            per = self.sim.step_seconds * 1.5 / max(1, n_steps)
            for _ in range(n_steps):
                self.sleep(per)
                bar.update(1)
            bar.close()
            ts = time.strftime("%Y%m%d%H%M%S", time.localtime(self.h.now()))
            fname = sample_file_name(a.output_name, epoch=epoch, step=steps, index=i, timestamp=ts, seed=seed)
            (sample_dir / fname).write_bytes(png_bytes(w, h, i + steps))



def read_prompts(path: str) -> list[dict[str, Any]] | None:
    """The prompt file's lines as sd-scripts reads them (.txt only); None when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except OSError:
        return None
    return [d for d in (parse_prompt_line(line) for line in lines) if d is not None]
