"""The built-in evaluator end to end on the CPU, against a tiny randomly initialised
SDXL-architecture pipeline built here (no downloads), with a LoRA in kohya key format.

Slow (about 30-40 s on 2 cores: two evaluator processes of ~12 s each, mostly imports), and
it still runs in CI, which installs the ``[eval]`` extra with an explicit CPU torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.proctools import Procs

pytestmark = pytest.mark.slow

if os.environ.get("CI"):
    import diffusers  # noqa: F401  (CI installs the extra: a missing stack must fail, not skip)
else:
    pytest.importorskip("diffusers", reason="the [eval] extra is not installed")
    pytest.importorskip("peft", reason="the [eval] extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
TAGS = {"5_luca": {"luca": 40, "3d render": 31, "boy": 7, "smile": 2}}


def _byte_chars() -> list[str]:
    """The 256 byte-level characters of a GPT-2/CLIP BPE vocabulary."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(256 - len(printable))]


def tiny_clip_tokenizer(tok_dir: Path) -> tuple[Any, int]:
    """A byte-level CLIP tokenizer written into ``tok_dir`` (no merges), and its vocabulary size."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for c in _byte_chars():
        vocab.setdefault(c, len(vocab))
    for c in _byte_chars():
        vocab.setdefault(c + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77), len(vocab)


def build_tiny_sdxl(folder: Path) -> None:
    """A tiny SDXL pipeline (2 UNet levels, blocks (32, 64), 2 layers per block, text_time
    addition embedding, cross-attention width = 32 + 32 of the two text encoders), saved
    as a diffusers folder. Weights are random but seeded."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    torch.manual_seed(0)
    tok_dir = folder.parent / "tokenizer_src"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, n = tiny_clip_tokenizer(tok_dir)

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=8 * 6 + 32, cross_attention_dim=64, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, sample_size=32,
    )

    def text_config() -> CLIPTextConfig:
        return CLIPTextConfig(
            bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1, hidden_size=32, intermediate_size=37,
            layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, vocab_size=n, hidden_act="gelu",
            projection_dim=32,
        )

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config()), text_encoder_2=CLIPTextModelWithProjection(text_config()),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(str(folder))


#: kohya (sd-scripts SDXL) module names that exist in the tiny UNet / text encoders -> (in, out)
KOHYA_MODULES = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (64, 64),
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": (64, 64),
    "lora_unet_input_blocks_5_1_proj_in": (64, 64),
    "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_v": (64, 64),
    "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0": (64, 64),
    "lora_unet_output_blocks_1_1_transformer_blocks_0_ff_net_2": (256, 64),
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": (32, 32),
    "lora_te1_text_model_encoder_layers_0_self_attn_out_proj": (32, 32),
    "lora_te2_text_model_encoder_layers_1_self_attn_out_proj": (32, 32),
    "lora_te2_text_model_encoder_layers_1_mlp_fc1": (32, 37),
}


def write_kohya_lora(path: Path, modules: dict[str, tuple[int, int]], *, seed: int = 1) -> None:
    """A LoRA as sd-scripts saves it: lora_down/lora_up/alpha per module, non-zero lora_up
    (kohya initialises up to zeros, which would change nothing), SDXL metadata."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    rank = 4
    state = {}
    for name, (fan_in, fan_out) in modules.items():
        state[f"{name}.lora_down.weight"] = torch.randn(rank, fan_in, generator=g) * 0.5
        state[f"{name}.lora_up.weight"] = torch.randn(fan_out, rank, generator=g) * 0.5
        state[f"{name}.alpha"] = torch.tensor(float(rank))
    save_file(state, str(path), metadata={
        "ss_base_model_version": "sdxl_base_v1-0", "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank), "ss_network_alpha": str(float(rank)), "ss_epoch": "8",
        "ss_tag_frequency": json.dumps(TAGS),
    })


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("tiny_sdxl")
    base = root / "base"
    build_tiny_sdxl(base)
    run = root / "sdxl_v1"
    run.mkdir()
    lora = run / "luca_sdxl_v1-000008.safetensors"
    write_kohya_lora(lora, KOHYA_MODULES)
    bad = root / "other_arch.safetensors"
    write_kohya_lora(bad, {**KOHYA_MODULES, "lora_unet_input_blocks_7_1_transformer_blocks_0_attn1_to_q": (64, 64)})
    yield {"root": root, "base": base, "run": run, "lora": lora, "bad": bad}


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Processes of this test, ended by PID afterwards: ours, and the evaluation runner and
    evaluation processes named by the watched run directories' status files."""
    import psutil

    p = Procs()
    try:
        yield p
    finally:
        for d in p.run_dirs:
            folder = d / ".sdxl-tui" / "evals"
            for f in [*folder.glob("*.json"), folder / "runner.info"]:
                try:
                    data = json.loads(f.read_text())
                    proc = psutil.Process(int(data["pid"]))
                    if abs(proc.create_time() - float(data["create_time"])) < 0.05:
                        proc.kill()
                except (OSError, ValueError, KeyError, TypeError, psutil.Error):
                    continue
        p.cleanup()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT / "src"))
    return env


