"""The morning report on real simulated runs: valid, self-contained HTML that shows the run's
numbers, the Markdown twin, the command's options and exit statuses, and the GPU history."""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_tui.cli import main
from sdxl_tui.formats.gpulog import append_gpu_sample, gpu_history_path
from sdxl_tui.model import GpuSample, GpuStatus
from sdxl_tui.report.facts import loss_text
from sdxl_tui.report.gather import collect
from sdxl_tui.report.html import render_html
from sdxl_tui.report.markdown import render_markdown
from sdxl_tui.sources.rundir import read_run
from tests.helpers.html_check import check_html, external_references
from tests.helpers.report_runs import add_evaluation, simulate


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = simulate(tmp_path_factory.mktemp("report") / "luca_sdxl_v1")
    add_evaluation(run, 2)
    return run


@pytest.fixture(scope="module")
def finished_html(finished: Path) -> str:
    return render_html(collect(finished, gpu=False, procs=False))


def test_html_is_valid_and_self_contained(finished_html: str) -> None:
    parser = check_html(finished_html)
    assert external_references(finished_html, parser) == []
    assert parser.title == "luca_sdxl_v1: finished - sdxl-tui report"
    assert all(u.startswith("data:image/") for u in parser.urls if u), parser.urls[:3]
    assert parser.counts["picture"] == 2  # loss and learning rate, each in a light and a dark variant
    assert parser.counts["source"] == 2


def test_html_shows_the_numbers_of_the_run(finished: Path, finished_html: str) -> None:
    snap = read_run(finished, gpu=False, procs=False)
    text = re.sub(r"<[^>]+>", " ", finished_html)
    assert "finished" in text and "model saved." in text
    assert "step 40/40 (100%), epoch 4/4" in text
    final = snap.series["loss/average"].last
    assert final is not None and final.step == 40
    assert f"{loss_text(final.value)} at step 40" in text
    names = [c.name for c in snap.checkpoints]
    assert names == ["luca_sdxl_v1-000002.safetensors", "luca_sdxl_v1.safetensors"]
    for c in snap.checkpoints:
        row = re.search(rf"<tr[^>]*><td>{re.escape(c.name)}</td>(.*?)</tr>", finished_html)
        assert row is not None, c.name
        assert f"<td>{c.step}</td>" in row.group(1) and f"<td>{loss_text(c.loss_at_save)}</td>" in row.group(1)
    assert "done" in re.search(r"<td>luca_sdxl_v1-000002.safetensors</td>.*?</tr>", finished_html).group(0)  # type: ignore[union-attr]
    for kind in ("loading", "training", "checkpoint", "sampling", "finished"):
        assert f"<td>{kind}</td>" in finished_html, kind
    assert "training started at step 0" in text and "saved luca_sdxl_v1.safetensors" in text


def test_html_inlines_the_latest_samples_and_the_contact_sheet(finished: Path, finished_html: str) -> None:
    uris = re.findall(r'<img src="(data:image/jpeg;base64,[^"]+)" alt="([^"]*)"', finished_html)
    captions = [alt for _, alt in uris]
    assert captions[:2] == ["prompt 0", "prompt 1"]  # the newest sampling: epoch 4, two prompts
    assert any(c.startswith("eval_epoch2") for c in captions)
    first = Image.open(io.BytesIO(base64.b64decode(uris[0][0].split(",", 1)[1])))
    assert max(first.size) <= 320


def test_markdown_has_the_same_numbers(finished: Path) -> None:
    data = collect(finished, gpu=False, procs=False)
    md = render_markdown(data)
    assert md.startswith("# luca_sdxl_v1: finished\n")
    assert "- **progress**: step 40/40 (100%), epoch 4/4" in md
    for c in data.snapshot.checkpoints:
        assert re.search(rf"\| \*?\*?{re.escape(c.name)}.*\| {c.step} \| {re.escape(loss_text(c.loss_at_save))} \|", md)
    assert re.search(r"^`[▁▂▃▄▅▆▇█]{10,}`$", md, re.MULTILINE)  # the loss sparkline
    assert "<" not in md.replace("<=", "")  # no HTML


def test_failed_run_reports_the_reason_and_the_fix(tmp_path: Path) -> None:
    run = simulate(tmp_path / "oom", "--sim-fault", "oom", "--sim-fault-step", "25")
    html = render_html(collect(run, gpu=False, procs=False))
    check_html(html)
    assert '<span class="badge failed">failed</span>' in html
    assert "CUDA out of memory at step" in html
    assert "<strong>Fix:</strong>" in html and "gradient_checkpointing" in html
    assert "<td>error</td>" in html  # the timeline shows when it broke


