"""LogParser: segments -> LogFacts, on the real run's log and on hand-made REF-shaped logs."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from sdxl_tui.sources.logparse import LogParser
from sdxl_tui.sources.logtail import LogTail
from sdxl_tui.sources.tqdm import parse_interval, parse_tqdm

W = 80


def rec(msg_lines: list[str], src: str, *, level: str = "INFO", time: str | None = "2026-11-28 21:22:51") -> str:
    """A RichHandler record as rich renders it at width 80 (message lines pre-wrapped)."""
    t = time if time is not None else " " * 19
    col = W - 29 - len(src) - 1
    first = f"{t} {level:<8} {msg_lines[0]:<{col}} {src}"
    rest = [" " * 29 + f"{m:<{col}}" + " " * (len(src) + 1) for m in msg_lines[1:]]
    return "\n".join([first, *rest]) + "\n"


def feed_text(text: str, parser: LogParser | None = None, tmp: Path | None = None) -> LogParser:
    """Split like LogTail does (through a real file) and feed."""
    import tempfile

    p = LogParser() if parser is None else parser
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "training.log"
        f.write_bytes(text.encode())
        r = LogTail(f).read()
        p.feed(r.head_segments)
        p.feed(r.segments)
    return p


def bar(n: int, total: int, loss: str | None = "1.1", rate: str = "21.06s/it", elapsed: str = "01:24",
        remaining: str = "01:45", desc: str = "steps") -> str:
    pct = int(100 * n / total)
    post = f", avr_loss={loss}" if loss is not None else ""
    return f"\r{desc}: {pct:3d}%|█▌        | {n}/{total} [{elapsed}<{remaining}, {rate}{post}]"


# ---------------------------------------------------------------------------------------------
# tqdm meters
# ---------------------------------------------------------------------------------------------


def test_parse_tqdm_variants() -> None:
    b = parse_tqdm("steps:  44%|████▍     | 4/9 [01:24<01:45, 21.06s/it, avr_loss=1.1]")
    assert b is not None and (b.desc, b.n, b.total, b.elapsed, b.remaining) == ("steps", 4, 9, 84.0, 105.0)
    assert b.seconds_per_it == 21.06 and b.postfix == {"avr_loss": "1.1"}
    b = parse_tqdm("steps:   8%|▊         | 120/1500 [05:00<57:30,  2.50it/s, avr_loss=0.0923]")
    assert b is not None and b.seconds_per_it == pytest.approx(0.4)
    b = parse_tqdm("steps:   0%|          | 0/1500 [00:00<?, ?it/s]")
    assert b is not None and b.seconds_per_it is None and b.remaining is None and b.postfix == {}
    b = parse_tqdm("steps: 100%|██████████| 1500/1500 [1:02:00<00:00,  2.48s/it, avr_loss=nan]")
    assert b is not None and b.elapsed == 3720.0 and b.postfix["avr_loss"] == "nan"
    b = parse_tqdm(
        "steps:  50%|█████     | 3/6 [00:00<00:00, 28.32it/s, Average key norm=0.0312, Keys Scaled=0, avr_loss=0.095]"
    )
    assert b is not None and b.postfix == {"Average key norm": "0.0312", "Keys Scaled": "0", "avr_loss": "0.095"}
    b = parse_tqdm(" 17%|█▋        | 1/6 [00:01<00:05,  1.05s/it]")
    assert b is not None and b.desc == "" and b.n == 1
    assert parse_tqdm("epoch 1/3") is None and parse_tqdm("100% sure") is None
    assert parse_interval("26:01:02") == 93662.0 and parse_interval("?") is None


# ---------------------------------------------------------------------------------------------
# the real run
# ---------------------------------------------------------------------------------------------


def test_real_log_facts(real_run: Path) -> None:
    p = LogParser()
    p.feed(LogTail(real_run / "training.log").read().segments)
    f = p.facts
    assert (f.phase, f.epoch, f.epochs, f.step, f.total_steps) == ("finished", 3, 3, 9, 9)
    assert f.model_saved and f.traceback is None and f.oom is None and not f.mid_file
    assert f.tqdm_rate == 18.72 and f.tqdm_elapsed == 168.0
    assert f.avr_loss == 1.05 and f.avr_loss_count == 10
    assert [(q.step, q.value) for q in f.avr_loss_points] == [
        (0, 1.04), (1, 1.1), (2, 1.09), (3, 1.1), (4, 1.07), (5, 1.06), (6, 1.05), (7, 1.05), (8, 1.06), (9, 1.05)
    ]
    c = f.config
    assert (c.num_train_images, c.num_reg_images, c.num_batches_per_epoch, c.num_epochs) == (6, 0, 6, 3)
    assert (c.batch_size, c.gradient_accumulation_steps, c.total_steps) == (1, 2, 9)
    assert (c.network_dim, c.network_alpha, c.optimizer, c.attention) == (4, 2.0, "AdamW", "sdpa")
    assert (c.output_name, c.resolution, c.network_train_unet_only) == ("tiny_lora", "128x128", True)
    assert [(s.kind, s.path.rsplit("/", 1)[-1], s.step, s.epoch) for s in f.saves if s.path] == [
        ("checkpoint", "tiny_lora-000001.safetensors", 3, 1),
        ("checkpoint", "tiny_lora-000002.safetensors", 6, 2),
        ("checkpoint", "tiny_lora.safetensors", 9, 3),
    ]
    assert f.warnings == ("no regularization images / 正則化画像が見つかりませんでした",)
    texts = [ln.text for ln in f.lines]
    # wrapped records joined back: folded words directly, wrapped ones with a space
    assert "load tokenizer from cache: /tmp/tokcache/openai_clip-vit-large-patch14" in texts
    assert "load StableDiffusion checkpoint: /tmp/models/sdxl_random_base.safetensors" in texts
    assert "set image size from cache files: 0/6" in texts
    assert "bucket 1: resolution (128, 128), count: 4" in texts
    assert "number of images (including repeats) / 各bucketの画像枚数（繰り返し回数を含む）" in texts
    assert "    caption_dropout_every_n_epochs: 0" in texts and "    caption_tag_dropout_rate: 0.0" in texts
    # tqdm redraws collapsed: one display line per bar between other lines
    progress = [ln for ln in f.lines if ln.kind == "progress"]
    assert sum(1 for ln in progress if ln.text.startswith("steps:")) == 5
    assert progress[-1].text.startswith("steps: 100%|") and "18.72s/it" in progress[-1].text
    assert [ln.number for ln in f.lines] == list(range(f.line_count))
    assert sum(1 for ln in f.lines if ln.level == "WARNING") == 1


def test_real_log_fed_in_random_pieces_gives_the_same_facts(tmp_path: Path, real_run: Path) -> None:
    whole = LogParser()
    whole.feed(LogTail(real_run / "training.log").read().segments)
    data = (real_run / "training.log").read_bytes()
    p = tmp_path / "training.log"
    p.write_bytes(b"")
    tail = LogTail(p)
    parser = LogParser()
    rnd = random.Random(7)
    pos = 0
    phases = []
    while pos < len(data):
        # whole physical lines at a time, like rich and tqdm write them
        n = rnd.randint(1, 12)
        end = pos
        for _ in range(n):
            nxt = min([i for i in (data.find(b"\n", end), data.find(b"\r", end)) if i >= 0] or [len(data) - 1])
            end = nxt + 1
        with open(p, "ab") as fh:
            fh.write(data[pos:end])
        pos = end
        parser.feed(tail.read().segments)
        phases.append(parser.facts.phase)
    a, b = parser.facts, whole.facts
    assert (a.phase, a.step, a.epoch, a.avr_loss, a.config, a.saves) == (b.phase, b.step, b.epoch, b.avr_loss, b.config, b.saves)
    assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
    seen = [x for i, x in enumerate(phases) if x is not None and (i == 0 or phases[i - 1] != x)]
    assert seen[0] == "loading" and "caching" in seen and "training" in seen and "saving" in seen
    assert seen[-1] == "finished"


# ---------------------------------------------------------------------------------------------
# REF-shaped synthetic logs
# ---------------------------------------------------------------------------------------------


def test_ref_rendered_records_are_joined() -> None:
    text = (
        rec(["Loading dataset config from", "ds.toml"], "train_network.py:519")
        + rec(["clip_skip will be unexpected", "/", "SDXL学習ではclip_skipは動作", "しません"], "sdxl_train_util.py:352",
              level="WARNING", time=None)
        + rec(["save train state to", "/home/user/out/luca_sdxl_v1-00", "0002-state/train_state.json at", "epoch 2 step 301"],
              "train_network.py:946", time="2026-11-28 21:22:53")
        + rec(["model saved."], "train_network.py:1729", time="2026-11-28 21:22:55")
    )
    f = feed_text(text).facts
    texts = [ln.text for ln in f.lines]
    assert texts == [
        "Loading dataset config from ds.toml",
        "clip_skip will be unexpected / SDXL学習ではclip_skipは動作しません",
        "save train state to /home/user/out/luca_sdxl_v1-000002-state/train_state.json at epoch 2 step 301",
        "model saved.",
    ]
    assert f.warnings == ("clip_skip will be unexpected / SDXL学習ではclip_skipは動作しません",)
    assert [(s.kind, s.path, s.step, s.epoch) for s in f.saves] == [
        ("state", "/home/user/out/luca_sdxl_v1-000002-state", 301, 2)
    ]
    assert f.model_saved and f.phase == "finished" and f.last_record_time == "2026-11-28 21:22:55"


def _training_prelude(total: int = 9, epochs: int = 3) -> str:
    return (
        rec(["caching latents..."], "train_util.py:1170")
        + "\r  0%|          | 0/6 [00:00<?, ?it/s]\r 50%|█████     | 3/6 [00:01<00:01,  1.12it/s]"
        + "\r100%|██████████| 6/6 [00:05<00:00,  1.07it/s]\n"
        + f"override steps. steps for {epochs} epochs is / 指定エポックまでのステップ数: {total}\n"
        + "running training / 学習開始\n"
        + "  num train images * repeats / 学習画像の数×繰り返し回数: 300\n"
        + "  num reg images / 正則化画像の数: 0\n"
        + "  num batches per epoch / 1epochのバッチ数: 150\n"
        + f"  num epochs / epoch数: {epochs}\n"
        + "  batch size per device / バッチサイズ: 2, 2\n"
        + "  gradient accumulation steps / 勾配を合計するステップ数 = 1\n"
        + f"  total optimization steps / 学習ステップ数: {total}\n"
        + f"\rsteps:   0%|          | 0/{total} [00:00<?, ?it/s]\nepoch 1/{epochs}\n\n"
    )


def test_phases_sampling_saving_and_states() -> None:
    p = feed_text(_training_prelude(total=1500, epochs=10))
    assert p.facts.phase == "training" and p.facts.step == 0 and p.facts.epochs == 10
    assert p.facts.config.batch_size == 2 and p.facts.config.num_train_images == 300
    feed_text(bar(100, 1500, "0.1", "2.50s/it", "04:10", "58:20"), p)
    assert (p.facts.step, p.facts.tqdm_rate, p.facts.avr_loss) == (100, 2.5, 0.1)
    feed_text(rec([""], "train_util.py:5900") + rec(["generating sample images at step /", "サンプル画像生成 ステップ: 100"],
                                                  "train_util.py:5907", time=None)
              + rec(["prompt: a photo of luca"], "train_util.py:6000", time=None)
              + "\r 40%|████      | 12/30 [00:03<00:04,  4.20it/s]", p)
    assert p.facts.phase == "sampling" and p.facts.sample_step == 100
    feed_text(bar(150, 1500, "0.09") + "\nsaving checkpoint: /out/luca-000001.safetensors\n", p)
    assert p.facts.phase == "saving" and p.facts.saves[-1].path == "/out/luca-000001.safetensors"
    feed_text("removing old checkpoint: /out/luca-000000.safetensors\n" + rec([""], "train_network.py:1600")
              + rec(["saving state at epoch 1"], "train_network.py:1601", time=None), p)
    assert p.facts.saves[-1].kind == "removed" and p.facts.phase == "saving"
    feed_text(bar(151, 1500, "0.09"), p)
    assert p.facts.phase == "training" and p.facts.step == 151
    assert p.facts.config.output_name == "luca"


def test_record_written_right_after_an_open_bar_is_split_off() -> None:
    text = _training_prelude() + bar(3, 9, "1.09") + "2026-11-28 21:22:42 INFO     epoch is incremented.             train_util.py:784\n"
    f = feed_text(text).facts
    assert f.step == 3
    assert f.lines[-1].text == "epoch is incremented." and f.lines[-1].kind == "record"
    assert f.lines[-2].kind == "progress" and "3/9" in f.lines[-2].text


def test_nan_loss_first_step_and_nan_in_latents() -> None:
    text = _training_prelude() + bar(1, 9, "1.1") + bar(2, 9, "nan") + bar(3, 9, "nan") + "\nNaN found in latents, replacing with zeros\n"
    f = feed_text(text).facts
    assert f.first_nan_step == 2 and f.nan_step == 2 and math.isnan(f.avr_loss or 0.0)
    assert f.nan_in_latents
    assert any(math.isnan(q.value) for q in f.avr_loss_points)


CUDA_OOM = (
    "Traceback (most recent call last):\n"
    '  File "/sd-scripts/sdxl_train_network.py", line 229, in <module>\n'
    "    trainer.train(args)\n"
    '  File "/sd-scripts/train_network.py", line 1460, in train\n'
    "    accelerator.backward(loss)\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB. GPU 0 has a total capacity of 14.57 GiB of "
    "which 1.58 GiB is free. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.\n"
)


def test_cuda_oom_traceback() -> None:
    f = feed_text(_training_prelude() + bar(4, 9, "1.07") + "\n" + CUDA_OOM).facts
    assert f.traceback is not None and f.traceback.startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert f.oom == f.traceback and f.step == 4 and not f.keyboard_interrupt
    assert f.traceback_lines[0].startswith("Traceback") and len(f.traceback_lines) == 6
    assert [ln.kind for ln in f.lines[-6:]] == ["traceback"] * 6


def test_host_oom_dataloader_and_accelerate_sigkill() -> None:
    text = (
        _training_prelude() + bar(5, 9) + "\n"
        + "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        + "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed.\n"
        + "Traceback (most recent call last):\n  File \"accelerate/commands/launch.py\", line 9, in simple_launcher\n"
        + "subprocess.CalledProcessError: Command '['python', 'sdxl_train_network.py']' died with <Signals.SIGKILL: 9>.\n"
    )
    f = feed_text(text).facts
    assert f.host_oom is not None and "SIGKILL" in f.host_oom
    assert f.traceback is not None and f.traceback.startswith("subprocess.CalledProcessError")
    assert f.oom is None


def test_keyboard_interrupt_chained() -> None:
    text = (
        _training_prelude() + bar(2, 9) + "\n"
        + "Traceback (most recent call last):\n  File \"t.py\", line 3, in <module>\n    time.sleep(1)\nKeyboardInterrupt\n"
    )
    f = feed_text(text).facts
    assert f.keyboard_interrupt and f.traceback == "KeyboardInterrupt" and f.phase == "training"


def test_startup_errors() -> None:
    text = (
        "usage: sdxl_train_network.py [-h] [--output_dir OUTPUT_DIR]\n"
        "sdxl_train_network.py: error: unrecognized arguments: --netwrk_dim 32 --foo\n"
    )
    f = feed_text(text).facts
    assert f.unrecognized_args == ("--netwrk_dim", "32", "--foo")
    text = rec(["No data found. Please verify arguments (train_data_dir must be the parent of folders with images) / "
                "画像がありません。"[:40], "(train_data_dir must be the parent)"], "train_network.py:540", level="ERROR")
    f = feed_text(text).facts
    assert f.no_data and f.errors and f.errors[0].startswith("No data found.")
    text = rec(["Invalid user config / ユーザ設定の形式が正しくないようです"], "config_util.py:380", level="ERROR") + (
        "Traceback (most recent call last):\n  File \"config_util.py\", line 378, in sanitize_user_config\n"
        "voluptuous.error.MultipleInvalid: extra keys not allowed @ data['datasets'][0]['foo']\n"
    )
    f = feed_text(text).facts
    assert f.invalid_config and f.traceback is not None and f.traceback.startswith("voluptuous.error.MultipleInvalid")


def test_parser_starting_mid_file_from_a_tail_window(tmp_path: Path) -> None:
    """A big log's first read is head + tail: the parser must make sense of the tail alone."""
    body = [_training_prelude(total=3000, epochs=2)]
    for n in range(1, 3001):
        body.append(bar(n, 3000, f"{0.2 - n * 0.00001:.4g}", "1.50s/it", "10:00", "05:00"))
        if n == 1500:
            body.append("\nsaving checkpoint: /out/luca-000001.safetensors\n\nepoch 2/2\n\n")
            body.append(rec(["epoch is incremented.", "current_epoch: 0, epoch: 2"], "train_util.py:784"))
    body.append(rec(["a long record whose wrapped", "continuation starts the tail"], "x.py:1"))
    f = tmp_path / "training.log"
    f.write_text("".join(body))
    tail = LogTail(f, initial_tail_bytes=20_000, head_bytes=2_000)
    r = tail.read()
    p = LogParser()
    p.feed(r.head_segments)
    p.feed(r.segments)
    facts = p.facts
    assert r.skipped_bytes > 0 and facts.mid_file
    assert facts.step == 3000 and facts.total_steps == 3000 and facts.phase == "training"
    assert facts.config.num_train_images == 300  # from the head window
    assert facts.avr_loss == pytest.approx(0.17)
    assert any(ln.kind == "skip" for ln in facts.lines)
    # and it keeps going from there
    with open(f, "a") as fh:
        fh.write(bar(3000, 3000, "0.17", "1.50s/it", "10:00", "00:00") + "\nsaving checkpoint: /out/luca.safetensors\n"
                 + rec(["model saved."], "train_network.py:1729"))
    p.feed(tail.read().segments)
    assert p.facts.model_saved and p.facts.phase == "finished"


