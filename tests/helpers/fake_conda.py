"""Behaves like ``conda run -n ENV CMD…`` for process tests.

Real ``conda run`` writes a temporary shell script and runs it with bash, waits, and does not
forward signals; the tree is ``conda (python) -> bash /tmp/tmpXXXX -> CMD``. This does the
same, so the launcher walk and the kill are tested on that shape.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile


def main(argv: list[str]) -> int:
    args = list(argv)
    if args and args[0] == "run":
        args = args[1:]
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-n", "--name", "-p", "--prefix"):
            args.pop(0)
    if not args:
        print("fake_conda: nothing to run", file=sys.stderr)
        return 2
    fd, script = tempfile.mkstemp(prefix="tmp", suffix=".sh")
    with os.fdopen(fd, "w") as fh:
        fh.write("# activate would happen here\n" + shlex.join(args) + "\n")
    try:
        return subprocess.call(["bash", script])
    finally:
        os.unlink(script)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
