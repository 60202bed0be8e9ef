"""File names and removal rules of the simulated run (REF §3): epoch, step and final saves,
--save_last_n_epochs/steps, --save_state folders, sample images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdxl_tui.sim import run_simulated
from tests.oracles import read_safetensors_header, record_messages, squash

FAST = ["--sim-step-seconds", "0", "--sim-startup-seconds", "0"]


def _names(out: Path, pattern: str = "*.safetensors") -> list[str]:
    return sorted(p.name for p in out.glob(pattern))


def test_every_n_epochs_never_names_the_last_epoch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--output_name", "luca_sdxl_v1", "--max_train_epochs", "12", "--save_every_n_epochs", "2",
            "--gradient_accumulation_steps", "2", "--sim-batches-per-epoch", "4", *FAST]
    assert run_simulated(out, args) == 0
    assert _names(out) == [f"luca_sdxl_v1-{e:06d}.safetensors" for e in (2, 4, 6, 8, 10)] + ["luca_sdxl_v1.safetensors"]
    assert read_safetensors_header(out / "luca_sdxl_v1.safetensors").metadata["ss_epoch"] == "12"


def test_save_last_n_epochs_removes_old_files_and_prints_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--output_name", "r", "--max_train_epochs", "7", "--save_every_n_epochs", "1",
            "--save_last_n_epochs", "2", "--sim-batches-per-epoch", "2", *FAST]
    assert run_simulated(out, args) == 0
    assert _names(out) == ["r-000005.safetensors", "r-000006.safetensors", "r.safetensors"]
    log = (out / "training.log").read_text("utf-8")
    removed = re.findall(r"^removing old checkpoint: (.+)$", log, re.MULTILINE)
    assert [Path(p).name for p in removed] == [f"r-{e:06d}.safetensors" for e in (1, 2, 3, 4)]


def test_step_saves_names_epoch_metadata_and_removal(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--output_name", "s", "--max_train_epochs", "3", "--save_every_n_steps", "2",
            "--save_last_n_steps", "3", "--sim-batches-per-epoch", "3", *FAST]
    assert run_simulated(out, args) == 0
    # 9 steps: step files 2,4,6,8; keep the last 3 steps' worth -> 6 and 8 remain
    assert _names(out) == ["s-step00000006.safetensors", "s-step00000008.safetensors", "s.safetensors"]
    md6 = read_safetensors_header(out / "s-step00000006.safetensors").metadata
    md8 = read_safetensors_header(out / "s-step00000008.safetensors").metadata
    # ss_epoch of a step save is the 0-based index of the running epoch (steps 4-6 are epoch index 1)
    assert (md6["ss_steps"], md6["ss_epoch"]) == ("6", "1")
    assert (md8["ss_steps"], md8["ss_epoch"]) == ("8", "2")


def test_default_names_without_output_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--max_train_epochs", "2", "--save_every_n_epochs", "1", "--save_every_n_steps", "3",
            "--sim-batches-per-epoch", "2", *FAST]
    assert run_simulated(out, args) == 0
    assert _names(out) == ["at-step00000003.safetensors", "epoch-000001.safetensors", "last.safetensors"]


def test_save_state_directories(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--output_name", "st", "--max_train_epochs", "4", "--save_every_n_epochs", "1", "--save_state",
            "--save_last_n_epochs", "2", "--mixed_precision", "fp16", "--sim-batches-per-epoch", "3", *FAST]
    assert run_simulated(out, args) == 0
    states = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.endswith("-state"))
    assert states == ["st-000002-state", "st-000003-state", "st-state"]
    for name, (epoch, step) in {"st-000003-state": (3, 9), "st-state": (4, 12)}.items():
        d = out / name
        assert json.loads((d / "train_state.json").read_text()) == {"current_epoch": epoch, "current_step": step}
        assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "scaler.pt"} <= {
            p.name for p in d.iterdir()
        }
    log = (out / "training.log").read_text("utf-8")
    assert "saving state at epoch 3" in log and "saving last state." in log
    assert "removing old state:" in log
    assert re.search(r"save train state to\s", log)


def test_samples_have_real_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat --w 512 --h 768 --d 42 --s 4\n# comment\n\na dog --n blurry --s 4\n")
    args = ["--output_name", "luca", "--max_train_epochs", "4", "--sample_every_n_epochs", "2",
            "--sample_prompts", str(prompts), "--sample_at_first", "--sim-batches-per-epoch", "2", *FAST]
    assert run_simulated(out, args) == 0
    names = _names(out / "sample", "*.png")
    pat = re.compile(r"^luca_e(\d{6})_(\d\d)_\d{14}(_\d+)?\.png$")
    got = sorted((pat.match(n).group(1), pat.match(n).group(2), pat.match(n).group(3)) for n in names)  # type: ignore[union-attr]
    assert got == [
        ("000000", "00", "_42"), ("000000", "01", None),
        ("000002", "00", "_42"), ("000002", "01", None),
        ("000004", "00", "_42"), ("000004", "01", None),
    ]
    for n in names:
        assert (out / "sample" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pil = pytest.importorskip("PIL.Image")
    with pil.open(out / "sample" / names[0]) as im:  # an independent decoder
        im.load()
        assert im.size == (512, 768)  # --w 512 --h 768 of the first prompt
    msgs = [squash(m) for m in record_messages((out / "training.log").read_bytes())]
    headers = [m for m in msgs if m.startswith(squash("generating sample images at step / サンプル画像生成 ステップ:"))]
    assert [h.rsplit(":", 1)[1] for h in headers] == ["0", "4", "8"]
    assert squash("prompt: a cat") in msgs and squash("negative_prompt: blurry") in msgs


def test_step_samples_use_step_number(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat --s 2\n")
    args = ["--max_train_epochs", "2", "--sample_every_n_steps", "3", "--sample_prompts", str(prompts),
            "--sim-batches-per-epoch", "3", *FAST]
    assert run_simulated(out, args) == 0
    names = _names(out / "sample", "*.png")
    assert [n[:9] for n in names] == ["000003_00", "000006_00"]


def test_resume_from_state_restarts_steps_and_continues_epochs(tmp_path: Path) -> None:
    from tests.oracles import scalar_points

    out = tmp_path / "out"
    common = ["--output_name", "rs", "--max_train_epochs", "4", "--save_every_n_epochs", "1",
              "--sim-batches-per-epoch", "3", "--logging_dir", str(out / "logs"), *FAST]
    assert run_simulated(out, [*common, "--save_state", "--log_prefix", "a"]) == 0
    state = out / "rs-000002-state"
    assert json.loads((state / "train_state.json").read_text()) == {"current_epoch": 2, "current_step": 6}
    first_log = (out / "training.log").read_bytes()
    (out / "first.log").write_bytes(first_log)
    assert run_simulated(out, [*common, "--resume", str(state), "--log_prefix", "b"]) == 0
    text = (out / "training.log").read_bytes().decode()
    assert re.findall(r"\nepoch (\d+)/4\n", text) == ["3", "4"]
    msgs = [squash(m) for m in record_messages(text.encode())]
    assert any(m.startswith(squash("resume training from local state:")) for m in msgs)
    second = scalar_points(next((out / "logs").glob("b*/network_train/events.*")))
    assert second["loss/current"][0][0] == 1  # global_step restarted at 0 (not 6) after --resume
    assert [s for s, _ in second["loss/epoch_average"]] == [3, 4]
    md = read_safetensors_header(out / "rs.safetensors").metadata
    assert (md["ss_epoch"], md["ss_steps"]) == ("4", "6")


def test_skip_until_initial_step_with_accumulation_missteps_like_sd_scripts(tmp_path: Path) -> None:
    from tests.oracles import scalar_points

    out = tmp_path / "out"
    common = ["--output_name", "sk", "--max_train_epochs", "3", "--save_every_n_epochs", "1",
              "--gradient_accumulation_steps", "2", "--sim-batches-per-epoch", "6",
              "--logging_dir", str(out / "logs"), *FAST]
    assert run_simulated(out, [*common, "--save_state", "--log_prefix", "a"]) == 0
    state = out / "sk-000001-state"
    assert json.loads((state / "train_state.json").read_text()) == {"current_epoch": 1, "current_step": 3}
    assert run_simulated(out, [*common, "--resume", str(state), "--skip_until_initial_step",
                               "--log_prefix", "b"]) == 0
    text = (out / "training.log").read_bytes().decode()
    # 3 steps x accumulation 2 = 6 micro-batches, divided by 3 optimizer steps per epoch: epoch 3
    assert re.findall(r"\nepoch (\d+)/3\n", text) == ["3"]
    msgs = [squash(m) for m in record_messages(text.encode())]
    assert squash("skipping 3 steps / 3ステップをスキップします") in msgs
    assert re.findall(r"steps: +\d+%\|[^|]*\| (\d+)/(\d+)", text)[-1] == ("3", "15")
    steps = {s if s < 2**63 else s - 2**64 for s, _ in
             scalar_points(next((out / "logs").glob("b*/network_train/events.*")))["loss/current"]}
    assert steps == {-6, -5, -4, -3}
    assert read_safetensors_header(out / "sk.safetensors").metadata["ss_steps"] == "-3"
