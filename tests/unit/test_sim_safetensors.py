"""safetensors files of the simulator vs the real run: header layout, tensor names and shapes,
metadata key set and value formats (read with the independent header parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sdxl_tui.sim import run_simulated
from tests.oracles import (
    LORA_TENSOR_RE,
    check_safetensors_layout,
    read_safetensors_header,
    real_dataset_config,
    real_launch_args,
)

FAST = ["--sim-step-seconds", "0", "--sim-startup-seconds", "0"]
FLOAT = re.compile(r"^-?\d+\.\d+(?:e-?\d+)?$")


@pytest.fixture(scope="module")
def real_shape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("st")
    out = tmp / "out"
    assert run_simulated(out, real_launch_args(out, real_dataset_config(tmp)) + FAST) == 0
    return out


def test_same_files_as_real_run(real_shape: Path, real_run: Path) -> None:
    names = sorted(p.name for p in real_shape.glob("*.safetensors"))
    assert names == sorted(p.name for p in real_run.glob("*.safetensors"))


def test_header_layout_and_tensors_equal_real_in_names(real_shape: Path, real_run: Path) -> None:
    real = read_safetensors_header(real_run / "tiny_lora.safetensors")
    for f in real_shape.glob("*.safetensors"):
        h = read_safetensors_header(f)
        check_safetensors_layout(h)
        assert list(h.tensors) == list(real.tensors)
        assert all(LORA_TENSOR_RE.match(k) for k in h.tensors)
        assert {t["dtype"] for t in h.tensors.values()} == {"F16"}
        for name, t in h.tensors.items():
            rt = real.tensors[name]["shape"]
            assert len(t["shape"]) == len(rt)
            if name.endswith("lora_down.weight"):
                assert t["shape"][0] == rt[0] == 4  # rank is real; features are scaled down
            if name.endswith("lora_up.weight"):
                assert t["shape"][1] == rt[1] == 4


def test_real_size_option_gives_real_shapes_and_header_length(tmp_path: Path, real_run: Path) -> None:
    out = tmp_path / "out"
    args = real_launch_args(out, real_dataset_config(tmp_path)) + FAST + ["--sim-real-size", "--max_train_epochs", "1"]
    assert run_simulated(out, args) == 0
    h = read_safetensors_header(out / "tiny_lora.safetensors")
    real = read_safetensors_header(real_run / "tiny_lora.safetensors")
    check_safetensors_layout(h)
    assert {k: v["shape"] for k, v in h.tensors.items()} == {k: v["shape"] for k, v in real.tensors.items()}
    assert h.file_size - 8 - h.length == real.file_size - 8 - real.length  # same tensor bytes


def test_metadata_keys_equal_real(real_shape: Path, real_run: Path) -> None:
    real = read_safetensors_header(real_run / "tiny_lora.safetensors").metadata
    assert len(real) == 80
    for f in real_shape.glob("*.safetensors"):
        md = read_safetensors_header(f).metadata
        assert set(md) == set(real), set(md) ^ set(real)


def test_metadata_values_formatted_like_real(real_shape: Path, real_run: Path) -> None:
    real = read_safetensors_header(real_run / "tiny_lora.safetensors").metadata
    md = read_safetensors_header(real_shape / "tiny_lora.safetensors").metadata
    same = [
        "ss_base_model_version", "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_optimizer",
        "ss_lr_scheduler", "ss_learning_rate", "ss_unet_lr", "ss_text_encoder_lr", "ss_mixed_precision",
        "ss_num_epochs", "ss_num_batches_per_epoch", "ss_max_train_steps", "ss_steps", "ss_epoch", "ss_seed",
        "ss_gradient_accumulation_steps", "ss_cache_latents", "ss_clip_skip", "modelspec.architecture",
        "modelspec.implementation", "modelspec.implementation_version", "modelspec.resolution",
        "modelspec.sai_model_spec", "modelspec.title", "modelspec.prediction_type", "ss_sd_scripts_commit_hash",
        "ss_num_train_images", "ss_sd_model_name", "ss_huber_schedule", "ss_loss_type", "ss_v2",
    ]
    for key in same:
        assert md[key] == real[key], key
    assert md["ss_base_model_version"] == "sdxl_base_v1-0"
    assert FLOAT.match(md["ss_training_started_at"]) and FLOAT.match(md["ss_training_finished_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", md["modelspec.date"])
    assert re.fullmatch(r"[0-9a-f]{64}", md["sshs_model_hash"]) and re.fullmatch(r"[0-9a-f]{8}", md["sshs_legacy_hash"])
    assert re.fullmatch(r"[0-9a-f]{8}", md["ss_sd_model_hash"]) and re.fullmatch(r"[0-9a-f]{64}", md["ss_new_sd_model_hash"])
    assert re.fullmatch(r"\d+", md["ss_session_id"])
    # JSON values: same structure as the real ones (only the directory basename differs)
    ds, rds = json.loads(md["ss_datasets"]), json.loads(real["ss_datasets"])
    assert ds[0].keys() == rds[0].keys() and ds[0]["subsets"][0].keys() == rds[0]["subsets"][0].keys()
    assert ds[0]["bucket_info"] == rds[0]["bucket_info"]
    assert list(json.loads(md["ss_tag_frequency"]).values()) == list(json.loads(real["ss_tag_frequency"]).values())
    assert list(json.loads(md["ss_dataset_dirs"]).values()) == list(json.loads(real["ss_dataset_dirs"]).values())


def test_epoch_steps_and_started_at_across_saves(real_shape: Path, real_run: Path) -> None:
    got = {}
    for f in sorted(real_shape.glob("*.safetensors")):
        md = read_safetensors_header(f).metadata
        got[f.name] = (md["ss_epoch"], md["ss_steps"], md["ss_training_started_at"])
    real = {}
    for f in sorted(real_run.glob("*.safetensors")):
        md = read_safetensors_header(f).metadata
        real[f.name] = (md["ss_epoch"], md["ss_steps"])
    assert {k: v[:2] for k, v in got.items()} == real == {
        "tiny_lora-000001.safetensors": ("1", "3"),
        "tiny_lora-000002.safetensors": ("2", "6"),
        "tiny_lora.safetensors": ("3", "9"),
    }
    assert len({v[2] for v in got.values()}) == 1


def test_text_encoder_modules_and_options_in_metadata(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "--output_name", "luca", "--network_dim", "16", "--network_alpha", "8", "--text_encoder_lr", "2.01e-4",
        "--unet_lr", "3e-4", "--learning_rate", "3e-4", "--clip_skip", "2", "--network_args", "conv_dim=4",
        "--optimizer_type", "AdamW8bit", "--max_train_epochs", "1", "--sim-batches-per-epoch", "2", *FAST,
    ]
    assert run_simulated(out, args) == 0
    h = read_safetensors_header(out / "luca.safetensors")
    check_safetensors_layout(h)
    mods = {k.split(".")[0] for k in h.tensors}
    assert sum(m.startswith("lora_unet_") for m in mods) == 722
    assert sum(m.startswith("lora_te1_") for m in mods) == 72
    assert sum(m.startswith("lora_te2_") for m in mods) == 192
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in mods
    md = h.metadata
    assert md["ss_text_encoder_lr"] == "0.000201" and md["ss_unet_lr"] == "0.0003"
    assert md["ss_network_dim"] == "16" and md["ss_network_alpha"] == "8.0"
    assert md["ss_optimizer"] == "bitsandbytes.optim.adamw.AdamW8bit"
    assert md["ss_clip_skip"] == "2" and md["modelspec.encoder_layer"] == "2"
    assert json.loads(md["ss_network_args"]) == {"conv_dim": "4"}
    assert h.tensors["lora_unet_middle_block_1_proj_in.lora_down.weight"]["shape"][0] == 16


def test_file_is_written_in_place_not_renamed(tmp_path: Path) -> None:
    """A save takes time and the final path grows from a header to the full size."""
    import threading
    import time

    out = tmp_path / "out"
    args = ["--output_name", "slow", "--max_train_epochs", "1", "--sim-batches-per-epoch", "1",
            "--sim-step-seconds", "0.6", "--sim-startup-seconds", "0", "--sim-real-size", "--network_dim", "2"]
    sizes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        f = out / "slow.safetensors"
        while not done.is_set():
            if f.exists():
                sizes.append(f.stat().st_size)
            time.sleep(0.01)

    t = threading.Thread(target=watch)
    t.start()
    try:
        assert run_simulated(out, args) == 0
    finally:
        done.set()
        t.join()
    final = (out / "slow.safetensors").stat().st_size
    assert any(0 < s < final for s in sizes), "never saw a half-written file"


@pytest.mark.parametrize(("extra", "dtype"), [([], "F32"), (["--save_precision", "bf16"], "BF16"), (["--save_precision", "float"], "F32"), (["--full_fp16"], "F16")])
def test_tensor_dtype_follows_save_precision(tmp_path: Path, extra: list[str], dtype: str) -> None:
    out = tmp_path / "out"
    args = ["--max_train_epochs", "1", "--network_train_unet_only", "--sim-batches-per-epoch", "1", *extra, *FAST]
    assert run_simulated(out, args) == 0
    h = read_safetensors_header(out / "last.safetensors")
    check_safetensors_layout(h)
    assert {t["dtype"] for t in h.tensors.values()} == {dtype}


def test_ckpt_format_has_no_safetensors_header(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--output_name", "c", "--max_train_epochs", "2", "--save_every_n_epochs", "1", "--save_model_as", "ckpt",
            "--sim-batches-per-epoch", "1", *FAST]
    assert run_simulated(out, args) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "training.log") == ["c-000001.ckpt", "c.ckpt"]
    assert (out / "c.ckpt").read_bytes()[:4] == b"PK\x03\x04"
