"""File formats of the trainer and of sdxl-tui: the one home of each format fact."""
