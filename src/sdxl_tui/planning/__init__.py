"""SD1.5 -> SDXL migration (plan) and launch checking (check) against sd-scripts' options."""
