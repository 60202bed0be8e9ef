"""The Textual layer: the only package allowed to import textual."""
