"""End to end: the morning report opened by a real browser (Debian's headless Chromium).

Why a browser: a parser can say the HTML is well formed; only a browser says it renders, that
the inline charts decode and paint, and that nothing is fetched. Chromium runs with networking
features off, from a copy of the report in a folder of its own (as after ``scp``). Every
process it starts is ended by PID.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageStat

from sdxl_tui.report.charts import LIGHT
from sdxl_tui.report.gather import collect
from sdxl_tui.report.html import render_html
from tests.helpers.report_runs import add_evaluation, simulate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,2000"]


def _end_tree(proc: subprocess.Popen[bytes]) -> None:
    """End Chromium and every process below it, each by its PID."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in reversed(family):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def _chromium(*args: str, profile: Path, timeout: float = 90.0) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            _end_tree(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _near(rgb: tuple[int, ...], target: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, target))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = simulate(tmp_path / "luca_sdxl_v1")
    add_evaluation(run, 2)
    laptop = tmp_path / "laptop"  # the copy the user opens: nothing beside it
    laptop.mkdir()
    page = laptop / "luca_sdxl_v1-report.html"
    page.write_text(render_html(collect(run, gpu=False, procs=False)), encoding="utf-8")
    shot = tmp_path / "report.png"

    done = _chromium(f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile-shot")
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    text = dom.stdout.decode("utf-8", errors="replace")

    assert "<title>luca_sdxl_v1: finished - sdxl-tui report</title>" in text
    assert "luca_sdxl_v1-000002.safetensors" in text and "How the night went" in text
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 20, f"screenshot looks blank (stddev {stat.stddev[0]:.1f})"
    # the inline loss chart was decoded and painted: its curve colour is on the screen
    small = image.resize((600, 1000))
    raw = small.tobytes()
    curve = sum(1 for i in range(0, len(raw), 3) if _near(tuple(raw[i:i + 3]), LIGHT.palette[0]))
    assert curve > 100, f"{curve} pixels of the loss curve's colour"
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes, {image.size[0]}x{image.size[1]})")
