"""planning/plan.py: best trial -> SDXL files that pass the check; the card's rules."""

from __future__ import annotations

import json
import sys
from collections import namedtuple
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomllib

from sdxl_tui.model import GpuSample, GpuStatus
from sdxl_tui.planning.check import check_launch, format_report
from sdxl_tui.formats import toml
from sdxl_tui.planning.environment import KnownEnvironment
from sdxl_tui.planning.plan import (
    PlanError,
    format_rows,
    load_optuna_trials,
    load_trials,
    make_plan,
    pick_best,
    write_plan,
)

TRIALS = Path(__file__).resolve().parents[1] / "fixtures" / "trials" / "optimization_overnight"
SDXL_KEYS = [
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
    "model.diffusion_model.label_emb.0.0.weight",
]
ALL_MODULES = KnownEnvironment({"bitsandbytes": True, "xformers": True, "tensorboard": True, "lion_pytorch": True})
GPU_24 = GpuStatus(available=True, gpus=(GpuSample(index=0, name="RTX 4090", memory_total=24 * 1024**3,
                                                   memory_used=0),))
Usage = namedtuple("Usage", "total used free")


def write_safetensors(path: Path, keys: list[str]) -> Path:
    header = {k: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, k in enumerate(keys)}
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + b"\0" * (2 * len(keys)))
    return path


@pytest.fixture()
def sd15(tmp_path: Path) -> Path:
    """The SD1.5 side: a dataset TOML (512, bucket steps 64... and a step SDXL rejects) and images."""
    img = tmp_path / "data" / "10_luca"
    img.mkdir(parents=True)
    for i in range(12):
        (img / f"{i:02d}.png").write_bytes(b"\x89PNG")
        (img / f"{i:02d}.txt").write_text("luca")
    (tmp_path / "data" / "sd15_dataset.toml").write_text(
        "[general]\nshuffle_caption = true\ncaption_extension = \".txt\"\nbucket_reso_steps = 48\n"
        "enable_bucket = true\n\n[[datasets]]\nresolution = 512\nbatch_size = 8\n\n"
        "  [[datasets.subsets]]\n  image_dir = \"10_luca\"\n  num_repeats = 10\n  class_tokens = \"luca\"\n"
    )
    write_safetensors(tmp_path / "sd_xl_base_1.0.safetensors", SDXL_KEYS)
    return tmp_path


def test_best_trial_by_score_skips_failed_and_unfinished() -> None:
    pick = pick_best(load_trials(TRIALS))
    assert pick.trial.name == "trial_0025" and pick.field == "score" and not pick.minimize
    assert set(pick.skipped) == {"trial_0030", "trial_0031"}  # FAIL state (higher score) and no result
    assert "`score`" in pick.describe() and "final_loss" in pick.describe()
    params = pick.trial.params
    assert params["learning_rate"] == 0.0003 and params["network_dim"] == 64 and params["network_alpha"] == 32
    assert params["optimizer_type"] == "AdamW8bit" and params["lr_scheduler"] == "cosine_with_restarts"
    assert params["gradient_accumulation_steps"] == 2 and params["max_train_epochs"] == 12


def test_other_fields_and_directions() -> None:
    trials = load_trials(TRIALS)
    by_loss = pick_best(trials, "final_loss")
    assert by_loss.trial.name == "trial_0011" and by_loss.minimize
    assert pick_best(trials, "final_loss", minimize=False).trial.name == "trial_0003"
    with pytest.raises(PlanError, match="no trial records `fid`"):
        pick_best(trials, "fid")


def test_single_trial_inputs_and_aliases(tmp_path: Path) -> None:
    one = load_trials(TRIALS / "trial_0017" / "params.json")
    assert [t.name for t in one] == ["trial_0017"]
    assert load_trials(TRIALS / "trial_0017")[0].metrics["score"] == 0.803
    d = tmp_path / "trial_7"
    d.mkdir()
    (d / "params.json").write_text(json.dumps({"params": {"BEST_LR": 2e-4, "dim": 32, "alpha": 16, "epochs": 10,
                                                          "grad_accum": 3}, "value": 0.5}))
    (d / "loss.txt").write_text("0.0931\n")
    t = load_trials(d)[0]
    assert t.params == {"learning_rate": 2e-4, "network_dim": 32, "network_alpha": 16, "max_train_epochs": 10,
                        "gradient_accumulation_steps": 3}
    assert t.metrics == {"value": 0.5, "loss": 0.0931}
    with pytest.raises(PlanError):
        load_trials(tmp_path / "missing")