def _pixels(path: Path) -> object:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_builtin_evaluator_end_to_end(tiny: dict[str, Path], procs: Procs) -> None:
    import numpy as np

    out = tiny["root"] / "eval_direct"
    argv = [sys.executable, "-m", "sdxl_tui.evaluator", "--checkpoint", str(tiny["lora"]),
            "--base-model", str(tiny["base"]), "--output-dir", str(out), "--num-samples", "2",
            "--device", "cpu", "--resolution", "64", "--steps", "2", "--with-base"]
    proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), new_session=False)
    output, _ = proc.communicate(timeout=240)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text

    names = sorted(p.name for p in out.iterdir())
    for expected in ("00_42.png", "01_43.png", "contact_sheet.png", "manifest.json", "base_00_42.png"):
        assert expected in names, names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["checkpoint"] == str(tiny["lora"])
    assert manifest["base_model"] == str(tiny["base"])
    assert manifest["resolution"] == [64, 64] and manifest["device"] == "cpu"
    assert manifest["prompts_source"] == "lora tags"
    assert [(p["seed"], p["steps"], p["guidance"], p["file"]) for p in manifest["prompts"]] == [
        (42, 2, 7.0, "00_42.png"), (43, 2, 7.0, "01_43.png")]
    assert manifest["prompts"][0]["prompt"].startswith("luca, 3d render")  # from ss_tag_frequency
    assert all(p["seconds"] > 0 for p in manifest["prompts"])
    for key in ("torch", "diffusers", "transformers", "peft"):
        assert manifest["versions"][key] != "not installed"

    a = _pixels(out / "00_42.png")
    assert a.shape == (64, 64, 3) and a.std() > 0.01  # a real picture, not a flat fill
    base = _pixels(out / "base_00_42.png")
    assert np.abs(a - base).mean() > 0.01, "the LoRA must change the image against the base alone"
    from PIL import Image

    assert Image.open(out / "contact_sheet.png").size[0] >= 2 * 64

    # The same evaluation through `sdxl-tui eval --builtin --wait` (detached runner, status
    # file): the same seed reproduces the same image exactly.
    from sdxl_tui.cli import main
    from sdxl_tui.control import evaluate as ev

    procs.watch_dir(tiny["run"])
    old = os.environ.copy()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        rc = main(["eval", str(tiny["run"]), "8", "--builtin", "--base-model", str(tiny["base"]),
                   "--num-samples", "1", "--device", "cpu", "--resolution", "64", "--steps", "2", "--wait"])
    finally:
        os.environ.clear()
        os.environ.update(old)
    rec = ev.eval_record(tiny["run"], "luca_sdxl_v1-000008")
    assert rc == 0, rec
    assert rec.status == "done" and rec.output_dir == str(tiny["run"] / "eval_epoch8")
    again = _pixels(tiny["run"] / "eval_epoch8" / "00_42.png")
    assert np.array_equal(again, a)


def test_lora_for_another_model_is_one_clear_line(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.evaluator import main

    rc = main(["--checkpoint", str(tiny["bad"]), "--base-model", str(tiny["base"]), "--output-dir",
               str(tiny["root"] / "eval_bad"), "--num-samples", "1", "--device", "cpu", "--resolution", "64",
               "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not match the base model" in err and "Traceback" not in err
    assert not list((tiny["root"] / "eval_bad").glob("*.png"))


def test_clear_messages_without_torch_work(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from sdxl_tui.evaluator import main

    common = ["--output-dir", str(tiny["root"] / "e"), "--resolution", "64"]
    assert main(["--checkpoint", str(tiny["root"] / "missing.safetensors"), "--base-model", str(tiny["base"]), *common]) == 2
    assert "LoRA checkpoint not found" in capsys.readouterr().err
    assert main(["--checkpoint", str(tiny["lora"]), "--base-model", str(tiny["root"] / "sd_xl_base_1.0.safetensors"),
                 *common]) == 2
    assert "base model not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--checkpoint", str(tiny["lora"]), "--base-model", str(tiny["base"]), "--device", "cuda",
                     *common]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    # the extra missing: torch cannot be imported
    code = ("import sys; sys.modules['torch'] = None\n"
            "from sdxl_tui.evaluator import main\n"
            f"sys.exit(main(['--checkpoint', {str(tiny['lora'])!r}, '--base-model', {str(tiny['base'])!r},"
            f" '--output-dir', {str(tiny['root'] / 'e2')!r}, '--device', 'cpu']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          timeout=120, check=False)
    assert done.returncode == 2
    assert "pip install 'sdxl-tui[eval]'" in done.stderr and "Traceback" not in done.stderr


def test_single_file_base_offline_without_config_dir_says_what_to_do(tiny: dict[str, Path]) -> None:
    # A single-file base needs SDXL configs; offline and without --config-dir that is one line.
    single = tiny["root"] / "sd_xl_base_1.0.safetensors"
    write_kohya_lora(single, {"lora_unet_x": (4, 4)})  # any safetensors: it fails before the weights matter
    argv = [sys.executable, "-m", "sdxl_tui.evaluator", "--checkpoint", str(tiny["lora"]), "--base-model",
            str(single), "--output-dir", str(tiny["root"] / "e3"), "--device", "cpu", "--resolution", "64"]
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=240, check=False)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sdxl-tui evaluator: error:") and "--config-dir" in last
    assert "Traceback" not in done.stderr
