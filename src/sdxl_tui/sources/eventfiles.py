"""Where a run's event files are: discovery under the roots, and the run each belongs to.

Why: sd-scripts writes each launch into ``<logging_dir>/<prefix><YYYYmmddHHMMSS>/network_train/``
(``train_network.py:NetworkTrainer.train`` via accelerate's TensorBoard tracker); a resumed run
adds a directory. The reader reads runs in the order of that timestamp and never walks into
folders that cannot hold event files (samples, states, evaluations, our own ``.sdxl-tui``).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Sequence

from sdxl_tui.formats.names import SAMPLE_DIR, STATE_SUFFIX
from sdxl_tui.formats.statedir import STATE_DIR
from sdxl_tui.formats.tfrecord import EVENT_FILE_PREFIX

__all__ = ["discover_event_files", "file_time", "run_key"]

_RUN_DIR = re.compile(r"(\d{14})$")
# directories of a run that never hold event files: samples, resumable states, our own
# control files, evaluations, VCS/caches
_PRUNE = re.compile(rf"^(?:{SAMPLE_DIR}|{re.escape(STATE_DIR)}|\.git|__pycache__|eval_.*|.*{STATE_SUFFIX})$")
_FILE_TIME = re.compile(r"events\.out\.tfevents\.(\d+)")


def discover_event_files(roots: Sequence[str], problems: list[str]) -> list[tuple[tuple[str, str], float, str]]:
    """Every event file under ``roots``: (run key, file time, path), sorted (run order)."""
    found: dict[str, tuple[tuple[str, str], float, str]] = {}
    for root in roots:
        try:
            st = os.stat(root)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"cannot read {root}: {exc.strerror or exc}")
            continue
        if stat.S_ISREG(st.st_mode):
            if EVENT_FILE_PREFIX in os.path.basename(root):
                real = os.path.realpath(root)
                found.setdefault(real, (run_key(root, root), file_time(root), root))
            continue
        _walk(root, root, found, problems, 0, set())
    return sorted(found.values())

def _walk(root: str, d: str, found: dict[str, tuple[tuple[str, str], float, str]],
           problems: list[str], depth: int, seen: set[tuple[int, int]]) -> None:
    if depth > 8:
        return
    try:
        st = os.stat(d)
        ident = (st.st_dev, st.st_ino)
        if ident in seen:  # symlink loop
            return
        seen.add(ident)
        with os.scandir(d) as it:
            entries = list(it)
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.append(f"cannot list {d}: {exc.strerror or exc}")
        return
    for e in entries:
        try:
            if e.is_dir():
                if _PRUNE.search(e.name):  # sd-scripts never logs there; they can be big
                    continue
                _walk(root, e.path, found, problems, depth + 1, seen)
            elif EVENT_FILE_PREFIX in e.name and e.is_file():
                real = os.path.realpath(e.path)
                if real not in found:
                    found[real] = (run_key(root, e.path), file_time(e.name), e.path)
        except OSError as exc:
            problems.append(f"cannot read {e.path}: {exc.strerror or exc}")

def run_key(root: str, path: str) -> tuple[str, str]:
    """(timestamp, run dir) from the ``<prefix><YYYYmmddHHMMSS>`` directory above the file."""
    rel = os.path.relpath(os.path.dirname(path), root)
    parts = [] if rel == "." else rel.split(os.sep)
    for i, part in enumerate(parts):
        m = _RUN_DIR.search(part)
        if m:
            return m.group(1), os.path.join(root, *parts[: i + 1])
    # No timestamp dir: use the file's own time (10-digit unix time in its name).
    t = file_time(path)
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(t)) if t else "0" * 14
    return stamp, os.path.dirname(path)


def file_time(path: str) -> float:
    m = _FILE_TIME.search(os.path.basename(path))
    return float(m.group(1)) if m else 0.0
