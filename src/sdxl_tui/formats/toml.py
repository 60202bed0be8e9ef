"""Reading and writing TOML: sd-scripts' ``--config_file`` and dataset files, our launch configs.

Why here: Python reads TOML (``tomllib``, or ``tomli`` before 3.11) but cannot write it, and
the plan writer and the launch-config writer each had their own writer with different string
escaping. This is the one writer: scalars, arrays, inline tables, tables and arrays of tables,
basic strings escaped as the TOML 1.0 spec requires (control characters and DEL as ``\\uXXXX``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TOMLDecodeError", "dumps", "key", "load", "loads", "string", "value"]


class TOMLDecodeError(ValueError):
    """Not valid TOML (the parser's own error, whose message it keeps).

    Our own class so that the parser (``tomllib``, with ``datetime`` and ``string``) is
    imported only when a TOML file is actually read: ``sdxl-tui status`` on a run without
    one never pays for it.
    """


def _parse(data: bytes | str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        parsed: dict[str, Any] = tomllib.loads(data if isinstance(data, str) else data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TOMLDecodeError(str(exc)) from exc
    return parsed


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        OSError: the file cannot be read.
        TOMLDecodeError: it is not valid TOML (also for bytes that are not UTF-8).
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return _parse(raw)
    except UnicodeDecodeError as exc:
        raise TOMLDecodeError(f"not UTF-8: {exc}") from None


def loads(text: str) -> dict[str, Any]:
    """Parse TOML text (raises ``TOMLDecodeError``)."""
    return _parse(text)


def string(text: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def key(name: str) -> str:
    """A key, bare when TOML allows it, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else string(name)


def value(v: object) -> str:
    """One TOML value (inline: arrays and tables on one line).

    Raises:
        TypeError: ``v`` has no TOML form (None, bytes, objects).
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)  # 'inf' and 'nan' are TOML too
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return string(v)
    if isinstance(v, os.PathLike):
        return string(os.fspath(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(str(k))} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def dumps(data: Mapping[str, Any], *, header: str = "", inline: Sequence[str] = ()) -> str:
    """A TOML document: top-level scalars first, then ``[tables]`` and ``[[arrays]]``.

    Args:
        data: the document; nested mappings become tables, lists of mappings arrays of tables.
        header: comment lines at the top (one ``#`` line per line of text).
        inline: dotted paths of mappings to write as inline tables (``env = { A = "1" }``).
    """
    lines: list[str] = [f"# {h}".rstrip() for h in header.splitlines()]
    if lines:
        lines.append("")

    def emit(mapping: Mapping[str, Any], path: list[str], array: bool) -> None:
        def is_table(k: str, v: object) -> bool:
            return isinstance(v, Mapping) and ".".join([*path, k]) not in inline

        scalars = [(k, v) for k, v in mapping.items() if not is_table(k, v) and not _is_table_array(v)]
        if path:
            if lines and lines[-1] != "":
                lines.append("")
            name = ".".join(key(p) for p in path)
            lines.append(f"[[{name}]]" if array else f"[{name}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars)
        for k, v in mapping.items():
            if is_table(k, v):
                emit(v, [*path, k], False)
        for k, v in mapping.items():
            if _is_table_array(v):
                for item in v:
                    emit(item, [*path, k], True)

    emit(data, [], False)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
