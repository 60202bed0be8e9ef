"""`sdxl-tui eval` as a user meets it (issue 15): what is certain to fail is refused before
anything is detached (exit 2, the reason, nothing written), the base model's error names the
real knobs, "queued" only when something else runs, an attempt that never started leaves no
eval_* folder, and the final checkpoint belongs in epoch ranges."""

from __future__ import annotations

import json
import os
import shlex
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdxl_tui.control.evaluate import eval_record, parse_selection
from tests.helpers.proctools import end_recorded_evaluations, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAKE_EVAL = str(ROOT / "tests" / "helpers" / "fake_eval.py")


def write_lora(path: Path, metadata: dict[str, str]) -> Path:
    size = 16
    header = {"__metadata__": metadata, "lora_unet_x.lora_up.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, size]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(size))
    return path


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    for key in [k for k in os.environ if k.startswith("SDXL_TUI_")]:
        monkeypatch.delenv(key)
    run = tmp_path / "sdxl_v1"
    run.mkdir()
    for e in (1, 2):
        write_lora(run / f"luca_sdxl_v1-{e:06d}.safetensors", {"ss_epoch": str(e)})
    write_lora(run / "luca_sdxl_v1.safetensors", {"ss_epoch": "3"})  # the final file
    try:
        yield run
    finally:
        end_recorded_evaluations(run)


def sdxl(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "sdxl_tui", *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, env=env)


def nothing_started(run: Path) -> None:
    assert not list(run.glob("eval_*"))
    assert not (run / ".sdxl-tui" / "evals").exists() or not list((run / ".sdxl-tui" / "evals").glob("*.json"))


def test_the_final_checkpoint_is_in_epoch_ranges(run: Path) -> None:
    names = [Path(p).name for p in parse_selection(run, "1-3")]
    assert names == ["luca_sdxl_v1-000001.safetensors", "luca_sdxl_v1-000002.safetensors", "luca_sdxl_v1.safetensors"]
    assert [Path(p).name for p in parse_selection(run, "3-5")] == ["luca_sdxl_v1.safetensors"]


def test_no_base_model_names_every_knob(run: Path) -> None:
    result = sdxl("eval", str(run), "2", "--builtin", cwd=run.parent)
    assert result.returncode == 2, result.stderr
    for knob in ("eval.base_model", "SDXL_TUI_EVAL_BASE_MODEL", "--base-model"):
        assert knob in result.stderr
    nothing_started(run)


def test_a_missing_base_model_or_command_is_refused_before_detaching(run: Path) -> None:
    result = sdxl("eval", str(run), "2", "--builtin", "--base-model", str(run / "nope.safetensors"), cwd=run.parent)
    assert result.returncode == 2 and "nothing was started" in result.stderr, result.stderr
    assert "not found" in result.stderr or "eval extra" in result.stderr
    result = sdxl("eval", str(run), "2", "--command", "no-such-evaluator-xyz {checkpoint}", cwd=run.parent)
    assert result.returncode == 2 and "not on PATH" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    nothing_started(run)


def test_it_says_starting_when_nothing_else_runs(run: Path) -> None:
    command = shlex.join([sys.executable, FAKE_EVAL, "--checkpoint", "{checkpoint}", "--output-dir", "{output_dir}",
                          "--num-samples", "1", "--base-model", "/b", "--device", "cpu", "--resolution", "32"])
    result = sdxl("eval", str(run), "2", "--command", command, cwd=run.parent)
    assert result.returncode == 0, result.stderr
    assert "queued" not in result.stdout and ("starting" in result.stdout or "running" in result.stdout), result.stdout
    wait_until(lambda: (r := eval_record(run, "luca_sdxl_v1-000002")) is not None and not r.active, timeout=60)


def test_an_attempt_that_never_started_leaves_no_folder(run: Path) -> None:
    broken = run.parent / "broken-eval"
    broken.write_text("#!/no/such/interpreter\n")
    broken.chmod(0o755)
    result = sdxl("eval", str(run), "1", "--command", f"{broken} {{checkpoint}} {{output_dir}}", "--wait",
                  cwd=run.parent)
    assert result.returncode != 0
    rec = eval_record(run, "luca_sdxl_v1-000001")
    assert rec is not None and rec.status == "failed" and "cannot start" in (rec.note or ""), rec
    assert not (run / "eval_epoch1").exists()