def test_memory_is_bounded_lines_and_loss_points(tmp_path: Path) -> None:
    """Followed live (a refresh every 1000 steps): exact count, bounded points, spike kept."""
    p = LogParser(max_lines=100, max_points=64)
    f = tmp_path / "training.log"
    f.write_text(_training_prelude(total=20000, epochs=1))
    tail = LogTail(f)
    p.feed(tail.read().segments)
    for start in range(1, 20001, 1000):
        chunks = []
        for n in range(start, start + 1000):
            chunks.append(bar(n, 20000, f"{math.sin(n / 300):.4f}" if n != 7777 else "9.5"))
            if n % 50 == 0:
                chunks.append(f"\nsome print line {n}\n")
        with open(f, "a") as fh:
            fh.write("".join(chunks))
        p.feed(tail.read().segments)
    facts = p.facts
    assert len(facts.lines) <= 101 and facts.line_count > 400
    assert facts.avr_loss_count == 20000 and facts.avr_loss_points[-1].step == 20000
    assert len(facts.avr_loss_points) <= 64 + 8
    assert any(q.value == 9.5 for q in facts.avr_loss_points)  # the spike survives
    steps = [q.step for q in facts.avr_loss_points]
    assert steps == sorted(steps)


def test_big_first_read_samples_old_history_keeps_the_newest_exact() -> None:
    chunks = [_training_prelude(total=20000, epochs=1)]
    chunks += [bar(n, 20000, f"{n / 1e5:.5f}") for n in range(1, 20001)]
    f = feed_text("".join(chunks)).facts
    assert f.step == 20000 and f.avr_loss == 0.2
    assert 4000 < f.avr_loss_count < 20000  # sampled history
    assert f.avr_loss_points[-1].step == 20000 and len(f.avr_loss_points) <= 4000 + 8


