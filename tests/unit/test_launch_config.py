"""Launch config TOML: loading, errors, argv construction, writing round trip."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sdxl_tui.formats.launch_config import (
    LaunchConfig,
    LaunchConfigError,
    args_from_argv,
    dumps_launch_config,
    find_launch_config,
    load_launch_config,
    write_launch_config,
)

# The seed card's command line, with its shell variables expanded (BEST_* values and
# $(echo "$BEST_LR * 0.67" | bc -l) = 0.000201), paths as the card abbreviates them.
CARD_ARGS = (
    "--dataset_config /home/me/configs/training/sdxl/luca_human_dataset_sdxl.toml "
    "--pretrained_model_name_or_path /home/me/models/sd_xl_base_1.0.safetensors "
    "--output_dir /mnt/data/ai_data/models/lora/luca/sdxl_v1 --output_name luca_sdxl_v1 "
    "--network_module networks.lora --network_dim 64 --network_alpha 32 "
    "--learning_rate 0.0003 --text_encoder_lr 0.000201 --unet_lr 0.0003 "
    "--max_train_epochs 12 --save_every_n_epochs 2 --save_model_as safetensors "
    "--save_precision fp16 --mixed_precision fp16 --gradient_checkpointing "
    "--gradient_accumulation_steps 2 --optimizer_type AdamW8bit "
    "--lr_scheduler cosine_with_restarts --lr_scheduler_num_cycles 3 --lr_warmup_steps 100 "
    "--logging_dir /mnt/data/ai_data/models/lora/luca/sdxl_v1/logs --log_with tensorboard --seed 42 --clip_skip 2 "
    "--cache_latents --cache_latents_to_disk --max_data_loader_n_workers 8 "
    "--persistent_data_loader_workers --xformers --max_token_length 225 "
    "--bucket_reso_steps 64 --bucket_no_upscale"
)

CARD_TOML = """\
[launch]
prefix = ["conda", "run", "-n", "kohya_ss", "python"]
sd_scripts_dir = "/home/me/sd-scripts"
script = "train_network.py"
output_dir = "/mnt/data/ai_data/models/lora/luca/sdxl_v1"

[args]
dataset_config = "/home/me/configs/training/sdxl/luca_human_dataset_sdxl.toml"
pretrained_model_name_or_path = "/home/me/models/sd_xl_base_1.0.safetensors"
output_name = "luca_sdxl_v1"
network_module = "networks.lora"
network_dim = 64
network_alpha = 32
learning_rate = 0.0003
text_encoder_lr = 0.000201
unet_lr = 0.0003
max_train_epochs = 12
save_every_n_epochs = 2
save_model_as = "safetensors"
save_precision = "fp16"
mixed_precision = "fp16"
gradient_checkpointing = true
gradient_accumulation_steps = 2
optimizer_type = "AdamW8bit"
lr_scheduler = "cosine_with_restarts"
lr_scheduler_num_cycles = 3
lr_warmup_steps = 100
logging_dir = "/mnt/data/ai_data/models/lora/luca/sdxl_v1/logs"
log_with = "tensorboard"
seed = 42
clip_skip = 2
cache_latents = true
cache_latents_to_disk = true
max_data_loader_n_workers = 8
persistent_data_loader_workers = true
xformers = true
max_token_length = 225
bucket_reso_steps = 64
bucket_no_upscale = true
"""


def _write(tmp_path: Path, text: str, name: str = "sdxl-tui.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_card_example_reproduces_the_card_command(tmp_path: Path) -> None:
    cfg = load_launch_config(_write(tmp_path, CARD_TOML))
    argv = cfg.argv()
    assert argv[:6] == ["conda", "run", "-n", "kohya_ss", "python", "train_network.py"]
    assert cfg.cwd == "/home/me/sd-scripts"
    # Same options and values as the card; --output_dir moves to the end.
    def pairs(tokens: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        key = ""
        for t in tokens:
            if t.startswith("--"):
                key = t
                out[key] = []
            else:
                out[key].append(t)
        return out

    assert pairs(argv[6:]) == pairs(shlex.split(CARD_ARGS))
    assert argv[-2:] == ["--output_dir", "/mnt/data/ai_data/models/lora/luca/sdxl_v1"]


def test_bools_lists_numbers_and_config_file(tmp_path: Path) -> None:
    (tmp_path / "cfg.toml").write_text("x = 1\n")
    cfg = load_launch_config(_write(tmp_path, """
