"""The built-in evaluator on SD1.5: a tiny SD1.5-architecture pipeline built here (no
downloads), a LoRA with sd-scripts' SD1 key names (lora_unet_*, lora_te_*), rendered at the
SD1.5 default resolution's small stand-in; and the family checks that need no torch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

if os.environ.get("CI"):
    import diffusers  # noqa: F401
else:
    pytest.importorskip("diffusers", reason="the [eval] extra is not installed")
    pytest.importorskip("peft", reason="the [eval] extra is not installed")

from tests.unit.test_evaluator_builtin import _env, _pixels, tiny_clip_tokenizer, write_kohya_lora

#: sd-scripts SD1 LoRA names (diffusers-style U-Net paths; one CLIP-L text encoder: lora_te_)
SD15_MODULES = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (32, 32),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (32, 32),
    "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out_0": (32, 32),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (32, 32),
    "lora_te_text_model_encoder_layers_1_mlp_fc1": (32, 37),
}


def build_tiny_sd15(folder: Path) -> None:
    """A tiny SD1.5 pipeline (CLIP-L-like text encoder of width 32, 2 U-Net levels)."""

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok_dir = folder.parent / "tokenizer_sd15"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, n = tiny_clip_tokenizer(tok_dir)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, sample_size=32,
    )
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=n, hidden_act="gelu"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))


def write_sd15_lora(path: Path) -> None:
    write_kohya_lora(path, SD15_MODULES)
    # the metadata sd-scripts' train_network.py writes for an SD1.5 base
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"ss_base_model_version": "sd_v1",
                                                         "ss_network_module": "networks.lora"})


@pytest.fixture(scope="module")
def tiny15(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("tiny_sd15")
    build_tiny_sd15(root / "base15")
    trial = root / "trial_0025"
    trial.mkdir()
    write_sd15_lora(trial / "lora_trial_25.safetensors")
    yield {"root": root, "base": root / "base15", "lora": trial / "lora_trial_25.safetensors"}


def test_sd15_lora_on_an_sd15_base(tiny15: dict[str, Path]) -> None:
    import json
    import subprocess
    import sys

    import numpy as np

    out = tiny15["root"] / "eval15"
    # its own process, as `sdxl-tui eval` runs it (torch's threads stay out of this test process)
    done = subprocess.run(
        [sys.executable, "-m", "sdxl_tui.evaluator", "--checkpoint", str(tiny15["lora"]), "--base-model",
         str(tiny15["base"]), "--output-dir", str(out), "--num-samples", "1", "--device", "cpu", "--resolution", "64",
         "--steps", "2", "--with-base"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env(), timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arch"] == "sd15" and manifest["status"] == "done"
    a, base = _pixels(out / "00_42.png"), _pixels(out / "base_00_42.png")
    assert a.shape == (64, 64, 3) and np.abs(a - base).mean() > 0.01  # the LoRA was applied


def test_family_mismatch_is_one_line(tiny15: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.evaluator import main

    sdxl_folder = tmp_path / "sdxl_base"
    sdxl_folder.mkdir()
    (sdxl_folder / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    rc = main(["--checkpoint", str(tiny15["lora"]), "--base-model", str(sdxl_folder), "--output-dir",
               str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "an SD1.5 LoRA but the base model" in err and "Traceback" not in err
    rc = main(["--checkpoint", str(tiny15["lora"]), "--base-model", str(tiny15["base"]), "--arch", "sdxl",
               "--output-dir", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 2 and "is an SD1.5 LoRA, not an SDXL" in capsys.readouterr().err
