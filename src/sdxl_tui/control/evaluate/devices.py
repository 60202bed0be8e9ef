"""The per-user lock of each GPU an evaluation runs on.

Why: two evaluations on one GPU (from two run directories, each with its own queue runner)
would both run out of memory; the runner holding a job takes its device's lock for the job's
lifetime, across run directories. ``cuda`` means ``cuda:0``; the CPU needs no lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from typing import Any

from sdxl_tui.control.evaluate.store import status_lock, update_status
from sdxl_tui.formats.statedir import read_json


def device_lock_path(device: str) -> str | None:
    """The per-user lock file of a GPU (``cuda`` means ``cuda:0``); None for the CPU.

    Why: two evaluations on one GPU (from two run directories) would both run out of memory;
    the runner holding a job takes this lock for the job's lifetime, across run directories.
    """
    name = device.strip().lower() or "cuda"
    if name == "cpu":
        return None
    if name == "cuda":
        name = "cuda:0"
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"sdxl-tui-{os.getuid()}"
    )
    return os.path.join(base, "sdxl-tui-locks", re.sub(r"[^\w.-]+", "_", name) + ".lock")


def acquire_device(run_dir: str, path: str, device: str, poll_interval: float) -> Any:
    """Wait (the job stays queued, with a note) until the device is free; the open lock file,
    or None if the job was cancelled meanwhile or the device needs no lock."""
    lock_path = device_lock_path(device)
    if lock_path is None:
        return None
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fh = open(lock_path, "a+")  # noqa: SIM115 - held while the evaluation runs
    noted = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if noted:
                with status_lock(run_dir):
                    update_status(path, note=None)
            return fh
        except OSError:
            pass
        with status_lock(run_dir):
            data = read_json(path) or {}
            if data.get("status") != "queued":
                fh.close()
                return False
            if not noted:
                update_status(path, note=f"waiting for {device}: another evaluation is using it")
                noted = True
        time.sleep(poll_interval)
