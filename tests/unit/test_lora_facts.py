"""The module counts of formats/lora.py are the shapes the simulator writes (one fact, two users)."""

from __future__ import annotations

from sdxl_tui.formats.lora import TE_IN_OUT, TE_MODULES, UNET_IN_OUT, UNET_MODULES
from sdxl_tui.sim.lorafile import text_encoder_modules, unet_modules


def test_unet_and_text_encoder_counts_match_the_simulated_lora_shapes() -> None:
    unet, te = unet_modules(), text_encoder_modules()
    assert (len(unet), sum(i + o for _, i, o in unet)) == (UNET_MODULES, UNET_IN_OUT)
    assert (len(te), sum(i + o for _, i, o in te)) == (TE_MODULES, TE_IN_OUT)
