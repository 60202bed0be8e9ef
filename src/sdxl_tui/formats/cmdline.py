"""The anatomy of a trainer command line, and the trainer's options by dest.

Why one home: the process scan (which process is the trainer, where does it write), the
kill path (is this still the process we started), the supervisor and the run reader (what
was the trainer told) all read the same command lines, and each used to parse them its own
way. The rules, all from how the processes are started:

* The program: an sd-scripts network trainer (``sdxl_train_network.py``, ``train_network.py``,
  any ``*train*network*.py``) or our simulator (``-m sdxl_tui simulate``, ``sdxl-tui
  simulate``). Before it: an interpreter with its options (the trainer itself), or a
  launcher chain (``conda run … python``, ``accelerate launch``, a shell running ``-c``)
  that repeats the trainer's arguments.
* The options: argparse's rules (``--opt V``, ``--opt=V``, unambiguous prefixes, the last
  occurrence wins), with dest names from the sd-scripts option table; ``--config_file`` is
  a TOML whose keys are dest names (``library/train_util.py:read_config_from_file`` flattens
  its tables, appends ``.toml`` when missing, and lets the command line win).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.optiontable import dest_of, load_packaged_table

__all__ = [
    "SUPERVISOR_MODULE",
    "OptionValues",
    "cmdline_matches",
    "config_file_options",
    "interpreter_from_prefix",
    "is_direct",
    "is_script_shell",
    "is_supervisor",
    "mentions_trainer",
    "option_value",
    "options_from_argv",
    "options_from_mapping",
    "python_command_from_prefix",
    "runs_simulator",
    "script_args",
    "script_name",
    "script_span",
    "split_command",
    "trainer_output_dir",
]

#: Options by dest: ``True`` for a flag, the values as strings otherwise.
OptionValues = Mapping[str, "bool | tuple[str, ...]"]

#: Module name of the supervisor that sdxl-tui starts the trainer under.
SUPERVISOR_MODULE = "sdxl_tui.control.supervisor"

_TRAINER_SCRIPT = re.compile(r"(?:^|[/\\])[\w.\-]*train[\w.\-]*network[\w.\-]*\.py$")
_MENTION = re.compile(r"[\w.\-]*train[\w.\-]*network[\w.\-]*\.py\b|sdxl[_-]tui simulate")
_INTERPRETER = re.compile(r"(?:python|pypy)[\d.]*[a-z]?(?:\.exe)?$")
_PLAIN_PYTHON = re.compile(r"python[\d.]*(\.exe)?$")
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
#: Interpreter options that take a separate value (``python -X dev script.py``).
_OPTS_WITH_VALUE = frozenset({"-X", "-W", "-Q"})


# --------------------------------------------------------------------------- the program


def script_span(cmdline: Sequence[str]) -> tuple[int, int] | None:
    """Where the trainer program sits in ``cmdline``: (first token of the program, first
    argument after it), or None when the command line runs no known trainer."""
    n = len(cmdline)
    for i, tok in enumerate(cmdline):
        if _TRAINER_SCRIPT.search(tok):
            return i, i + 1
        if tok == "-m" and i + 2 < n and cmdline[i + 1] == "sdxl_tui" and cmdline[i + 2] == "simulate":
            return i, i + 3
        if _simulate_at(cmdline, i + 1):
            return i, i + 2
    return None


def _simulate_at(tokens: Sequence[str], i: int) -> bool:
    """``tokens[i]`` is the ``simulate`` of ``sdxl-tui simulate`` / ``python -m sdxl_tui simulate``."""
    if not 0 < i < len(tokens) or tokens[i] != "simulate":
        return False
    return os.path.basename(tokens[i - 1]) in ("sdxl-tui", "sdxl_tui")


def runs_simulator(tokens: Sequence[str]) -> bool:
    """The tokens run sdxl-tui's simulated trainer (``sdxl-tui simulate``, ``python -m sdxl_tui simulate``)."""
    return any(_simulate_at(tokens, i) for i in range(1, len(tokens)))


#: shell tokens that end a command pasted from a terminal (``> log 2>&1 &``)
_SHELL_TAIL = frozenset({">", ">>", "2>&1", "&", "1>", "2>", "&>", "|"})


