"""``networks/lora.py`` on the SDXL base: how many modules a LoRA has, and their sizes.

``networks/lora.py:create_network`` targets the U-Net's Linear/Conv 1x1 layers of the original
SGM names and both text encoders' Linear layers; the trainer logs the counts
(``create LoRA for U-Net: 722 modules.``). The simulator writes files of these shapes and the
planner sizes checkpoints from them.
"""

from __future__ import annotations

#: U-Net modules a LoRA trains, and the sum of their (in + out) features
UNET_MODULES = 722
UNET_IN_OUT = 2_659_840
#: text encoder modules (CLIP-L 12 layers x 6 Linear + OpenCLIP-G 32 x 6), and their (in + out) sum
TE_MODULES = 264
TE_IN_OUT = 903_168

__all__ = ["TE_IN_OUT", "TE_MODULES", "UNET_IN_OUT", "UNET_MODULES"]
