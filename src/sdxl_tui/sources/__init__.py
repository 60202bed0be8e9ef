"""Pure, blocking readers of a run: no Textual import anywhere below this package."""