def split_command(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(prefix, script, trainer options) of a raw command line.

    The script is the first ``*.py`` token (any script: a checker names the unknown ones);
    shell leftovers (``> log 2>&1 &``) are dropped. With no script the whole list is taken as
    trainer options.
    """
    tokens: list[str] = []
    for tok in argv:
        if tok in _SHELL_TAIL or tok.startswith((">", "2>", "1>")):
            break
        tokens.append(tok)
    for i, tok in enumerate(tokens):
        if tok.endswith(".py") and not tok.startswith("-"):
            return tokens[:i], tok, tokens[i + 1 :]
        # sdxl-tui's simulated trainer stands where the script would: `python -m sdxl_tui
        # simulate ...` or `sdxl-tui simulate ...`; everything before it is the prefix.
        if _simulate_at(tokens, i):
            return tokens[: i + 1], None, tokens[i + 1 :]
    return [], None, tokens



def script_args(argv: Sequence[str]) -> Sequence[str]:
    """The trainer's own arguments: after the program, else from the first ``--option``."""
    span = script_span(argv)
    if span is not None:
        return argv[span[1]:]
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            return argv[i:]
    return ()


def script_name(argv: Sequence[str]) -> str | None:
    """Base name of the Python script a command line runs (``sdxl_train_network.py``)."""
    span = script_span(argv)
    if span is not None and argv[span[0]].endswith(".py"):
        return os.path.basename(argv[span[0]])
    return next((os.path.basename(a) for a in argv if a.endswith(".py")), None)


def mentions_trainer(cmdline: Sequence[str]) -> bool:
    """True when a command line runs a trainer or carries one inside a string
    (``sh -c "conda run … train_network.py …"``): the launcher chain test."""
    return script_span(cmdline) is not None or any(_MENTION.search(tok) for tok in cmdline)


def is_direct(cmdline: Sequence[str], start: int) -> bool:
    """True when the tokens before the trainer program are only an interpreter and its
    options, i.e. this process *is* the trainer, not a launcher that mentions it."""
    if start == 0:
        return True
    if not _INTERPRETER.search(os.path.basename(cmdline[0])):
        return False
    i = 1
    while i < start:
        tok = cmdline[i]
        if tok in _OPTS_WITH_VALUE:
            i += 2
            continue
        if not tok.startswith("-") or tok in ("-m", "-c", "-"):
            return False
        i += 1
    return i == start


def is_supervisor(cmdline: Sequence[str]) -> bool:
    """The supervisor process sdxl-tui starts a run under (``control/supervisor.py``)."""
    return SUPERVISOR_MODULE in cmdline


def is_script_shell(cmdline: Sequence[str]) -> bool:
    """A shell running ``-c CMD`` or a script file (``conda run`` writes one), not an
    interactive shell."""
    if not cmdline or os.path.basename(cmdline[0]).lstrip("-") not in _SHELLS:
        return False
    return len(cmdline) > 1 and ("-c" in cmdline[1:] or any(not t.startswith("-") for t in cmdline[1:]))


def cmdline_matches(cmdline: Sequence[str], argv: Sequence[str]) -> bool:
    """True when a live command line is what running ``argv`` produces.

    The kernel shows ``conda run …`` as ``/opt/conda/bin/python /opt/conda/bin/conda run …``
    (shebang), so the rule is: ``argv[1:]`` is the tail of ``cmdline`` and the program name
    ``argv[0]`` is the token just before that tail.
    """
    if not argv or len(cmdline) < len(argv):
        return False
    tail = len(argv) - 1
    if tail and list(cmdline[-tail:]) != list(argv[1:]):
        return False
    prog = cmdline[len(cmdline) - len(argv)]
    want = os.path.basename(argv[0])
    got = os.path.basename(prog)
    return got == want or got.startswith(want) or want.startswith(got)


def interpreter_from_prefix(prefix: Sequence[str]) -> str | None:
    """The interpreter of a launch prefix when it is a plain ``python`` (no wrapper)."""
    if len(prefix) == 1 and _PLAIN_PYTHON.search(os.path.basename(prefix[0])):
        return prefix[0]
    return None


def python_command_from_prefix(prefix: Sequence[str]) -> list[str] | None:
    """The command that runs Python in the trainer's environment, from a launch prefix.

    A plain interpreter, or a wrapper that ends in one (``conda run -n env python``, ``nohup
    python``): the whole prefix. ``accelerate launch`` and anything else: None.
    """
    parts = [p for p in prefix if p not in ("nohup", "exec")]
    if parts and _PLAIN_PYTHON.search(os.path.basename(parts[-1])):
        return parts
    return None


# --------------------------------------------------------------------------- options


def option_value(args: Sequence[str], option: str) -> str | None:
    """The last value of ``option`` in the trainer's ``args`` the way argparse reads it:
    ``--opt V``, ``--opt=V`` or an unambiguous prefix; nothing after ``--``."""
    want = load_packaged_table().by_string(option)
    dest = want.dest if want is not None else option.lstrip("-")
    found: str | None = None
    for i, tok in enumerate(args):
        if tok == "--":
            break
        if not tok.startswith("--"):
            continue
        key, eq, val = tok.partition("=")
        if key != option and (not option.startswith(key) or dest_of(key) != dest):
            continue
        if eq:
            found = val
        elif i + 1 < len(args):
            found = args[i + 1]
    return found


def options_from_mapping(args: Mapping[str, Any]) -> dict[str, bool | tuple[str, ...]]:
    """Options from a launch config's ``[args]`` table or a ``--config_file`` TOML (its
    tables flattened: they are only grouping). ``false`` and empty values are left out."""
    out: dict[str, bool | tuple[str, ...]] = {}
    for k, v in args.items():
        if isinstance(v, Mapping):
            out.update(options_from_mapping(v))
        elif v is True:
            out[k] = True
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            out[k] = tuple(str(x) for x in v)
        else:
            out[k] = (str(v),)
    return out


@lru_cache(maxsize=64)
def _config_file_options(path: str, _sig: tuple[int, int]) -> OptionValues:
    try:
        return options_from_mapping(toml.load(path))
    except (OSError, toml.TOMLDecodeError):
        return {}


def config_file_options(path: str, *, cwd: str | None = None) -> OptionValues:
    """The options of an sd-scripts ``--config_file`` (``.toml`` appended when missing, a
    relative path taken against ``cwd``); {} when unreadable. Cached by mtime and size."""
    if not path.endswith(".toml"):
        path += ".toml"
    if not os.path.isabs(path):
        if cwd is None:
            return {}
        path = os.path.join(cwd, path)
    try:
        st = os.stat(path)
    except OSError:
        return {}
    return _config_file_options(path, (st.st_mtime_ns, st.st_size))


def options_from_argv(argv: Sequence[str], *, cwd: str | None = None) -> dict[str, bool | tuple[str, ...]]:
    """The trainer's options by dest name from its command line (``--config_file`` merged in).

    Flags map to ``True``, options with values to a tuple of strings. As in sd-scripts, values
    on the command line win over the ``--config_file`` TOML.
    """
    out: dict[str, bool | tuple[str, ...]] = {}
    key: str | None = None
    values: list[str] = []
    for tok in script_args(argv):
        if tok.startswith("--") and len(tok) > 2:
            if key is not None:
                out[key] = tuple(values) if values else True
            name, eq, val = tok.partition("=")
            key, values = dest_of(name), ([val] if eq else [])
        elif key is not None:
            values.append(tok)
    if key is not None:
        out[key] = tuple(values) if values else True
    cfg = out.get("config_file")
    if isinstance(cfg, tuple) and cfg:
        out = {**config_file_options(cfg[0], cwd=cwd), **out}
    return out


def trainer_output_dir(cmdline: Sequence[str], cwd: str | None) -> str | None:
    """The absolute, resolved ``--output_dir`` a trainer command line writes to, or None.

    Relative paths are taken against ``cwd`` (the process's working directory); without a
    cwd a relative path cannot be resolved and None is returned.
    """
    span = script_span(cmdline)
    if span is None:
        return None
    args = cmdline[span[1]:]
    out = option_value(args, "--output_dir")
    if out is None:
        cfg = option_value(args, "--config_file")
        if cfg is not None:
            value = config_file_options(cfg, cwd=cwd).get("output_dir")
            out = value[0] if isinstance(value, tuple) and value else None
    if out is None:
        return None
    out = os.path.expanduser(out)
    if not os.path.isabs(out):
        if cwd is None:
            return None
        out = os.path.join(cwd, out)
    return os.path.realpath(out)