def test_garbage_and_binary_do_not_raise() -> None:
    p = LogParser()
    p.feed([("\ufffd\ufffd\x00\x01 junk", "\n"), ("", "\r"), ("   ", "\r"), ("x" * 10000, ""),
            (" " * 29 + "orphan continuation", "\n"), ("steps: 12%|", "\r"), ("[… 1 MiB …]", "skip")])
    f = p.facts
    assert f.step is None and f.traceback is None and f.line_count >= 3


# ---------------------------------------------------------------------------------------------
# Simulator-written logs (sdxl_tui.sim renders rich records and tqdm bars like the real run)
# ---------------------------------------------------------------------------------------------

SIM_ARGS = ["--output_name", "luca", "--network_dim", "8", "--network_alpha", "4", "--max_train_epochs", "2",
            "--gradient_accumulation_steps", "2", "--train_batch_size", "4", "--log_with", "tensorboard",
            "--sim-step-seconds", "0", "--sim-startup-seconds", "0", "--sim-batches-per-epoch", "6",
            "--save_every_n_epochs", "1"]


def _sim_facts(tmp_path: Path, *extra: str) -> tuple[int, object]:
    from sdxl_tui.sim import run_simulated

    run = tmp_path / "run"
    rc = run_simulated(run, [*SIM_ARGS, "--logging_dir", str(run / "logs"), *extra])
    p = LogParser()
    r = LogTail(run / "training.log").read()
    assert r.problems == ()
    p.feed(r.segments)
    return rc, p.facts


