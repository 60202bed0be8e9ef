"""A stand-in for the card's ``evaluate_single_checkpoint.py`` in evaluation tests.

Takes the card script's options, writes ``--num-samples`` small PNGs whose colour encodes
the checkpoint (so a comparison grid can be checked pixel by pixel), prints one progress
line per image, and records its argv in ``argv.json``. Extra knobs for queue tests:
``--hold-file F`` waits until F exists before writing images, ``--sleep S`` per image,
``--exit-code N`` fails after writing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time


def colour_for(checkpoint: str) -> tuple[int, int, int]:
    """A stable colour per checkpoint file name (tests recompute it to check grids)."""
    digest = hashlib.sha256(os.path.basename(checkpoint).encode()).digest()
    return (digest[0], digest[1], digest[2])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--base-model", default="")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--num-samples", type=int, default=2)
    p.add_argument("--device", default="cuda")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--epoch", default="")
    p.add_argument("--hold-file")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--exit-code", type=int, default=0)
    args = p.parse_args(argv)

    from PIL import Image

    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "argv.json"), "w") as fh:
        json.dump({"argv": argv, "pid": os.getpid(), "started": time.time()}, fh)
    print(f"fake eval of {args.checkpoint} on {args.device}", flush=True)
    if args.hold_file:
        while not os.path.exists(args.hold_file):
            time.sleep(0.05)
    colour = colour_for(args.checkpoint)
    size = min(args.resolution, 64)
    for i in range(args.num_samples):
        time.sleep(args.sleep)
        shade = tuple(min(255, c + 20 * i) for c in colour)
        Image.new("RGB", (size, size), shade).save(os.path.join(args.output_dir, f"{i:02d}_{42 + i}.png"))
        print(f"image {i + 1}/{args.num_samples}", flush=True)
    with open(os.path.join(args.output_dir, "finished.json"), "w") as fh:
        json.dump({"ended": time.time()}, fh)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
