"""Which ancestors of a trainer belong to its run (pure rules over command lines).

Why: people rarely start the trainer directly. They run ``bash train.sh`` (whose command line
does not name the trainer), a retry loop ("if it exits non-zero, sleep 2 and start it
again"), ``nohup … &``, ``conda run``, ``accelerate launch`` or ``torchrun``, or
``sdxl-tui start`` (our supervisor). Signalling the trainer alone leaves such a parent
alive, and a retry loop starts the trainer again a few seconds later, over the checkpoint
the user meant to keep. So the run is the trainer *and* the chain of parents that exist only
to run it; the walk up stops at the first process that is not such a parent: the user's
interactive shell, tmux/screen, sshd, init, a test runner, anything unknown.

Rules, for each parent going up (:func:`ancestor_role`):

* ``supervisor``: ``python -m sdxl_tui.control.supervisor`` (sdxl-tui's own; also matched
  by (pid, create time) against the run record by the caller).
* ``launcher``: its command line names the trainer (``accelerate launch … train_network.py``,
  ``conda run … python …``, ``torchrun …``, ``sh -c "python sdxl_train_network.py …"``), or
  it is a known launcher program (``accelerate``, ``torchrun``, ``python -m
  accelerate.commands.launch`` / ``torch.distributed.run``, ``conda``, ``timeout``,
  ``stdbuf``, ``env``, ``nice``…). ``nohup`` and ``setsid`` *exec* their command, so they
  are never a separate process: a ``nohup bash train.sh &`` shows as ``bash train.sh``.
* ``wrapper``: a non-interactive shell (a shell running a script file or ``-c``).

Processes are named by (pid, create time) by every caller: a PID alone may be reused.
Nothing here reads the process table; ``sources/procs.py`` does and calls these rules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sdxl_tui.formats.cmdline import is_script_shell, is_supervisor, mentions_trainer

__all__ = ["ROLES_ABOVE", "ancestor_role", "is_boundary"]

#: Roles of the processes above a trainer that belong to its run, outermost kinds first.
ROLES_ABOVE = ("supervisor", "wrapper", "launcher")

#: Programs that only run the command given to them (they stay a parent process).
_LAUNCHER_PROGRAMS = frozenset({
    "accelerate", "torchrun", "conda", "mamba", "micromamba", "timeout", "stdbuf", "env", "nice",
    "ionice", "taskset", "numactl", "chrt", "time", "flock", "uv", "poetry", "pipenv", "pixi",
})
#: ``python -m X`` launchers: accelerate's (``accelerate/commands/launch.py``) and torchrun's.
_LAUNCHER_MODULES = frozenset({
    "accelerate.commands.launch", "accelerate.commands.accelerate_cli", "torch.distributed.run",
    "torch.distributed.launch",
})
#: Where the walk always stops: the user's session, not the run.
_BOUNDARY_PROGRAMS = frozenset({
    "tmux", "screen", "sshd", "systemd", "init", "login", "su", "sudo", "sshd-session", "mosh-server",
    "tini", "dumb-init", "containerd-shim", "code", "node",
})


def _prog(cmdline: Sequence[str]) -> str:
    first = cmdline[0] if cmdline else ""
    name = os.path.basename(first.split()[0] if first.split() else first).lstrip("-")
    return name.rstrip(":")


def is_boundary(cmdline: Sequence[str]) -> bool:
    """tmux, screen, sshd, init and friends: the session the run was started from."""
    prog = _prog(cmdline)
    return prog in _BOUNDARY_PROGRAMS or prog.startswith(("tmux", "screen", "sshd"))


def _python_module(cmdline: Sequence[str]) -> str | None:
    if "-m" in cmdline[:-1]:
        return cmdline[cmdline.index("-m") + 1]
    return None


def ancestor_role(cmdline: Sequence[str]) -> str | None:
    """The role of a trainer's ancestor in its run, or None when the walk stops here."""
    if not cmdline or is_boundary(cmdline):
        return None
    if is_supervisor(cmdline):
        return "supervisor"
    if is_script_shell(cmdline):
        return "wrapper"  # bash train.sh, a retry loop, sh -c "…", the script conda run writes
    if mentions_trainer(cmdline):
        return "launcher"
    prog = _prog(cmdline)
    if prog in _LAUNCHER_PROGRAMS:
        return "launcher"
    if prog.startswith("python") and _python_module(cmdline) in _LAUNCHER_MODULES:
        return "launcher"
    if any(os.path.basename(tok) in ("accelerate", "torchrun") for tok in cmdline[1:2]):
        return "launcher"  # /usr/bin/python3 /venv/bin/accelerate launch … (the shebang, seen by the kernel)
    return None
