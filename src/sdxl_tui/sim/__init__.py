"""A simulated sd-scripts trainer that writes the real formats (demo, fixtures, benchmarks)."""