def test_sim_finished_run(tmp_path: Path) -> None:
    rc, f = _sim_facts(tmp_path)
    assert rc == 0
    assert (f.phase, f.model_saved, f.step, f.total_steps, f.epoch, f.epochs) == ("finished", True, 6, 6, 2, 2)
    assert f.traceback is None and f.oom is None and f.first_nan_step is None
    assert f.config.network_dim == 8 and f.config.network_alpha == 4.0 and f.config.gradient_accumulation_steps == 2
    assert f.config.batch_size == 4 and f.config.output_name == "luca"
    assert [s.path.rsplit("/", 1)[-1] for s in f.saves if s.kind == "checkpoint"] == ["luca-000001.safetensors", "luca.safetensors"]
    assert f.avr_loss_count == 7 and f.avr_loss == f.avr_loss_points[-1].value


def test_sim_oom(tmp_path: Path) -> None:
    rc, f = _sim_facts(tmp_path, "--sim-fault", "oom", "--sim-fault-step", "3")
    assert rc == 1
    assert f.oom is not None and "CUDA out of memory" in f.oom and f.traceback == f.oom
    assert not f.model_saved and f.step == 2


def test_sim_crash(tmp_path: Path) -> None:
    rc, f = _sim_facts(tmp_path, "--sim-fault", "crash", "--sim-fault-step", "2")
    assert rc == 1 and f.oom is None
    assert f.traceback is not None and f.traceback.startswith("RuntimeError: CUDA error")
    assert f.traceback_lines[0].startswith("Traceback (most recent call last):")


