"""Run a Python snippet where file modes are enforced: as root, without the capabilities that
let root read any file (a real EACCES, as a user meets it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

_CAPS = "-dac_override,-dac_read_search"


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` as is, or, as root, under ``setpriv`` with CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH dropped (util-linux; Debian has it in the base system)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root needs setpriv (util-linux) to test unreadable files")
    return [setpriv, "--bounding-set", _CAPS, "--inh-caps", _CAPS, *argv]


def run_python(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -c code`` with this test run's import path, unprivileged (see above)."""
    argv = unprivileged([sys.executable, "-c", code])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