[launch]
prefix = ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
sd_scripts_dir = "sd"
config_file = "cfg.toml"
output_dir = "."
env = { PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True", N = 3 }
[args]
gradient_checkpointing = true
no_half_vae = false
text_encoder_lr = [0.000201, 0.0001]
network_alpha = 32.0
"""))
    assert cfg.output_dir == str(tmp_path)
    assert cfg.sd_scripts_dir == str(tmp_path / "sd")
    assert cfg.script == "sdxl_train_network.py"  # default
    assert cfg.argv() == [
        "accelerate", "launch", "--num_cpu_threads_per_process", "1", "sdxl_train_network.py",
        "--config_file", str(tmp_path / "cfg.toml"),
        "--gradient_checkpointing", "--text_encoder_lr", "0.000201", "0.0001", "--network_alpha", "32.0",
        "--output_dir", str(tmp_path),
    ]
    assert dict(cfg.env) == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "N": "3"}
    assert cfg.log_path == str(tmp_path / "training.log")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[launch\n", "not valid TOML"),
        ("x = 1\n", "missing [launch]"),
        ('[launch]\nprefix = ["python"]\n', "output_dir is required"),
        ('[launch]\nprefix = "conda run python"\noutput_dir = "o"\n', "argv list"),
        ('[launch]\nprefix = []\noutput_dir = "o"\n', "non-empty list"),
        ('[launch]\nprefix = ["p"]\noutput_dir = "o"\nscirpt = "x.py"\n', "unknown key(s) in [launch]: scirpt"),
        ('[launch]\nprefix = ["p"]\noutput_dir = "o"\n[args]\nx = { a = 1 }\n', "[args] x must be a value"),
        ('[launch]\nprefix = ["p"]\noutput_dir = "o"\n[args]\noutput_dir = "other"\n', "differs"),
        ('[launch]\nprefix = ["p"]\noutput_dir = "o"\nenv = ["A"]\n', "env must be a table"),
    ],
)
def test_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(LaunchConfigError) as err:
        load_launch_config(path)
    assert message in str(err.value)
    assert "sdxl-tui.toml" in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LaunchConfigError, match="not found: .*nope.toml"):
        load_launch_config(tmp_path / "nope.toml")


def test_find_launch_config(tmp_path: Path) -> None:
    assert find_launch_config(tmp_path) is None
    p = _write(tmp_path, "x")
    assert find_launch_config(tmp_path) == p
    assert find_launch_config(tmp_path, "other.toml") == Path("other.toml")


def test_write_round_trip(tmp_path: Path) -> None:
    cfg = LaunchConfig(
        prefix=("conda", "run", "--no-capture-output", "-n", "kohya ss", "python"),
        output_dir="/out/dir \"quoted\"",
        sd_scripts_dir="/home/me/sd-scripts",
        script="sdxl_train_network.py",
        config_file="/c/luca.toml",
        args={"network_dim": 64, "learning_rate": 0.0003, "unet_lr": 1e-05, "network_alpha": 32.0,
              "gradient_checkpointing": True, "no_half_vae": False, "text_encoder_lr": (0.000201,),
              "output_name": "luca\tv1\\x", "caption_prefix": "ünïcode ✓"},
        env={"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
    )
    path = write_launch_config(cfg, tmp_path / "sub" / "sdxl-tui.toml", comment="written by a test\nline 2")
    back = load_launch_config(path)
    assert back == cfg
    assert back.argv() == cfg.argv()
    assert dumps_launch_config(back).startswith("[launch]")


def test_args_from_argv_round_trip(tmp_path: Path) -> None:
    tokens = shlex.split(CARD_ARGS)
    args = args_from_argv(tokens)
    assert args["gradient_checkpointing"] is True
    assert args["network_dim"] == 64
    assert args["text_encoder_lr"] == 0.000201
    out = args.pop("output_dir")
    cfg = LaunchConfig(prefix=("python",), script="train_network.py", output_dir=out, args=args)
    back = load_launch_config(write_launch_config(cfg, tmp_path / "x.toml"))
    assert back.argv() == cfg.argv()