def test_gpu_history_is_summarised_within_the_run(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for entry in os.scandir(finished):  # a copy that may get a history file
        (run / entry.name).symlink_to(entry.path)
    data = collect(run, gpu=False, procs=False)
    assert data.timeline.start is not None and data.timeline.end is not None
    path = gpu_history_path(run)
    gib = 1 << 30

    def status(used: int, util: int, temp: int, throttle: tuple[str, ...] = ()) -> GpuStatus:
        return GpuStatus(available=True, gpus=(GpuSample(
            0, "NVIDIA GeForce RTX 4090", memory_used=used, memory_total=24 * gib, utilization=util,
            temperature=temp, power_draw=400.0, power_limit=450.0, throttle_reasons=throttle,
            process_memory={4242: used - gib}),))

    append_gpu_sample(path, status(23 * gib, 10, 90), at=data.timeline.start - 3600)  # another run
    append_gpu_sample(path, status(18 * gib, 96, 70), at=data.timeline.start, trainer_pids=[4242])
    append_gpu_sample(path, status(20 * gib, 98, 84, ("sw_thermal_slowdown",)), at=data.timeline.end,
                      trainer_pids=[4242])
    md = render_markdown(collect(run, gpu=False, procs=False))
    assert "| 0: NVIDIA GeForce RTX 4090 | 20.0 GiB / 24.0 GiB (83%) | 19.0 GiB | 97% | 77 C mean, 84 C max |" in md
    assert "50% of samples: sw_thermal_slowdown (1)" in md
    assert "2 samples" in md
    assert "- **peak VRAM**: 20.0 GiB" in md


def test_report_without_gpu_history_says_so(finished_html: str) -> None:
    assert "GPU history not recorded" in finished_html


def test_report_command_writes_the_default_file_and_stdout(finished: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    for entry in os.scandir(finished):
        (run / entry.name).symlink_to(entry.path)
    assert main(["report", str(run), "--no-gpu", "--no-procs"]) == 0
    out = capsys.readouterr().out
    target = run / ".sdxl-tui" / "report.html"
    assert out.startswith(f"report written: {target} (") and target.is_file()
    check_html(target.read_text())
    assert main(["report", str(run), "--no-gpu", "--no-procs", "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# luca_sdxl_v1: finished")
    md_file = tmp_path / "night.md"
    assert main(["report", str(run), "--no-gpu", "--no-procs", "-o", str(md_file)]) == 0  # md from the suffix
    assert md_file.read_text().startswith("# luca_sdxl_v1")
    assert not list((run / ".sdxl-tui").glob(".*.tmp"))


def test_report_command_wrong_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"sdxl-tui report: no such directory: {tmp_path / 'missing'}"
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    assert main(["report", str(afile)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_report_unwritable_output_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", str(run), "--no-gpu", "--no-procs", "-o", str(blocker / "r.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sdxl-tui report: cannot write {blocker / 'r.html'}:")


def test_empty_directory_report_is_still_valid(tmp_path: Path) -> None:
    html = render_html(collect(tmp_path, gpu=False, procs=False))
    check_html(html)
    assert "waiting" in html and "No checkpoints yet." in html


def test_help_documents_formats_and_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    for needle in ("--format {html,md}", "-o FILE", "DIR/.sdxl-tui/report.html", "report.on_end", "exit status:"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "report" in capsys.readouterr().out


def test_settings_report_on_end_is_documented() -> None:
    from sdxl_tui.config import env_var, load_settings, settings_help

    assert "report.on_end" in settings_help()
    assert env_var("report.on_end") == "SDXL_TUI_REPORT_ON_END"
    assert load_settings(environ={"SDXL_TUI_REPORT_ON_END": "1", "XDG_CONFIG_HOME": "/nonexistent"}).report.on_end is True
    assert load_settings(environ={"XDG_CONFIG_HOME": "/nonexistent"}).report.on_end is False


@pytest.fixture
def utc() -> Iterator[None]:
    """The stored real run was logged on a machine in UTC: read its record times there too."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_report_of_the_real_sd_scripts_run(real_run: Path, utc: None) -> None:
    data = collect(real_run, gpu=False, procs=False)
    md = render_markdown(data)
    assert "- **wall time**: 3m31s (21:21:01 to 21:24:32)" in md
    assert "| loading | 29s |  |" in md and "| caching | 26s |  |" in md
    assert "- 21:21:55 training: training started at step 0" in md
    # the loss logged at each save (step 6: 1.049, before the save; 1.052 came after it)
    assert "| **tiny_lora-000002.safetensors** (best) | epoch | 2 | 6 | 1.049 |" in md
    assert "| tiny_lora-000001.safetensors | epoch | 1 | 3 | 1.095 |" in md
    assert "| tiny_lora.safetensors | final | 3 | 9 | 1.054 |" in md
    html = render_html(data)
    parser = check_html(html)
    assert external_references(html, parser) == []


def test_command_from_the_launch_config_is_labelled_as_such(finished: Path, tmp_path: Path) -> None:
    from sdxl_tui.formats.launch_config import LaunchConfig, write_launch_config

    run = tmp_path / "run"
    run.mkdir()
    for entry in os.scandir(finished):
        (run / entry.name).symlink_to(entry.path)
    write_launch_config(LaunchConfig(prefix=("accelerate", "launch"), sd_scripts_dir="/opt/sd scripts",
                                     script="sdxl_train_network.py", output_dir=str(run),
                                     args={"output_name": "luca v1"}, env={"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
                        run / "sdxl-tui.toml")
    md = render_markdown(collect(run, gpu=False, procs=False))
    assert f"From the launch config {run / 'sdxl-tui.toml'} (what `sdxl-tui start` would run; not necessarily what ran):" in md
    assert ("cd '/opt/sd scripts' && PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True accelerate launch "
            "sdxl_train_network.py --output_name 'luca v1'") in md
