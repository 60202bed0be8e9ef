"""planning/check.py: the card's command yields every REF §6 problem and no false ones."""

from __future__ import annotations

import json
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from sdxl_tui.model import GpuSample, GpuStatus
from sdxl_tui.planning import estimate
from sdxl_tui.planning.basemodel import detect_model_kind
from sdxl_tui.planning.check import (
    check_argv,
    check_config_file,
    check_launch,
    fact_lines,
    format_report,
    split_command,
)
from sdxl_tui.planning.dataset import validate_dataset_config
from sdxl_tui.planning.environment import (
    KnownEnvironment,
    PythonEnvironment,
    environment_for_prefix,
)

SDXL_KEYS = [
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
    "model.diffusion_model.label_emb.0.0.weight",
    "model.diffusion_model.input_blocks.0.0.weight",
    "first_stage_model.decoder.conv_in.weight",
]
SD15_KEYS = [
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "model.diffusion_model.input_blocks.0.0.weight",
    "first_stage_model.decoder.conv_in.weight",
]
ALL_MODULES = KnownEnvironment({"bitsandbytes": True, "xformers": True, "tensorboard": True}, "test env")
GPU_24 = GpuStatus(
    available=True,
    gpus=(GpuSample(index=0, name="RTX 4090", memory_total=24 * 1024**3, memory_used=512 * 1024**2),),
)
Usage = namedtuple("Usage", "total used free")
BIG_DISK = lambda _p: Usage(10**13, 0, 10**13)


def write_safetensors(path: Path, keys: list[str]) -> Path:
    """A header-only safetensors file with representative tensor names (no real weights)."""
    header = {"__metadata__": {"format": "pt"}}
    header.update({k: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, k in enumerate(keys)})
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + b"\0" * (2 * len(keys)))
    return path


