"""The bottom layer: the file formats of sd-scripts and of sdxl-tui, one home for each fact.

Every module here is pure (plain data in, frozen data out, at most a file read or an atomic
write) and imports nothing from the layers above, so the readers, the checks, the simulator
and the actions agree on what a file means. See docs/architecture.md for the table of homes.
"""
