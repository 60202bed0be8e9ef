"""`sdxl-tui kill` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    print("sdxl-tui kill: not implemented yet", file=sys.stderr)
    return 2
