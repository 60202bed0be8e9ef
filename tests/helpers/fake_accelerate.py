"""Behaves like accelerate's single-GPU simple launcher for process tests.

``accelerate launch [opts] script.py ARGS`` runs ``<sys.executable> script.py ARGS`` as a
child, waits for it and forwards no signal (REF §8.1): killing only this process orphans
the trainer.
"""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    args = list(argv)
    if args and args[0] == "launch":
        args = args[1:]
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt in ("--num_cpu_threads_per_process", "--num_processes", "--mixed_precision"):
            args.pop(0)
    rc = subprocess.Popen([sys.executable, *args]).wait()
    if rc != 0:
        print(f"subprocess.CalledProcessError: Command died with {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
