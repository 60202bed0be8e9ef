"""The simulator's Python API: command module weight, demo arguments, bulk generator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdxl_tui.sim import demo_args, simulate_command
from sdxl_tui.sim.options import parse_trainer_args, split_args
from tests.oracles import (
    check_safetensors_layout,
    read_events,
    read_safetensors_header,
    record_messages,
)


def test_command_module_imports_light() -> None:
    code = "import sys, sdxl_tui.commands.simulate as m; assert callable(m.run); print(sorted(k for k in ('rich', 'sdxl_tui.sim.trainer', 'tensorboard', 'textual') if k in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_demo_args_are_a_valid_real_launch(tmp_path: Path) -> None:
    args = demo_args(tmp_path / "run")
    sim, rest = split_args(args)
    ns = parse_trainer_args(rest)  # the real option table accepts every trainer option
    assert ns.network_dim == 64 and ns.network_alpha == 32.0 and ns.unet_lr == 3e-4
    assert ns.text_encoder_lr == [0.000201] and ns.gradient_accumulation_steps == 2
    assert ns.max_train_epochs == 12 and ns.save_every_n_epochs == 2
    assert ns.lr_scheduler == "cosine_with_restarts" and ns.logging_dir == str(tmp_path / "run" / "logs")
    assert Path(ns.dataset_config).exists() and Path(ns.sample_prompts).exists()
    # paced for a 3-5 minute demo: 600 optimizer steps at the simulated step time
    assert 150 <= 600 * sim.step_seconds + sim.startup_seconds <= 300
    assert simulate_command(tmp_path / "run", args).count("--output_dir") == 1


@pytest.mark.slow
def test_generate_big_run_small(tmp_path: Path) -> None:
    from sdxl_tui.sim.bulk import generate_big_run

    run = tmp_path / "big"
    generate_big_run(run, log_bytes=3_000_000, scalars=4_000, checkpoints=4)
    names = sorted(p.name for p in run.glob("*.safetensors"))
    assert names == ["big_lora-000001.safetensors", "big_lora-000002.safetensors", "big_lora-000003.safetensors", "big_lora.safetensors"]
    for n in names:
        check_safetensors_layout(read_safetensors_header(run / n))
    ev = sorted(run.glob("logs/*/network_train/events.out.tfevents.*"))
    assert len(ev) == 1
    n_scalars = sum(len(e.scalars) for e in read_events(ev[0]))
    assert 3_500 <= n_scalars <= 4_500
    data = (run / "training.log").read_bytes()
    assert len(data) >= 3_000_000
    assert data.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(b"\rsteps: 100%")
    assert any(m == "model saved." for m in record_messages(data[-5000:]))
    # times advance like a long night, not like the machine that generated it
    times = re.findall(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ", data, re.MULTILINE)
    assert len(set(times)) > 3


def test_cli_hands_every_token_to_the_simulator() -> None:
    from sdxl_tui.cli import build_parser

    argv = ["--output_dir", "/x", "--network_dim", "8", "--batch_size", "2", "--sim-step-seconds", "0", "positional"]
    ns = build_parser().parse_args(["simulate", *argv])
    assert ns.trainer_args == argv
    assert ns._module == "sdxl_tui.commands.simulate"
