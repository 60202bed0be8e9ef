"""`sdxl-tui eval RUN CKPT --versus TRIAL --sd15-base B`: each side gets its own {base_model}
and {resolution}, both the same prompts file, and the grid puts them side by side (template
route, with the stand-in evaluator; the built-in route's SD1.5 side is tested in
test_evaluator_sd15.py)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from PIL import Image

from sdxl_tui.cli import main
from tests.helpers.fake_eval import colour_for
from tests.helpers.runs_folder import sim_run

FAKE = Path(__file__).resolve().parents[1] / "helpers" / "fake_eval.py"
TEMPLATE = (f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} --checkpoint {{checkpoint}} "
            "--base-model {base_model} --output-dir {output_dir} --num-samples 2 --resolution {resolution}")


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    run = sim_run(tmp_path / "luca" / "sdxl_v1", "luca_sdxl_v1")
    trial = tmp_path / "luca" / "optimization_overnight" / "trial_0025"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text('{"learning_rate": 0.0003}')
    (trial / "lora_trial_25.safetensors").write_bytes((run / "luca_sdxl_v1-000001.safetensors").read_bytes())
    return run, trial


def test_versus_renders_both_sides_and_a_grid(tmp_path: Path, capsys: object) -> None:
    run, trial = _folder(tmp_path)
    sd15_base, sdxl_base = tmp_path / "v1-5.safetensors", tmp_path / "sd_xl_base_1.0.safetensors"
    sd15_base.write_bytes(b"x")
    sdxl_base.write_bytes(b"x")
    rc = main(["eval", str(run), "luca_sdxl_v1.safetensors", "--versus", str(trial), "--sd15-base", str(sd15_base),
               "--base-model", str(sdxl_base), "--command", TEMPLATE, "--num-samples", "2"])
    assert rc == 0
    folder = run / "versus_lora_trial_25_luca_sdxl_v1"
    left = json.loads((folder / "sd15" / "argv.json").read_text())["argv"]
    right = json.loads((folder / "sdxl" / "argv.json").read_text())["argv"]
    assert left[left.index("--resolution") + 1] == "512" and left[left.index("--base-model") + 1] == str(sd15_base)
    assert right[right.index("--resolution") + 1] == "1024" and right[right.index("--base-model") + 1] == str(sdxl_base)
    assert left[left.index("--checkpoint") + 1] == str(trial / "lora_trial_25.safetensors")
    grid = Image.open(str(folder) + ".png").convert("RGB")
    # rows = the 2 prompts; column 0 the SD1.5 side, column 1 the SDXL side (a colour per checkpoint)
    assert grid.size == (150 + 2 * 256, 26 + 40 + 2 * 256)
    top = 26 + 40 + 128
    assert grid.getpixel((150 + 128, top)) == colour_for("lora_trial_25.safetensors")
    assert grid.getpixel((150 + 256 + 128, top)) == colour_for("luca_sdxl_v1.safetensors")


def test_versus_without_an_sd15_base_is_one_line(tmp_path: Path, capsys: object) -> None:
    run, trial = _folder(tmp_path)
    rc = main(["eval", str(run), "luca_sdxl_v1.safetensors", "--versus", str(trial), "--command", TEMPLATE])
    assert rc == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "--sd15-base" in err and "Traceback" not in err


def test_versus_dry_run_prints_both_commands_and_writes_nothing(tmp_path: Path, capsys: object) -> None:
    run, trial = _folder(tmp_path)
    before = sorted(p.name for p in run.iterdir())
    rc = main(["eval", str(run), "luca_sdxl_v1.safetensors", "--versus", str(trial), "--sd15-base",
               str(tmp_path / "v1-5.safetensors"), "--base-model", str(tmp_path / "sdxl.safetensors"),
               "--command", TEMPLATE, "--dry-run"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert rc == 0 and "SD1.5 lora_trial_25 (512):" in out and "--resolution 1024" in out
    assert sorted(p.name for p in run.iterdir()) == before
