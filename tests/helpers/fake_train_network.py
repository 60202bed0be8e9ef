"""A stand-in sd-scripts network trainer for process tests (its name matches ``*train*network*.py``).

Why: kill/launch tests need a real process that behaves like the trainer where it matters:
it takes ``--output_dir`` (or ``output_dir`` from ``--config_file``), writes checkpoints in
place over a visible amount of time (no temp file, like safetensors' ``serialize_to_file``),
optionally writes ``-state`` directories with ``train_state.json`` last, forks DataLoader-like
workers that share its command line and ignore SIGINT, and saves nothing when signalled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--output_dir")
    p.add_argument("--config_file")
    p.add_argument("--output_name", default="fake")
    p.add_argument("--save_every", type=float, default=1.0, help="seconds between checkpoints")
    p.add_argument("--write_seconds", type=float, default=0.4, help="time to write one checkpoint")
    p.add_argument("--size", type=int, default=64 * 1024, help="tensor bytes per checkpoint")
    p.add_argument("--epochs", type=int, default=10_000)
    p.add_argument("--save_state", action="store_true")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--ignore_sigint", action="store_true", help="a trainer that does not stop on SIGINT")
    p.add_argument("--interrupt_status", type=int, default=None,
                   help="catch KeyboardInterrupt and exit with this status (real sd-scripts on a GPU: 1)")
    args, _unknown = p.parse_known_args()
    if args.output_dir is None and args.config_file:
        import tomllib

        path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
        with open(path, "rb") as fh:
            args.output_dir = tomllib.load(fh).get("output_dir")
    if not args.output_dir:
        p.error("--output_dir is required")
    return args


def _worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # like PyTorch DataLoader workers
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(0)


def _write_safetensors(path: str, size: int, seconds: float, epoch: int) -> None:
    header = json.dumps(
        {
            "__metadata__": {"ss_epoch": str(epoch), "ss_output_name": "fake"},
            "lora_unet.weight": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    chunks = 8
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.flush()
        for i in range(chunks):
            fh.write(bytes([epoch % 256]) * (size // chunks))
            fh.flush()
            time.sleep(seconds / chunks)
        fh.write(bytes(size - (size // chunks) * chunks))


def main() -> int:
    args = _parse()
    if args.interrupt_status is not None:
        try:
            return _train(args)
        except KeyboardInterrupt:
            print("Traceback (most recent call last):\nKeyboardInterrupt", file=sys.stderr, flush=True)
            return int(args.interrupt_status)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    if args.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for _ in range(args.workers):
        if os.fork() == 0:
            _worker()
    os.makedirs(args.output_dir, exist_ok=True)
    print(f"fake trainer pid {os.getpid()} output_dir {args.output_dir}", flush=True)
    for epoch in range(1, args.epochs + 1):
        print(f"\nepoch {epoch}/{args.epochs}\n", flush=True)
        time.sleep(args.save_every)
        name = f"{args.output_name}-{epoch:06d}"
        path = os.path.join(args.output_dir, name + ".safetensors")
        print(f"\nsaving checkpoint: {path}", flush=True)
        _write_safetensors(path, args.size, args.write_seconds, epoch)
        if args.save_state:
            state = os.path.join(args.output_dir, name + "-state")
            os.makedirs(state, exist_ok=True)
            _write_safetensors(os.path.join(state, "model.safetensors"), args.size, args.write_seconds, epoch)
            with open(os.path.join(state, "train_state.json"), "w") as fh:
                json.dump({"current_epoch": epoch, "current_step": epoch * 10}, fh)
    print("model saved.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