def make_images(folder: Path, n: int, caption_ext: str | None = ".txt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"img_{i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        if caption_ext:
            (folder / f"img_{i:03d}{caption_ext}").write_text("luca, 3d character")
    return folder


@pytest.fixture()
def card_dir(tmp_path: Path) -> Path:
    """What the card's command refers to: an SDXL base, a dataset TOML and its images."""
    write_safetensors(tmp_path / "sd_xl_base_1.0.safetensors", SDXL_KEYS)
    make_images(tmp_path / "train" / "10_luca", 20)
    (tmp_path / "ds.toml").write_text(
        "[general]\nshuffle_caption = true\ncaption_extension = \".txt\"\n\n"
        "[[datasets]]\nresolution = 1024\nbatch_size = 4\n\n"
        "  [[datasets.subsets]]\n  image_dir = \"train/10_luca\"\n  num_repeats = 10\n  class_tokens = \"luca\"\n"
    )
    return tmp_path


CARD = ["python", "train_network.py", "--dataset_config", "ds.toml", "--pretrained_model_name_or_path", "sd_xl_base_1.0.safetensors", "--output_dir", "out", "--output_name", "luca_sdxl_v1", "--network_module", "networks.lora", "--network_dim", "64", "--network_alpha", "32", "--learning_rate", "0.0003", "--text_encoder_lr", "0.000201", "--unet_lr", "0.0003", "--max_train_epochs", "12", "--save_every_n_epochs", "2", "--save_model_as", "safetensors", "--save_precision", "fp16", "--mixed_precision", "fp16", "--gradient_checkpointing", "--gradient_accumulation_steps", "2", "--optimizer_type", "AdamW8bit", "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "3", "--lr_warmup_steps", "100", "--logging_dir", "out/logs", "--log_with", "tensorboard", "--seed", "42", "--clip_skip", "2", "--cache_latents", "--cache_latents_to_disk", "--max_data_loader_n_workers", "8", "--persistent_data_loader_workers", "--xformers", "--max_token_length", "225", "--bucket_reso_steps", "64", "--bucket_no_upscale"]
SUGGESTED = ["--batch_size", "2", "--lowvram", "--medvram"]

CLEAN = ["python", "sdxl_train_network.py", "--dataset_config", "ds.toml", "--pretrained_model_name_or_path", "sd_xl_base_1.0.safetensors", "--output_dir", "out", "--output_name", "luca_sdxl_v1", "--network_module", "networks.lora", "--network_dim", "64", "--network_alpha", "32", "--unet_lr", "0.0003", "--network_train_unet_only", "--max_train_epochs", "12", "--save_every_n_epochs", "2", "--save_precision", "fp16", "--mixed_precision", "fp16", "--no_half_vae", "--gradient_checkpointing", "--gradient_accumulation_steps", "2", "--optimizer_type", "AdamW8bit", "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "3", "--lr_warmup_steps", "100", "--logging_dir", "out/logs", "--log_with", "tensorboard", "--seed", "42", "--cache_latents_to_disk", "--xformers", "--max_token_length", "225"]


def run_check(argv: list[str], cwd: Path, **kw):
    kw.setdefault("environment", ALL_MODULES)
    kw.setdefault("gpu", GPU_24)
    kw.setdefault("disk_usage", BIG_DISK)
    return check_argv(argv, cwd=cwd, **kw)


def triples(report) -> set[tuple[str, str, str | None]]:
    return {(f.severity, f.code, f.subject) for f in report.findings}


def test_card_command_with_its_suggestions_yields_exactly_the_reference_problems(card_dir: Path) -> None:
    report = run_check(CARD + SUGGESTED, card_dir)
    assert triples(report) == {
        ("error", "wrong-script", "train_network.py"),  # §6.1
        ("error", "unknown-option", "--batch_size"),  # the notes' suggestions
        ("error", "unknown-option", "--lowvram"),
        ("error", "unknown-option", "--medvram"),
        ("warning", "clip-skip-sdxl", "--clip_skip"),  # §6.2
        ("warning", "fp16-vae", "--no_half_vae"),  # §6.3
        ("warning", "bucket-without-bucketing", "enable_bucket"),  # §6.4
        ("note", "text-encoder-lr-single", "--text_encoder_lr"),  # §6.5
        ("note", "redundant-option", "--cache_latents"),  # §6.6
        ("note", "redundant-option", "--save_model_as"),
        ("note", "redundant-option", "--learning_rate"),
    }, format_report(report)
    assert report.exit_code == 2
    by = {(f.code, f.subject): f for f in report.findings}
    assert "sdxl_train_network.py" in by[("wrong-script", "train_network.py")].fix
    assert "--train_batch_size" in by[("unknown-option", "--batch_size")].fix
    assert "batch_size = N" in by[("unknown-option", "--batch_size")].fix
    assert "--lowram" in by[("unknown-option", "--lowvram")].fix
    assert "--gradient_checkpointing" in by[("unknown-option", "--medvram")].fix
    assert "enable_bucket = true" in by[("bucket-without-bucketing", "enable_bucket")].fix
    # §6.7 expectations as facts: 20 images x 10 repeats / batch 4 = 50 batches, accumulation 2
    assert report.facts["steps_per_epoch"] == 25 and report.facts["total_steps"] == 300
    assert report.facts["checkpoint_files"] == 6  # epochs 2,4,6,8,10 + the final file
    assert report.facts["base_model_kind"] == "sdxl"
    lines = fact_lines(report)
    assert any(line.endswith("12 epochs = 300 steps") for line in lines)
    assert any(line.startswith("disk: 6 x 456.5 MB LoRA files") for line in lines)


def test_card_command_alone_parses_like_the_reference(card_dir: Path) -> None:
    report = run_check(CARD, card_dir)
    assert "unknown-option" not in report.codes()
    assert report.codes("error") == ["wrong-script"]


def test_clean_sdxl_command_has_no_error(card_dir: Path) -> None:
    report = run_check(CLEAN, card_dir)
    assert report.errors == () and report.warnings == (), format_report(report)
    assert report.exit_code == 0
    assert "time_estimate" in report.facts and report.facts["vram_estimate_gb"] < 24


def test_sd15_checkpoint_with_sdxl_script(card_dir: Path) -> None:
    write_safetensors(card_dir / "sd15.safetensors", SD15_KEYS)
    argv = [a if a != "sd_xl_base_1.0.safetensors" else "sd15.safetensors" for a in CLEAN]
    report = run_check(argv, card_dir)
    assert report.codes("error") == ["wrong-script"]
    assert "SD 1.x" in report.errors[0].message


def test_model_detection_reads_only_the_header(tmp_path: Path) -> None:
    assert detect_model_kind(write_safetensors(tmp_path / "a.safetensors", SDXL_KEYS)).kind == "sdxl"
    assert detect_model_kind(write_safetensors(tmp_path / "b.safetensors", SD15_KEYS)).kind == "sd1"
    lora = write_safetensors(tmp_path / "c.safetensors", ["lora_unet_input_blocks_4_1_proj_in.lora_down.weight"])
    assert detect_model_kind(lora).kind == "lora"
    (tmp_path / "d.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    assert detect_model_kind(tmp_path / "d.safetensors").kind == "unknown"
    assert detect_model_kind(tmp_path / "missing.safetensors").kind == "missing"
    assert detect_model_kind("stabilityai/stable-diffusion-xl-base-1.0").kind == "hub"


def test_missing_base_model_and_dataset_folder(card_dir: Path) -> None:
    (card_dir / "ds.toml").write_text(
        "[[datasets]]\nresolution = 1024\n[[datasets.subsets]]\nimage_dir = \"nowhere\"\n"
    )
    argv = [a if a != "sd_xl_base_1.0.safetensors" else "gone.safetensors" for a in CLEAN]
    report = run_check(argv, card_dir)
    assert set(report.codes("error")) == {"base-model-missing", "dataset-folder-missing"}


def test_wrong_dataset_key_is_caught(card_dir: Path) -> None:
    (card_dir / "ds.toml").write_text(
        "[general]\nenable_buckets = true\n\n[[datasets]]\nresolution = 1024\nbatch_szie = 4\n"
        "[[datasets.subsets]]\nimage_dir = \"train/10_luca\"\ncaption_extension = \".txt\"\nnum_repeat = 10\n"
    )
    report = run_check(CLEAN, card_dir)
    rejected = {f.subject: f for f in report.findings if f.code == "dataset-key-rejected"}
    assert set(rejected) == {"enable_buckets", "batch_szie", "num_repeat"}
    assert "extra keys not allowed" in rejected["batch_szie"].message
    assert rejected["batch_szie"].fix == "did you mean `batch_size`?"
    assert rejected["enable_buckets"].fix == "did you mean `enable_bucket`?"
    assert report.exit_code == 2


def test_dataset_rules(tmp_path: Path) -> None:
    make_images(tmp_path / "img", 4, caption_ext=".txt")
    make_images(tmp_path / "empty", 0)
    ds = {
        "general": {"enable_bucket": True, "bucket_reso_steps": 48},
        "datasets": [
            {"resolution": 512, "subsets": [{"image_dir": "img"}]},
            {"subsets": [{"image_dir": "empty"}, {"num_repeats": 2}]},
        ],
        "dataset": {"typo": 1},
    }
    check = validate_dataset_config(ds, sdxl=True, cwd=tmp_path, args={"caption_extension": ".caption"})
    found = {(f.severity, f.code) for f in check.findings}
    assert ("warning", "dataset-resolution") in found  # 512 on SDXL
    assert ("error", "bucket-steps") in found  # 48 is no multiple of 32
    assert ("error", "dataset-no-resolution") in found  # second dataset
    assert ("error", "dataset-no-images") in found
    assert ("error", "dataset-no-image-dir") in found
    assert ("error", "dataset-key-rejected") in found  # top-level [dataset]
    captions = [f for f in check.findings if f.code == "dataset-captions-missing"]
    assert len(captions) == 1 and captions[0].severity == "warning"
    assert 'caption_extension = ".txt"' in captions[0].fix  # default .caption, files are .txt
    # SD 1.x allows 48? no: it needs a multiple of 64
    sd1 = validate_dataset_config({"datasets": [{"resolution": 512, "enable_bucket": True, "bucket_reso_steps": 32,
                                                 "subsets": [{"image_dir": "img", "caption_extension": ".txt"}]}]},
                                  sdxl=False, cwd=tmp_path)
    assert [f.code for f in sd1.findings] == ["bucket-steps"]


def test_dataset_types_follow_the_schema(tmp_path: Path) -> None:
    make_images(tmp_path / "img", 1)
    ds = {"datasets": [{"resolution": "1024", "batch_size": 2.0, "network_multiplier": 1,
                        "subsets": [{"image_dir": "img", "caption_extension": ".txt", "flip_aug": "yes"}]}]}
    check = validate_dataset_config(ds, sdxl=True, cwd=tmp_path)
    assert {f.subject for f in check.findings if f.code == "dataset-key-type"} == {
        "resolution", "batch_size", "network_multiplier", "flip_aug"}


def test_config_file_typo_and_types(card_dir: Path) -> None:
    cfg = card_dir / "luca.toml"
    cfg.write_text(
        "[model]\npretrained_model_name_or_path = \"sd_xl_base_1.0.safetensors\"\n"
        "[network]\nnetwork_module = \"networks.lora\"\nnetowrk_dim = 64\nnetwork_train_unet_only = true\n"
        "[optimizer]\nunet_lr = \"3e-4\"\noptimizer_type = \"AdamW\"\n"
        "[training]\nmixed_precision = \"bf16\"\nmax_train_epochs = 2\ngradient_checkpointing = true\nsdpa = true\n"
        "[saving]\noutput_dir = \"out\"\n"
        "[dataset]\ndataset_config = \"ds.toml\"\n"
    )
    report = check_config_file(cfg, environment=ALL_MODULES, gpu=GPU_24, disk_usage=BIG_DISK, cwd=card_dir)
    assert triples(report) >= {("warning", "config-key-unknown", "netowrk_dim"),
                               ("error", "config-value-type", "unet_lr")}
    typo = next(f for f in report.findings if f.code == "config-key-unknown")
    assert typo.fix == "did you mean `network_dim`?" and "no effect" in typo.message
    assert report.exit_code == 2
    cfg.write_text(cfg.read_text().replace('unet_lr = "3e-4"', "unet_lr = 3e-4"))
    report = check_config_file(cfg, environment=ALL_MODULES, gpu=GPU_24, disk_usage=BIG_DISK, cwd=card_dir)
    assert report.exit_code == 1 and report.codes("warning") == ["config-key-unknown"]


def test_missing_modules_and_unknown_environment(card_dir: Path) -> None:
    env = KnownEnvironment({"bitsandbytes": False, "xformers": False, "tensorboard": True})
    report = run_check(CLEAN, card_dir, environment=env)
    missing = {f.subject: f for f in report.findings if f.code == "missing-module"}
    assert set(missing) == {"bitsandbytes", "xformers"} and "--sdpa" in missing["xformers"].fix
    unknown = run_check(CLEAN, card_dir, environment=KnownEnvironment({}))
    assert [f.severity for f in unknown.findings if f.code in ("missing-module", "environment-unknown")] == ["note"]


def test_real_python_probe() -> None:
    env = PythonEnvironment([sys.executable], timeout=30)
    assert dict(env.has_modules(["json", "surely_not_a_module_xyz"])) == {"json": True, "surely_not_a_module_xyz": False}
    assert environment_for_prefix(["conda", "run", "-n", "x", "python"]).description.startswith("conda run")
    assert environment_for_prefix(["/opt/weird-launcher"]).has_modules(["x"]) == {"x": None}


def test_cache_text_encoder_outputs_needs_unet_only(card_dir: Path) -> None:
    argv = [a for a in CLEAN if a != "--network_train_unet_only"] + ["--cache_text_encoder_outputs"]
    report = run_check(argv, card_dir)
    assert "cache-te-needs-unet-only" in report.codes("error")


def test_vram_disk_and_gpu_notes(card_dir: Path) -> None:
    small = GpuStatus(available=True, gpus=(GpuSample(index=0, name="RTX 3060", memory_total=8 * 1024**3,
                                                      memory_used=1024**3),))
    assert "vram" in run_check(CLEAN, card_dir, gpu=small).codes("warning")
    none = run_check(CLEAN, card_dir, gpu=GpuStatus(available=False, reason="no NVIDIA driver"))
    assert [f.severity for f in none.findings if f.code == "gpu-unknown"] == ["note"]
    assert "no NVIDIA driver" in next(f.message for f in none.findings if f.code == "gpu-unknown")
    tight = run_check(CLEAN, card_dir, disk_usage=lambda _p: Usage(10**9, 0, 10**9))
    assert "disk-space" in tight.codes("error")
    assert tight.facts["disk_needed_bytes"] == 6 * estimate.lora_file_bytes(64, text_encoders=False)


def test_checkpoint_size_matches_the_real_run() -> None:
    # the real run's dim-4 U-Net-only fp16 file: 21,585,180 bytes
    assert estimate.lora_file_bytes(4, text_encoders=False) == 21_585_180
    # dim 64 with both text encoders is ~456 MB (the card's "~190 MB" is low)
    assert 450e6 < estimate.lora_file_bytes(64) < 460e6
    assert estimate.saved_epochs(12, 2) == [2, 4, 6, 8, 10]


def test_split_command_drops_shell_redirections() -> None:
    prefix, script, opts = split_command(
        ["nohup", "conda", "run", "-n", "kohya_ss", "python", "train_network.py", "--seed", "1", ">", "log", "2>&1", "&"]
    )
    assert prefix == ["nohup", "conda", "run", "-n", "kohya_ss", "python"]
    assert script == "train_network.py" and opts == ["--seed", "1"]


_FAKE_TRAINER = """
import argparse
p = argparse.ArgumentParser()
for name in ("--pretrained_model_name_or_path", "--dataset_config", "--output_dir", "--network_module",
             "--optimizer_type", "--config_file"):
    p.add_argument(name)
p.add_argument("--network_dim", type=int)
p.add_argument("--max_train_epochs", type=int)
p.add_argument("--gradient_checkpointing", action="store_true")
p.add_argument("--sdpa", action="store_true")
p.parse_args()
"""


def test_check_launch_uses_the_checkouts_own_options(card_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxl_tui.formats.launch_config import LaunchConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(card_dir / "cache"))
    sd = card_dir / "sd-scripts"
    sd.mkdir()
    # the trainer runs in the checkout: relative image folders would resolve there
    ds = card_dir / "ds.toml"
    ds.write_text(ds.read_text().replace('"train/10_luca"', f'"{card_dir / "train" / "10_luca"}"'))
    (sd / "sdxl_train_network.py").write_text(_FAKE_TRAINER)
    launch = LaunchConfig(
        prefix=(sys.executable,),
        output_dir=str(card_dir / "out"),
        sd_scripts_dir=str(sd),
        args={"pretrained_model_name_or_path": str(card_dir / "sd_xl_base_1.0.safetensors"),
              "dataset_config": str(card_dir / "ds.toml"), "network_module": "networks.lora",
              "network_dim": 8, "max_train_epochs": 2, "gradient_checkpointing": True, "sdpa": True,
              "clip_skip": 2},
    )
    report = check_launch(launch, environment=ALL_MODULES, gpu=GPU_24, disk_usage=BIG_DISK)
    assert report.facts["options_source"].startswith("sdxl_train_network.py --help")
    # clip_skip exists in v0.10.1 but not in this checkout: the checkout's list wins
    assert [(f.code, f.subject) for f in report.errors] == [("unknown-option", "--clip_skip")]
    broken = LaunchConfig(prefix=(sys.executable,), output_dir=str(card_dir / "out"),
                          sd_scripts_dir=str(card_dir / "nope"), args=dict(launch.args))
    report = check_launch(broken, environment=ALL_MODULES, gpu=GPU_24, disk_usage=BIG_DISK)
    assert "script-missing" in report.codes("error")


def test_cli_check_raw_command_and_exit_codes(card_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.cli import main

    rc = main(["check", "--no-env", "--no-gpu", "--cwd", str(card_dir), "--", *CARD, *SUGGESTED])
    out = capsys.readouterr().out
    assert rc == 2
    for code in ("wrong-script", "unknown-option", "clip-skip-sdxl", "fp16-vae", "bucket-without-bucketing"):
        assert f"[{code}]" in out
    rc = main(["check", "--no-env", "--gpu-free", "20", "--json", "--cwd", str(card_dir), "--", *CLEAN])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["exit_code"] == 0 and data["facts"]["gpu_free_gb"] == 20.0
    assert main(["check", str(card_dir / "nothing-here")]) == 2


def test_simulated_trainer_launch_checks_options_only(tmp_path: Path) -> None:
    from sdxl_tui.formats.launch_config import LaunchConfig

    sim = LaunchConfig(prefix=(sys.executable, "-m", "sdxl_tui", "simulate"), script="", output_dir=str(tmp_path),
                       args={"network_dim": 4, "max_train_epochs": 2, "pretrained_model_name_or_path": "nowhere"})
    report = check_launch(sim, gpu=False)
    assert triples(report) == {("note", "simulated-trainer", None)} and report.exit_code == 0
    bad = LaunchConfig(prefix=sim.prefix, script="", output_dir=str(tmp_path), args={"batch_size": 2})
    assert check_launch(bad, gpu=False).codes("error") == ["unknown-option"]




def test_the_real_runs_command_checks_without_errors(tmp_path: Path, real_inputs: Path) -> None:
    """cmd.txt ran to completion with the unmodified trainer: no error may be reported for it."""
    line = (real_inputs / "cmd.txt").read_text().splitlines()
    cmd = next(text for text in line if text.startswith("nohup"))
    out = tmp_path / "run"
    tokens = cmd.replace("$OUT", str(out)).split()
    base = write_safetensors(tmp_path / "sdxl_random_base.safetensors", SDXL_KEYS)
    ds = tmp_path / "dataset.toml"
    ds.write_text((real_inputs / "dataset.toml").read_text().replace("/tmp/data/img", str(real_inputs / "dataset-images")))
    tokens = [str(base) if t == "/tmp/models/sdxl_random_base.safetensors" else str(ds) if t == "/tmp/runs/dataset.toml"
              else t for t in tokens]
    report = run_check(tokens, tmp_path)
    assert report.errors == (), format_report(report)
    # it trained at 128 px on purpose (a CPU run): that is the one thing that is "not as meant" for SDXL
    assert report.codes("warning") == ["dataset-resolution"]
    # 6 images, batch 1, accumulation 2 -> 3 steps per epoch x 3 epochs = 9 (ss_max_train_steps = 9)
    assert report.facts["steps_per_epoch"] == 3 and report.facts["total_steps"] == 9
    # the real files: 3 x 21,585,180 bytes (dim 4, U-Net only, fp16)
    assert report.facts["checkpoint_bytes"] == 21_585_180 and report.facts["checkpoint_files"] == 3


def test_v2_flag_on_sdxl(card_dir: Path) -> None:
    assert run_check([*CLEAN, "--v2"], card_dir).codes("error") == ["v2-sdxl"]


def test_cli_check_dataset_toml_alone(card_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.cli import main

    assert main(["check", str(card_dir / "ds.toml")]) == 0
    capsys.readouterr()
    (card_dir / "bad.toml").write_text("[[datasets]]\nresolution = 512\nbatch_szie = 2\n"
                                       "[[datasets.subsets]]\nimage_dir = \"train/10_luca\"\n")
    assert main(["check", str(card_dir / "bad.toml")]) == 2
    out = capsys.readouterr().out
    assert "[dataset-key-rejected]" in out and "batch_size" in out and "[dataset-resolution]" in out


def test_modules_each_optimizer_needs() -> None:
    from sdxl_tui.planning.check import _required_modules

    assert set(_required_modules({"optimizer_type": "AdamW8bit", "xformers": True})) == {"bitsandbytes", "xformers"}
    assert set(_required_modules({"optimizer_type": "prodigyplus.ProdigyPlusScheduleFree"})) == {"prodigyplus"}
    assert set(_required_modules({"optimizer_type": "DAdaptAdam", "logging_dir": "logs"})) == {"dadaptation",
                                                                                              "tensorboard"}
    assert set(_required_modules({"optimizer_type": "AdamW", "sdpa": True})) == set()


def test_simulator_launch_accepts_its_own_sim_options(tmp_path: Path) -> None:
    """A launch that runs sdxl-tui's simulator may carry --sim-* knobs (tests, demos):
    they are the simulator's, not unknown trainer options; a typo among the trainer's
    options is still caught."""

    base = [sys.executable, "-m", "sdxl_tui", "simulate", "--output_dir", str(tmp_path)]
    clean = check_argv([*base, "--max_train_epochs", "2", "--sim-step-seconds", "0.1",
                        "--sim-fault", "oom", "--sim-real-size"], gpu=False)
    assert clean.exit_code == 0, [(f.code, f.message) for f in clean.findings]
    assert any(f.code == "simulated-trainer" for f in clean.findings)
    typo = check_argv([*base, "--sim-step-seconds", "0.1", "--lowvram"], gpu=False)
    assert typo.exit_code == 2
    assert [f.subject for f in typo.findings if f.code == "unknown-option"] == ["--lowvram"]
    bad = check_argv([*base, "--sim-fault", "bogus"], gpu=False)
    assert bad.exit_code == 2 and any(f.code == "bad-value" for f in bad.findings)