def test_optuna_without_optuna_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(PlanError, match="optuna is not installed"):
        load_optuna_trials("sqlite:///x.db", "study")


def _plan(sd15: Path, vram: float = 24, xformers: bool | None = True):
    trial = pick_best(load_trials(TRIALS)).trial
    return make_plan(trial, dataset=str(sd15 / "data" / "sd15_dataset.toml"),
                     base_model=str(sd15 / "sd_xl_base_1.0.safetensors"), output_dir=str(sd15 / "out"),
                     output_name="luca_sdxl_v1", vram_gb=vram, xformers_available=xformers)


def test_card_rules_at_24_gb(sd15: Path) -> None:
    plan = _plan(sd15)
    cfg = plan.flat_config()
    assert cfg["unet_lr"] == 0.0003 and cfg["text_encoder_lr"] == [0.000201] and "learning_rate" not in cfg
    assert cfg["network_dim"] == 64 and cfg["network_alpha"] == 32 and cfg["network_module"] == "networks.lora"
    assert cfg["optimizer_type"] == "AdamW8bit" and cfg["lr_scheduler"] == "cosine_with_restarts"
    assert cfg["gradient_accumulation_steps"] == 2 and cfg["max_train_epochs"] == 12
    assert cfg["max_token_length"] == 225 and cfg["gradient_checkpointing"] is True
    assert cfg["xformers"] is True and "sdpa" not in cfg
    assert cfg["save_every_n_epochs"] == 2 and cfg["cache_latents_to_disk"] is True
    assert cfg["log_with"] == "tensorboard" and cfg["logging_dir"].endswith("out/logs")
    assert cfg["seed"] == 42 and cfg["mixed_precision"] == "fp16" and cfg["no_half_vae"] is True
    assert "clip_skip" not in cfg and cfg["noise_offset"] == 0.05  # dropped / carried over
    (ds,) = plan.dataset["datasets"]
    assert ds["resolution"] == 1024 and ds["batch_size"] == 4 and ds["enable_bucket"] is True
    assert ds["bucket_reso_steps"] % 32 == 0 and "bucket_reso_steps" not in plan.dataset.get("general", {})
    assert ds["subsets"][0]["image_dir"] == str((sd15 / "data" / "10_luca").resolve())  # made absolute
    rows = {r.item: r for r in plan.rows}
    assert rows["clip_skip"].sdxl == "-" and "ignores" in rows["clip_skip"].rule
    assert rows["text_encoder_lr"].sdxl == "0.000201" and "0.67" in rows["text_encoder_lr"].rule
    assert rows["effective batch (batch x accumulation)"].sd15 == "16"
    assert rows["effective batch (batch x accumulation)"].sdxl == "8"
    assert "SD1.5" in format_rows(plan.rows) and "->" in format_rows(plan.rows)


def test_small_gpu_and_no_xformers(sd15: Path) -> None:
    plan = _plan(sd15, vram=12, xformers=None)
    cfg = plan.flat_config()
    assert plan.dataset["datasets"][0]["batch_size"] == 2 and cfg["gradient_accumulation_steps"] == 4
    assert cfg["sdpa"] is True and "xformers" not in cfg
    assert "could not be confirmed" in next(r.rule for r in plan.rows if r.item == "attention")


def test_written_plan_passes_check(sd15: Path) -> None:
    files = write_plan(_plan(sd15))
    assert {p.name for p in files.values()} == {"luca_sdxl_v1.toml", "luca_sdxl_v1_dataset.toml", "sdxl-tui.toml"}
    config = tomllib.loads(files["config"].read_text())
    assert config["dataset"]["dataset_config"] == str(files["dataset"])
    launch = tomllib.loads(files["launch"].read_text())["launch"]
    assert launch["script"] == "sdxl_train_network.py" and launch["config_file"] == str(files["config"])
    report = check_launch(str(files["launch"]), environment=ALL_MODULES, gpu=GPU_24,
                          disk_usage=lambda _p: Usage(10**13, 0, 10**13))
    assert report.errors == () and report.warnings == (), format_report(report)
    assert report.facts["script"] == "sdxl_train_network.py" and report.facts["base_model_kind"] == "sdxl"
    # 12 images x 10 repeats / batch 4 = 30 batches, accumulation 2 -> 15 steps/epoch x 12
    assert report.facts["total_steps"] == 180