def test_sim_nan(tmp_path: Path) -> None:
    rc, f = _sim_facts(tmp_path, "--sim-fault", "nan", "--sim-fault-step", "3")
    assert rc == 0 and f.first_nan_step == 3 and math.isnan(f.avr_loss or 0.0) and f.model_saved


def test_sim_bad_arguments(tmp_path: Path) -> None:
    rc, f = _sim_facts(tmp_path, "--batch_size", "2", "--lowvram")
    assert rc == 2 and f.unrecognized_args == ("--batch_size", "2", "--lowvram")
    assert f.step is None


# ---------------------------------------------------------------------------------------------
# display lines: empty records, records after a cleared bar, nested bars (REF §1.3, §1.7-§1.9)
# ---------------------------------------------------------------------------------------------


def meter(n: int, total: int = 20) -> str:
    """A per-image sampling meter (no description), as tqdm renders it (10 cells)."""
    pct = 100 * n // total
    cells = "█" * (10 * n // total)
    return f"{pct:3d}%|{cells:<10}| {n}/{total} [00:0{n // 10}<00:02,  8.32it/s]"


def nested_bar(total: int = 20, redraws: tuple[int, ...] | None = None) -> str:
    """A leave=False bar at position 1: each redraw is \\n, \\r + meter, cursor-up; close clears it
    with spaces (\\n, \\r + spaces, cursor-up) and the next write follows on that line."""
    shown = redraws if redraws is not None else tuple(range(total + 1))
    out = "".join(f"\n\r{meter(n, total)}\x1b[A" for n in shown)
    return out + "\n\r" + " " * len(meter(shown[-1], total)) + "\x1b[A"


def _sample_block(first_time: str | None = "2026-11-28 22:41:07") -> str:
    return (
        rec([""], "train_util.py:6177", time=first_time)
        + rec(["generating sample images at step", "/ サンプル画像生成 ステップ: 100"], "train_util.py:6178", time=None)
        + rec(["prompt: luca, a boy with dark", "hair, smiling, outdoors"], "train_util.py:6355", time=None)
        + rec(["seed: 42"], "train_util.py:6363", time=None)
    )


def _no_junk(lines: tuple) -> None:  # type: ignore[type-arg]
    """No raw record text, no lone source column, no blank line; only prints and the later
    lines of multi-line messages keep their indentation."""
    for line in lines:
        assert line.text == line.text.strip() or (line.kind in ("text", "record") and line.text[:1] == " "), line
        assert not re.fullmatch(r"\S+\.py:\d+", line.text.strip()), line
        assert "INFO     " not in line.text and not line.text.lstrip().startswith("2026-"), line
        assert line.text.strip(), f"blank display line {line}"


def test_empty_record_gives_no_display_line() -> None:
    p = feed_text(_training_prelude() + bar(3, 9, "1.09") + "\n" + rec([""], "train_util.py:6177")
                  + rec(["generating sample images at step: 3"], "train_util.py:6178", time=None))
    f = p.facts
    assert not any("train_util.py" in line.text for line in f.lines)
    assert f.lines[-1].text == "generating sample images at step: 3" and f.lines[-2].kind == "progress"
    assert f.lines[-1].number == f.lines[-2].number + 1 and f.line_count == f.lines[-1].number + 1
    assert f.last_record_time == "2026-11-28 21:22:51" and f.phase == "sampling"
    # blank time column too, and the empty record written on the bar's line (§1.3)
    f = feed_text(_training_prelude() + bar(4, 9, "1.08") + "   " + rec([""], "train_util.py:6177", time=None)
                  + rec(["saving state at epoch 1"], "train_network.py:1601", time=None)).facts
    assert [line.text for line in f.lines[-2:]] == [bar(4, 9, "1.08")[1:], "saving state at epoch 1"]
    assert f.phase == "saving"
    _no_junk(f.lines)


def test_record_after_a_cleared_nested_bar_is_recognised_and_joined() -> None:
    for time in ("2026-11-28 22:41:20", None):
        text = (_training_prelude() + bar(100, 600, "0.122") + "\n" + _sample_block() + nested_bar()
                + rec(["prompt: luca, riding a vespa", "along the coast"], "train_util.py:6355", time=time)
                + rec(["negative_prompt: lowres"], "train_util.py:6356", time=None))
        f = feed_text(text).facts
        texts = [line.text for line in f.lines]
        assert "prompt: luca, riding a vespa along the coast" in texts, texts[-6:]
        assert "along the coast" not in texts
        i = texts.index("prompt: luca, riding a vespa along the coast")
        assert f.lines[i].kind == "record" and f.lines[i].level == "INFO"
        assert texts[i + 1] == "negative_prompt: lowres"
        assert f.last_record_time == (time or "2026-11-28 22:41:07")
        _no_junk(f.lines)


def test_record_after_tqdm_padding_on_the_bar_line() -> None:
    # a shorter redraw is padded with spaces; a record (blank time) follows on the same line
    text = (_training_prelude() + bar(5, 9, "1.05") + " " * 7
            + rec(["epoch is incremented.", "current_epoch: 0, epoch: 1"], "train_util.py:784", time=None))
    f = feed_text(text).facts
    assert f.lines[-1].text == "epoch is incremented. current_epoch: 0, epoch: 1" and f.lines[-1].kind == "record"
    assert f.lines[-2].kind == "progress" and "5/9" in f.lines[-2].text
    # indented plain text is not taken for a record
    f = feed_text("  INFO     not a record\n" + " " * 40 + "INFO     nor this one, no source column\n").facts
    assert [line.kind for line in f.lines] == ["text", "text"]


def test_nested_bar_redraws_collapse_into_one_line() -> None:
    text = _training_prelude() + bar(100, 600, "0.122") + "\n" + _sample_block() + nested_bar()
    f = feed_text(text).facts
    progress = [line for line in f.lines if line.kind == "progress"]
    sample = [line for line in progress if "/20 " in line.text]
    assert len(sample) == 1 and sample[0].text == meter(20).strip()
    assert f.lines[-1] is not None and f.lines[-1].number == sample[0].number  # still the newest line
    assert progress[-2].text.startswith("steps:") and "100/600" in progress[-2].text
    _no_junk(f.lines)
    assert f.step == 100 and f.phase == "sampling"  # facts as before
    # two images: one line each; training goes on in a new steps line
    text += (rec(["prompt: luca, riding a vespa"], "train_util.py:6355", time=None) + nested_bar(redraws=(0, 7, 15))
             + "\nepoch 3/12\n\n" + bar(101, 600, "0.121"))
    f = feed_text(text).facts
    texts = [line.text for line in f.lines]
    assert texts[-5:] == [meter(20).strip(), "prompt: luca, riding a vespa", meter(15).strip(), "epoch 3/12",
                          bar(101, 600, "0.121")[1:]]
    _no_junk(f.lines)


def test_nested_bar_fed_one_write_at_a_time_updates_its_line() -> None:
    import tempfile

    text = _training_prelude() + bar(100, 600, "0.122") + "\n" + _sample_block() + nested_bar(redraws=(0, 4, 8, 12, 16, 20))
    whole = feed_text(text).facts
    p = LogParser()
    numbers: set[int] = set()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "training.log"
        path.write_bytes(b"")
        tail = LogTail(path)
        for piece in text.split("\x1b[A"):
            with open(path, "ab") as fh:
                fh.write((piece + "\x1b[A").encode())
            p.feed(tail.read().segments)
            if p.facts.lines and p.facts.lines[-1].kind == "progress" and "/20 " in p.facts.lines[-1].text:
                numbers.add(p.facts.lines[-1].number)
        tail.close()
    assert len(numbers) == 1  # every redraw replaced the same (last) line
    assert [(x.number, x.text) for x in p.facts.lines] == [(x.number, x.text) for x in whole.lines]


def test_a_new_bar_with_the_same_description_gets_its_own_line() -> None:
    closed = "\r  0%|          | 0/6 [00:00<?, ?it/s]\r100%|██████████| 6/6 [00:00<00:00, 62.1it/s]\n"
    f = feed_text(closed + closed.replace("/6", "/4").replace("6/", "4/")).facts
    assert [line.text.split("|")[-1].split(" [")[0].strip() for line in f.lines] == ["6/6", "4/4"]
    f = feed_text(closed + closed).facts
    assert len(f.lines) == 2
    # a closed (leave=True) steps bar then its final redraw again (exit): one line
    f = feed_text(bar(9, 9, "1.05") + "\n" + bar(9, 9, "1.05") + "\n").facts
    assert len(f.lines) == 1


def _fake_clock_demo(run: Path, *extra: str) -> Path:
    """The demo run (2 epochs: one sampling of 2 images) on a fake clock: every tqdm redraw of
    the sampling bars is written, without sleeping."""
    from sdxl_tui.sim import demo_args
    from sdxl_tui.sim.bulk import _FakeClock
    from sdxl_tui.sim.console import SimConsole
    from sdxl_tui.sim.runner import run_argv
    from sdxl_tui.sim.trainer import Hooks

    run.mkdir(parents=True, exist_ok=True)
    clock = _FakeClock(1_795_000_000.0, 1.0)
    args = [*demo_args(run), "--sim-step-seconds", "1.6", "--sim-startup-seconds", "5", "--max_train_epochs", "2", *extra]
    with open(run / "training.log", "wb") as f:
        console = SimConsole(f, clock=clock.now)
        assert run_argv(args, console, in_process=True, hooks=Hooks(now=clock.now, sleep=clock.sleep)) == 0
        console.flush_stdout()
    return run / "training.log"


def test_sim_demo_sampling_display_lines(tmp_path: Path) -> None:
    from sdxl_tui.sim import demo_args, run_simulated

    run = tmp_path / "run"
    assert run_simulated(run, [*demo_args(run), "--sim-step-seconds", "0", "--sim-startup-seconds", "0",
                               "--max_train_epochs", "2"]) == 0
    raw = (run / "training.log").read_bytes().decode("utf-8")  # keep the \r
    assert "INFO                                      train_util.py:6177" in raw  # the empty record
    assert re.search(r"\r {20,}\x1b\[A(?:\d{4}-| {20})", raw)  # a record right after a cleared bar (§1.7)
    f = feed_text(raw).facts
    _no_junk(f.lines)
    texts = [line.text for line in f.lines]
    assert texts.count("prompt: luca, riding a vespa along the coast") == 1
    i = texts.index("generating sample images at step / サンプル画像生成 ステップ: 100")
    assert texts[i - 1].startswith("steps:") or texts[i - 1].startswith("saving checkpoint:")
    assert f.phase == "finished" and f.sample_step == 100


def test_sim_demo_nested_sampling_bar_is_one_line_per_image(tmp_path: Path) -> None:
    log = _fake_clock_demo(tmp_path / "run")
    raw = log.read_bytes().decode("utf-8")  # keep the \r
    assert raw.count("\x1b[A") > 40  # every redraw of both images was written
    for f in (feed_text(raw).facts, _fed_in_refreshes(log)):
        texts = [line.text for line in f.lines]
        start = texts.index("generating sample images at step / サンプル画像生成 ステップ: 100")
        sample = [line for line in f.lines[start:] if line.kind == "progress" and "/20 " in line.text]
        assert [line.text.split("| ")[1].split(" ")[0] for line in sample] == ["20/20", "20/20"]
        assert texts[start + 1].startswith("prompt: luca, a boy") and texts[start + 9] == sample[0].text
        assert "prompt: luca, riding a vespa along the coast" in texts
        _no_junk(f.lines)
        assert f.model_saved and f.step == 100


def _fed_in_refreshes(log: Path):  # type: ignore[no-untyped-def]
    """Replay ``log`` as it was written, in 4 KiB pieces, reading after each (live tailing)."""
    import tempfile

    data = log.read_bytes()
    p = LogParser()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "training.log"
        path.write_bytes(b"")
        tail = LogTail(path)
        for k in range(0, len(data), 4096):
            with open(path, "ab") as fh:
                fh.write(data[k : k + 4096])
            p.feed(tail.read().segments)
        tail.close()
    return p.facts
