"""Ask the trainer's Python environment which modules it can import.

Why: ``--optimizer_type AdamW8bit`` without bitsandbytes, or ``--xformers`` without xformers,
fail only after the models are loaded and the latents cached. The environment that matters is
the trainer's (a conda env, a venv), not sdxl-tui's own, so we run its interpreter once with a
tiny ``find_spec`` script (with a timeout). When the environment cannot be inspected the
answer is "unknown", which checks report as a note, never as a false warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

_PROBE = (
    "import importlib.util, json, sys\n"
    "out = {}\n"
    "for m in sys.argv[1:]:\n"
    "    try:\n"
    "        out[m] = importlib.util.find_spec(m) is not None\n"
    "    except Exception:\n"
    "        out[m] = False\n"
    "print('SDXL_TUI_PROBE ' + json.dumps(out))\n"
)


class Environment(Protocol):
    """Something that knows whether modules import in the trainer's environment."""

    description: str
    error: str | None  # why the last inspection failed, if it did

    def has_modules(self, names: Iterable[str]) -> Mapping[str, bool | None]:
        """name -> True/False, or None when unknown."""
        ...


class KnownEnvironment:
    """An environment described by a fixed answer (tests, or a user's ``--assume-installed``)."""

    def __init__(self, modules: Mapping[str, bool], description: str = "given") -> None:
        self._modules = dict(modules)
        self.description = description
        self.error: str | None = None

    def has_modules(self, names: Iterable[str]) -> Mapping[str, bool | None]:
        return {n: self._modules.get(n) for n in names}


class UnknownEnvironment:
    """No way to inspect: everything is unknown."""

    def __init__(self, why: str = "the trainer's environment could not be inspected") -> None:
        self.description = why
        self.error: str | None = None

    def has_modules(self, names: Iterable[str]) -> Mapping[str, bool | None]:
        return {n: None for n in names}


class PythonEnvironment:
    """Runs ``<prefix> -c <probe> modules...`` once per set of names (cached)."""

    def __init__(self, prefix: Sequence[str], *, timeout: float = 60.0, cwd: str | None = None) -> None:
        self.prefix = list(prefix)
        self.timeout = timeout
        self.cwd = cwd
        self.description = " ".join(self.prefix)
        self._cache: dict[str, bool | None] = {}
        self.error: str | None = None

    def has_modules(self, names: Iterable[str]) -> Mapping[str, bool | None]:
        wanted = [n for n in names if n not in self._cache]
        if wanted and self.error is None:
            try:
                proc = subprocess.run(
                    [*self.prefix, "-c", _PROBE, *wanted],
                    capture_output=True,
                    check=False,
                    text=True,
                    errors="replace",
                    timeout=self.timeout,
                    cwd=self.cwd if self.cwd and os.path.isdir(self.cwd) else None,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.error = f"could not run {self.description}: {exc}"
            else:
                found = None
                for line in proc.stdout.splitlines():
                    if line.startswith("SDXL_TUI_PROBE "):
                        try:
                            found = json.loads(line[len("SDXL_TUI_PROBE "):])
                        except ValueError:
                            found = None
                if isinstance(found, dict):
                    for n in wanted:
                        self._cache[n] = bool(found.get(n)) if n in found else None
                else:
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    self.error = f"{self.description} exited {proc.returncode}: {tail}"
        return {n: self._cache.get(n) for n in names}


_PY = re.compile(r"^python[\d.]*(\.exe)?$")


def environment_for_prefix(prefix: Sequence[str], *, cwd: str | None = None, timeout: float = 60.0) -> Environment:
    """The environment a launch prefix runs in.

    ``python``/``/env/bin/python``, ``conda run ... python`` and ``nohup`` wrappers are run
    directly; ``accelerate launch`` is mapped to the ``python`` beside the ``accelerate``
    executable. Anything else is unknown.
    """
    parts = [p for p in prefix if p not in ("nohup", "exec")]
    if not parts:
        return UnknownEnvironment("no interpreter in the launch prefix")
    last = os.path.basename(parts[-1])
    if _PY.match(last):
        if "/" not in parts[-1] and len(parts) == 1 and shutil.which(parts[-1]) is None:
            return UnknownEnvironment(f"{parts[-1]} is not on PATH here")
        return PythonEnvironment(parts, cwd=cwd, timeout=timeout)
    if "accelerate" in (os.path.basename(p) for p in parts):
        acc = next(p for p in parts if os.path.basename(p) == "accelerate")
        exe = shutil.which(acc) if "/" not in acc else acc
        if exe:
            py = os.path.join(os.path.dirname(exe), "python")
            if os.path.exists(py):
                return PythonEnvironment([py], cwd=cwd, timeout=timeout)
        return UnknownEnvironment(f"cannot tell which Python `{' '.join(parts)}` uses")
    return UnknownEnvironment(f"cannot tell which Python `{' '.join(parts)}` uses")