def test_image_folder_dataset(tmp_path: Path) -> None:
    img = tmp_path / "images" / "5_luca"
    img.mkdir(parents=True)
    (img / "a.png").write_bytes(b"x")
    (img / "a.txt").write_text("luca")
    write_safetensors(tmp_path / "base.safetensors", SDXL_KEYS)
    trial = load_trials(TRIALS / "trial_0003")[0]
    plan = make_plan(trial, dataset=str(tmp_path / "images"), base_model=str(tmp_path / "base.safetensors"),
                     output_dir=str(tmp_path / "out"), output_name="x", vram_gb=16, xformers_available=False)
    sub = plan.dataset["datasets"][0]["subsets"][0]
    assert sub["num_repeats"] == 5 and sub["class_tokens"] == "luca" and sub["caption_extension"] == ".txt"
    files = write_plan(plan)
    report = check_launch(str(files["launch"]), environment=ALL_MODULES, gpu=GPU_24,
                          disk_usage=lambda _p: Usage(10**13, 0, 10**13))
    assert report.errors == (), format_report(report)


def test_toml_writer_round_trips() -> None:
    data = {"a": {"x": 1, "y": 1e-05, "z": [0.000201], "s": 'q"uote', "b": True},
            "datasets": [{"resolution": 1024, "subsets": [{"image_dir": "/i"}, {"image_dir": "/j"}]}]}
    assert tomllib.loads(toml.dumps(data, header="hello")) == data


def test_cli_plan_writes_and_checks(sd15: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.cli import main

    out = sd15 / "run"
    rc = main(["plan", "--from", str(TRIALS), "--dataset", str(sd15 / "data" / "sd15_dataset.toml"),
               "--base-model", str(sd15 / "sd_xl_base_1.0.safetensors"), "--output-dir", str(out),
               "--vram", "24", "--no-env", "--no-gpu", "--attention", "sdpa"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "best trial: trial_0025" in text and "`score`" in text and "OK:" in text
    assert (out / "run.toml").is_file() and (out / "sdxl-tui.toml").is_file()
    assert main(["check", "--no-env", "--no-gpu", str(out)]) == 0
    capsys.readouterr()
    # without a GPU and without --vram the batch size cannot be chosen
    rc = main(["plan", "--from", str(TRIALS), "--dataset", str(sd15 / "data"), "--base-model", "x",
               "--output-dir", str(out), "--no-gpu"])
    assert rc == 2 and "--vram" in capsys.readouterr().err


def test_optuna_study_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's API at its boundary: load_study(study_name=, storage=) -> direction, trials."""
    import types

    FrozenTrial = namedtuple("FrozenTrial", "number state value params")
    study = types.SimpleNamespace(
        direction="StudyDirection.MINIMIZE",
        trials=[
            FrozenTrial(0, "TrialState.COMPLETE", 0.12, {"learning_rate": 1e-4, "network_dim": 32}),
            FrozenTrial(1, "TrialState.COMPLETE", 0.09, {"learning_rate": 3e-4, "network_dim": 64}),
            FrozenTrial(2, "TrialState.PRUNED", None, {"learning_rate": 9e-4, "network_dim": 8}),
            FrozenTrial(3, "TrialState.FAIL", 0.01, {"learning_rate": 1e-3, "network_dim": 4}),
        ],
    )
    seen = {}

    def load_study(*, study_name: str, storage: str) -> object:
        seen.update(study_name=study_name, storage=storage)
        return study

    monkeypatch.setitem(sys.modules, "optuna", types.SimpleNamespace(load_study=load_study))
    trials, minimize = load_optuna_trials("sqlite:///luca.db", "sd15")
    assert seen == {"study_name": "sd15", "storage": "sqlite:///luca.db"} and minimize
    assert [t.name for t in trials] == ["trial_0000", "trial_0001"]
    pick = pick_best(trials, minimize=minimize)
    assert pick.trial.name == "trial_0001" and pick.field == "value" and pick.trial.params["network_dim"] == 64


def test_a_single_unscored_trial_is_used_as_is() -> None:
    pick = pick_best(load_trials(TRIALS / "trial_0031"))
    assert pick.trial.name == "trial_0031" and pick.field == "" and "only trial" in pick.describe()
