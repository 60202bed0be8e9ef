"""Write a report file: the one function behind ``sdxl-tui report``, the dashboard key and the
end-of-run hook, so all three put the same file in the same place.

Why atomic: a chat hook or a browser may open the file while it is rewritten; a temporary
file renamed over the old one is either the old report or the new one, never half of one.
"""

from __future__ import annotations

import os

from sdxl_tui.config import Settings
from sdxl_tui.formats.statedir import state_dir

__all__ = ["default_output", "render", "write_report", "write_text_atomic"]

FORMATS = ("html", "md")


def default_output(run_dir: str | os.PathLike[str], fmt: str = "html") -> str:
    """``DIR/.sdxl-tui/report.html`` (or ``report.md``), beside sdxl-tui's other run files."""
    return str(state_dir(run_dir) / f"report.{fmt}")


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` via a temporary file and a rename; raises ``OSError``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render(run_dir: str | os.PathLike[str], fmt: str = "html", *, settings: Settings | None = None,
           log_path: str | None = None, logs_dir: str | None = None, gpu: bool = True,
           procs: bool = True, launch_file: str | None = None) -> str:
    """Read ``run_dir`` and return the report text in ``fmt`` ("html" or "md")."""
    from sdxl_tui.report.gather import collect

    data = collect(run_dir, settings=settings, log_path=log_path, logs_dir=logs_dir, gpu=gpu,
                   procs=procs, launch_file=launch_file)
    if fmt == "md":
        from sdxl_tui.report.markdown import render_markdown

        return render_markdown(data)
    from sdxl_tui.report.html import render_html

    return render_html(data)


def write_report(run_dir: str | os.PathLike[str], output: str | None = None, fmt: str = "html", *,
                 settings: Settings | None = None) -> str:
    """Render and write the report; returns the path written. Raises ``OSError``."""
    path = output or default_output(run_dir, fmt)
    write_text_atomic(path, render(run_dir, fmt, settings=settings))
    return path
