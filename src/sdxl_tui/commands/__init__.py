"""One module per CLI subcommand: ``add_arguments(parser)`` and ``run(args) -> int``.

Keep these modules light at import time (``cli.build_parser`` imports them all); import
readers, Textual and other heavy modules inside ``run``.
"""
