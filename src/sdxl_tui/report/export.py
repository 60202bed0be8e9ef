"""Every TensorBoard scalar of several runs as one table, read with tbparse.

Why tbparse: it is the package the user named for "my runs as a DataFrame", and the export
must hold exactly what it reads (the test compares row counts on the same files). Which
event files belong to which run is decided by run discovery first, so a folder of runs is
never read as one: each run contributes its own ``logs/`` (or, without one, its own folder),
each trial of an optimisation folder its own.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "ExportError", "Source", "collect", "event_root", "sources_of", "write_table"]

COLUMNS = ("run", "trial", "tag", "step", "wall_time", "value")


class ExportError(ValueError):
    """A path holds no run, or the output cannot be written; the message says which."""


@dataclass(frozen=True, slots=True)
class Source:
    """One run's (or trial's) event folder and the names it gets in the table."""

    run: str
    trial: str | None
    logdir: str


def event_root(run_dir: str) -> str:
    """The folder whose event files are this run's: ``RUN/logs`` when present, else RUN."""
    logs = os.path.join(run_dir, "logs")
    return logs if os.path.isdir(logs) else run_dir


def _trial_sources(folder: str, run: str) -> list[Source]:
    out = []
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name.lower().startswith("trial"))
    except OSError:
        return []
    for name in names:
        out.append(Source(run, name, event_root(os.path.join(folder, name))))
    return out


def sources_of(paths: Sequence[str]) -> list[Source]:
    """The runs (and trials) under each path, named by their path below it.

    Raises:
        ExportError: a path does not exist or holds no run.
    """
    from sdxl_tui.sources.discovery import NO_RUN_MESSAGE, discover

    out: list[Source] = []
    for given in paths:
        path = os.path.abspath(os.path.expanduser(given))
        if not os.path.isdir(path):
            raise ExportError(f"no such directory: {given}")
        found = discover(path)
        if not found.all:
            raise ExportError(f"{given}: {NO_RUN_MESSAGE}")
        for r in found.all:
            rel = os.path.relpath(r.path, path)
            name = r.name if rel == "." else rel
            if r.kind == "trials":
                out.extend(_trial_sources(r.path, name))
            else:
                out.append(Source(name, None, event_root(r.path)))
    return out


def collect(sources: Sequence[Source]) -> Any:
    """One pandas DataFrame with :data:`COLUMNS` (tbparse's scalars of every source)."""
    import pandas as pd
    from tbparse import SummaryReader

    frames = []
    for s in sources:
        with warnings.catch_warnings():  # tbparse's own pandas deprecations are not the user's
            warnings.simplefilter("ignore")
            df = SummaryReader(s.logdir, extra_columns={"wall_time"}).scalars
        if df is None or df.empty:
            continue
        df = df.assign(run=s.run, trial=s.trial)
        frames.append(df[list(COLUMNS)])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    if table["trial"].isna().all():
        table = table.drop(columns=["trial"])
    return table


def write_table(table: Any, out: str) -> None:
    """Write ``.csv`` or ``.parquet`` (whole: a temporary file, then renamed).

    Raises:
        ExportError: another suffix, parquet without pyarrow, or the file cannot be written.
    """
    low = out.lower()
    if not low.endswith((".csv", ".parquet")):
        raise ExportError(f"{out}: the output must end in .csv or .parquet")
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        if low.endswith(".csv"):
            table.to_csv(tmp, index=False)
        else:
            try:
                table.to_parquet(tmp, index=False)
            except ImportError as exc:
                raise ExportError(f"writing parquet needs pyarrow (pip install pyarrow): {exc}") from exc
        os.replace(tmp, out)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
