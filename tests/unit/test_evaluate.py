"""control/evaluate.py and `sdxl-tui eval` with a fake evaluation script: placeholders, the
detached run, queueing (one at a time, after training), status files as the checkpoint
table sees them, cancelling, comparison grids and the CLI.

Every process is real; each test ends what it started by PID (eval processes and the
queue runner are found through the status files and runner.info, identity-checked).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sdxl_tui.config import Settings
from sdxl_tui.control import evaluate as ev
from tests.helpers.proctools import Procs, end_recorded_evaluations, trainer_argv, wait_until

FAKE_EVAL = str(Path(__file__).resolve().parents[1] / "helpers" / "fake_eval.py")
PY = sys.executable


def write_lora(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A small but valid safetensors file with kohya-style LoRA names."""
    size = 16
    header = {"__metadata__": metadata or {}, "lora_unet_x.lora_up.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, size]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(size))
    return path


def make_run(tmp_path: Path, epochs: tuple[int, ...] = (2, 4, 6, 8, 10), final: bool = True) -> Path:
    run = tmp_path / "sdxl_v1"
    run.mkdir()
    for e in epochs:
        write_lora(run / f"luca_sdxl_v1-{e:06d}.safetensors", {"ss_epoch": str(e)})
    if final:
        write_lora(run / "luca_sdxl_v1.safetensors", {"ss_epoch": "12"})
    return run


def fake_template(*extra: str) -> list[str]:
    return [PY, FAKE_EVAL, "--checkpoint", "{checkpoint}", "--base-model", "{base_model}",
            "--output-dir", "{output_dir}", "--num-samples", "{num_samples}", "--device", "{device}",
            "--resolution", "{resolution}", "--epoch", "{epoch}", *extra]


def settings_with(**values: object) -> Settings:
    return Settings().replace(**{k.replace(".", "__"): v for k, v in values.items()})


@pytest.fixture(autouse=True)
def private_gpu_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU locks are per user and machine: give each test its own, so that concurrent test
    runs (or a real evaluation) never make a test wait. Runners inherit the variable."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Procs that also ends evaluation processes and queue runners of registered run dirs."""
    p = Procs()
    try:
        yield p
    finally:
        for d in p.run_dirs:
            (d / "release").touch(exist_ok=True)  # let held fake evaluations finish
            end_recorded_evaluations(d)
        p.cleanup()


# --------------------------------------------------------------------------- planning (pure)


def test_placeholders_substituted_inside_argv_elements_without_a_shell(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    settings = settings_with(**{"eval.base_model": str(tmp_path / "sd_xl_base_1.0.safetensors"),
                                "eval.num_samples": 16, "eval.device": "cuda:1"})
    template = "conda run -n kohya_ss python eval.py --checkpoint {checkpoint} --base-model {base_model} " \
               "--output-dir={output_dir} --tag 'epoch {epoch}; rm -rf /' --n {num_samples} --device {device} " \
               "--resolution {resolution} --lit {{x}} --name {name} --run {run_dir}"
    plan = ev.plan_eval(run, run / "luca_sdxl_v1-000008.safetensors", settings=settings, command=template,
                        check_training=False)
    assert plan.output_dir == str(run / "eval_epoch8")
    assert plan.epoch == 8 and not plan.builtin
    assert plan.argv[:6] == ("conda", "run", "-n", "kohya_ss", "python", "eval.py")
    argv = list(plan.argv)
    assert argv[argv.index("--checkpoint") + 1] == str(run / "luca_sdxl_v1-000008.safetensors")
    assert argv[argv.index("--base-model") + 1] == str(tmp_path / "sd_xl_base_1.0.safetensors")
    assert f"--output-dir={run / 'eval_epoch8'}" in argv
    assert "epoch 8; rm -rf /" in argv  # one element, never shell-interpreted
    assert argv[argv.index("--n") + 1] == "16"
    assert argv[argv.index("--device") + 1] == "cuda:1"
    assert argv[argv.index("--resolution") + 1] == "1024"
    assert argv[argv.index("--lit") + 1] == "{x}"
    assert argv[argv.index("--name") + 1] == "luca_sdxl_v1-000008"
    assert argv[argv.index("--run") + 1] == str(run)


def test_card_call_from_config_argv_list_and_final_file_uses_ss_epoch(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    card = ["conda", "run", "-n", "kohya_ss", "python", "scripts/evaluation/evaluate_single_checkpoint.py",
            "--checkpoint", "{checkpoint}", "--base-model", "{base_model}", "--output-dir", "{output_dir}",
            "--num-samples", "{num_samples}", "--device", "{device}", "--resolution", "{resolution}"]
    settings = settings_with(**{"eval.command": card, "eval.base_model": "/models/sd_xl_base_1.0.safetensors"})
    plan = ev.plan_eval(run, run / "luca_sdxl_v1.safetensors", settings=settings, check_training=False)
    assert plan.output_dir == str(run / "eval_luca_sdxl_v1")
    assert plan.epoch == 12 and plan.values["epoch"] == "12"
    assert plan.argv[-12:] == ("--checkpoint", str(run / "luca_sdxl_v1.safetensors"), "--base-model",
                               "/models/sd_xl_base_1.0.safetensors", "--output-dir", str(run / "eval_luca_sdxl_v1"),
                               "--num-samples", "4", "--device", "cuda", "--resolution", "1024")


def test_planning_errors_are_clear(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    ck = run / "luca_sdxl_v1-000008.safetensors"
    with pytest.raises(ev.EvalError, match=r"unknown placeholder \{chekpoint\}"):
        ev.plan_eval(run, ck, command="x {chekpoint}", check_training=False)
    with pytest.raises(ev.EvalError, match="base_model.*eval.base_model"):
        ev.plan_eval(run, ck, command="x {base_model}", check_training=False)
    with pytest.raises(ev.EvalError, match="built-in evaluator needs the SDXL base model"):
        ev.plan_eval(run, ck, settings=Settings(), check_training=False)
    with pytest.raises(ev.EvalError, match="checkpoint not found"):
        ev.plan_eval(run, run / "nope.safetensors", command="x", check_training=False)
    with pytest.raises(ev.EvalError, match="cannot split"):
        ev.plan_eval(run, ck, command="x 'unbalanced", check_training=False)


def test_builtin_is_the_default_without_a_template(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    base = tmp_path / "base"
    base.mkdir()
    plan = ev.plan_eval(run, run / "luca_sdxl_v1-000006.safetensors", settings=Settings(),
                        base_model=str(base), device="cpu", num_samples=2, resolution=64,
                        extra_args=["--steps", "2"], check_training=False)
    assert plan.builtin
    assert plan.argv[:3] == (sys.executable, "-m", "sdxl_tui.evaluator")
    argv = list(plan.argv)
    assert argv[argv.index("--output-dir") + 1] == str(run / "eval_epoch6")
    assert argv[-2:] == ["--steps", "2"]
    assert argv[argv.index("--device") + 1] == "cpu"


def test_checkpoint_resolution_and_selection(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert ev.resolve_checkpoint(run, "8") == str(run / "luca_sdxl_v1-000008.safetensors")
    assert ev.resolve_checkpoint(run, "12") == str(run / "luca_sdxl_v1.safetensors")  # final, ss_epoch 12
    assert ev.resolve_checkpoint(run, "luca_sdxl_v1-000004.safetensors").endswith("-000004.safetensors")
    assert ev.resolve_checkpoint(run, "luca_sdxl_v1-000004").endswith("-000004.safetensors")
    assert ev.resolve_checkpoint(tmp_path, str(run / "luca_sdxl_v1.safetensors")) == str(run / "luca_sdxl_v1.safetensors")
    with pytest.raises(ev.EvalError, match="epochs saved: 2, 4, 6, 8, 10"):
        ev.resolve_checkpoint(run, "7")
    sel = ev.parse_selection(run, "6-10")
    assert [Path(p).name for p in sel] == [f"luca_sdxl_v1-{e:06d}.safetensors" for e in (6, 8, 10)]
    assert [Path(p).name for p in ev.parse_selection(run, "10,2")] == [
        "luca_sdxl_v1-000010.safetensors", "luca_sdxl_v1-000002.safetensors"]
    with pytest.raises(ev.EvalError, match="between 20 and 30"):
        ev.parse_selection(run, "20-30")


# --------------------------------------------------------------------------- detached runs


def _start(run: Path, epoch: int, *extra: str, when: str = "now", **kw: object) -> ev.EvalPlan:
    plan = ev.plan_eval(run, ev.resolve_checkpoint(run, str(epoch)), command=fake_template(*extra),
                        num_samples=kw.pop("num_samples", 2), base_model="/models/base", **kw)  # type: ignore[arg-type]
    ev.start_eval(plan, when=when, poll_interval=0.1)
    return plan


def test_detached_run_survives_its_starter_and_records_the_end(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    # The "dashboard" is a separate process that starts the evaluation and exits at once.
    code = (
        "import sys\n"
        "from sdxl_tui.control import evaluate as ev\n"
        f"plan = ev.plan_eval({str(run)!r}, {str(run / 'luca_sdxl_v1-000008.safetensors')!r},"
        f" command={fake_template('--sleep', '0.3')!r}, base_model='/models/base', num_samples=3)\n"
        "ev.start_eval(plan, poll_interval=0.1)\n"
    )
    starter = procs.spawn([PY, "-c", code], cwd=str(Path(__file__).resolve().parents[2]))
    assert starter.wait(timeout=30) == 0
    rec = wait_until(lambda: (r := ev.eval_record(run, "luca_sdxl_v1-000008")) and r.status == "running" and r, 20)
    proc = psutil.Process(rec.pid)
    assert os.getsid(rec.pid) == rec.pid  # its own session: a closing terminal does not end it
    assert proc.ppid() != starter.pid
    rec = ev.wait_for(run, "luca_sdxl_v1-000008", timeout=30)
    assert rec is not None and rec.status == "done" and rec.exit_code == 0
    assert [Path(p).name for p in rec.images] == ["00_42.png", "01_43.png", "02_44.png"]
    status = json.loads((run / ".sdxl-tui" / "evals" / "luca_sdxl_v1-000008.json").read_text())
    for key in ("checkpoint", "output_dir", "status", "pid", "create_time", "argv", "started_at", "ended_at", "exit_code"):
        assert key in status
    assert status["output_dir"] == str(run / "eval_epoch8")
    assert status["ended_at"] >= status["started_at"]
    recorded = json.loads((run / "eval_epoch8" / "argv.json").read_text())["argv"]
    assert recorded[recorded.index("--epoch") + 1] == "8"
    log = (run / "eval_epoch8" / "eval.log").read_text()
    assert "image 3/3" in log and "exit status 0" in log
    assert ev.log_tail(rec, 2)[-1].startswith("# exit status 0")
    wait_until(lambda: ev.runner_pid(run) is None, 10)  # the runner exits with an empty queue


def test_one_at_a_time_second_is_queued(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    hold = run / "release"
    _start(run, 6, "--hold-file", str(hold))
    _start(run, 8)
    wait_until(lambda: ev.eval_record(run, "luca_sdxl_v1-000006").status == "running", 20)
    time.sleep(0.6)
    assert ev.eval_record(run, "luca_sdxl_v1-000008").status == "queued"
    assert [r.status for r in ev.eval_status(run)] == ["running", "queued"]
    # the table's view: sources/checkpoints reads the same status files
    from sdxl_tui.sources.checkpoints import CheckpointScanner

    table = {c.name: c.evaluation for c in CheckpointScanner(str(run)).scan().checkpoints}
    assert table["luca_sdxl_v1-000006.safetensors"] == "running"
    assert table["luca_sdxl_v1-000008.safetensors"] == "queued"
    assert table.get("luca_sdxl_v1-000010.safetensors") is None
    with pytest.raises(ev.EvalError, match="already has an evaluation running"):
        _start(run, 6)
    hold.touch()
    a = ev.wait_for(run, "luca_sdxl_v1-000006", timeout=30)
    b = ev.wait_for(run, "luca_sdxl_v1-000008", timeout=30)
    assert a.status == b.status == "done"
    assert b.started_at >= a.ended_at
    table = {c.name: c.evaluation for c in CheckpointScanner(str(run)).scan().checkpoints}
    assert table["luca_sdxl_v1-000006.safetensors"] == "done"


def test_one_evaluation_per_gpu_across_run_dirs(tmp_path: Path, procs: Procs) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_a = procs.watch_dir(make_run(tmp_path / "a"))
    run_b = procs.watch_dir(make_run(tmp_path / "b"))
    hold = run_a / "release"
    _start(run_a, 6, "--hold-file", str(hold), device="cuda:0")
    wait_until(lambda: ev.eval_record(run_a, "luca_sdxl_v1-000006").status == "running", 20)
    _start(run_b, 6, device="cuda")  # cuda == cuda:0: waits for the GPU
    _start(run_b, 8, device="cpu")  # not behind it in another directory's queue... but behind run_b's own
    rec = wait_until(lambda: (r := ev.eval_record(run_b, "luca_sdxl_v1-000006")) and r.note and r, 20)
    assert rec.status == "queued" and "waiting for cuda" in rec.note
    hold.touch()
    b = ev.wait_for(run_b, "luca_sdxl_v1-000006", timeout=30)
    a = ev.eval_record(run_a, "luca_sdxl_v1-000006")
    assert a.status == b.status == "done" and b.started_at >= a.ended_at and b.note is None
    assert ev.wait_for(run_b, "luca_sdxl_v1-000008", timeout=30).status == "done"


def test_after_training_waits_for_the_trainer(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    trainer = procs.spawn(trainer_argv(run, "--save_every", "1000"))
    wait_until(lambda: ev.training_pid(run) == trainer.pid, 20)
    plan = ev.plan_eval(run, run / "luca_sdxl_v1-000010.safetensors", command=fake_template(), base_model="/b",
                        num_samples=2)
    assert plan.training_pid == trainer.pid  # the UI asks "run now / queue until training ends"
    ev.start_eval(plan, when="after-training", poll_interval=0.1)
    time.sleep(1.0)
    rec = ev.eval_record(run, plan.name)
    assert rec.status == "queued" and rec.when == "after-training"
    assert ev.runner_pid(run) is not None
    trainer.kill()
    trainer.wait(timeout=10)
    rec = ev.wait_for(run, plan.name, timeout=30)
    assert rec.status == "done" and len(rec.images) == 2


def test_failures_are_recorded(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    _start(run, 2, "--exit-code", "3")
    rec = ev.wait_for(run, "luca_sdxl_v1-000002", timeout=30)
    assert rec.status == "failed" and rec.exit_code == 3
    plan = ev.plan_eval(run, run / "luca_sdxl_v1-000004.safetensors", command="/no/such/evaluate.py {checkpoint}",
                        check_training=False)
    assert any("not an executable" in w for w in plan.warnings)
    ev.start_eval(plan, poll_interval=0.1)
    rec = ev.wait_for(run, plan.name, timeout=30)
    assert rec.status == "failed" and rec.exit_code == 127 and "cannot start" in (rec.note or "")


def test_relative_template_paths_are_the_callers(tmp_path: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    scripts = tmp_path / "scripts" / "evaluation"
    scripts.mkdir(parents=True)
    shutil.copy(FAKE_EVAL, scripts / "evaluate_single_checkpoint.py")
    monkeypatch.chdir(tmp_path)
    plan = ev.plan_eval(run, run / "luca_sdxl_v1-000002.safetensors", check_training=False, num_samples=1,
                        command=f"{shlex.quote(PY)} scripts/evaluation/evaluate_single_checkpoint.py --checkpoint {{checkpoint}}"
                                " --output-dir {output_dir} --num-samples {num_samples}")
    assert plan.cwd == str(tmp_path) and not plan.warnings
    ev.start_eval(plan, poll_interval=0.1)
    rec = ev.wait_for(run, plan.name, timeout=30)
    assert rec.status == "done" and len(rec.images) == 1


def test_incomplete_checkpoint_is_a_warning(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    ck = run / "luca_sdxl_v1-000010.safetensors"
    ck.write_bytes(ck.read_bytes()[:-8])  # still being written
    plan = ev.plan_eval(run, ck, command="x {checkpoint}", check_training=False)
    assert any("incomplete" in w for w in plan.warnings)


def test_cancel_queued_and_running(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    _start(run, 6, "--hold-file", str(tmp_path / "never"))
    _start(run, 8)
    rec = wait_until(lambda: (r := ev.eval_record(run, "luca_sdxl_v1-000006")) and r.status == "running" and r, 20)
    queued = ev.cancel_eval(run, "luca_sdxl_v1-000008")
    assert queued.status == "failed" and "cancelled" in queued.note
    running = ev.cancel_eval(run, "luca_sdxl_v1-000006", timeout=5)
    assert not psutil.pid_exists(rec.pid) or psutil.Process(rec.pid).status() == psutil.STATUS_ZOMBIE
    final = wait_until(lambda: (r := ev.eval_record(run, "luca_sdxl_v1-000006")) and r.ended_at and r, 10)
    assert final.status == "failed" and final.exit_code is not None and final.exit_code < 0
    assert running is not None


def test_stale_running_record_reads_as_failed(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    folder = run / ".sdxl-tui" / "evals"
    folder.mkdir(parents=True)
    (folder / "luca_sdxl_v1-000002.json").write_text(json.dumps(
        {"checkpoint": str(run / "luca_sdxl_v1-000002.safetensors"), "output_dir": str(run / "eval_epoch2"),
         "status": "running", "pid": 2**22 - 3, "create_time": 1.0, "argv": ["x"]}))
    (rec,) = ev.eval_status(run)
    assert rec.status == "failed" and "gone" in rec.note


def test_killed_runner_leaves_an_honest_status(tmp_path: Path, procs: Procs) -> None:
    run = procs.watch_dir(make_run(tmp_path))
    _start(run, 4, "--hold-file", str(tmp_path / "never"))
    rec = wait_until(lambda: (r := ev.eval_record(run, "luca_sdxl_v1-000004")) and r.status == "running" and r, 20)
    runner = psutil.Process(ev.runner_pid(run))
    runner.kill()
    wait_until(lambda: ev.runner_pid(run) is None, 10)
    assert ev.eval_record(run, "luca_sdxl_v1-000004").status == "running"  # the evaluation itself lives on
    psutil.Process(rec.pid).kill()
    final = wait_until(lambda: (r := ev.eval_record(run, "luca_sdxl_v1-000004")) and r.status != "running" and r, 10)
    assert final.status == "failed" and "without a recorded end" in final.note


# --------------------------------------------------------------------------- comparison grid


def test_compare_grid_rows_are_checkpoints(tmp_path: Path, procs: Procs) -> None:
    from PIL import Image

    from tests.helpers.fake_eval import colour_for

    run = procs.watch_dir(make_run(tmp_path))
    sel = ev.parse_selection(run, "6-10")
    path = ev.compare_grid(run, sel, command=fake_template(), base_model="/b", num_samples=3,
                           poll_interval=0.1, timeout=60)
    assert path == str(run / "compare_epochs_6-10.png")
    grid = Image.open(path).convert("RGB")
    cell = 256
    label_w, top = 150, 26 + 40
    assert grid.size == (label_w + 3 * cell, top + 3 * cell)
    for row, ck in enumerate(sel):
        expected = colour_for(ck)
        for col in range(3):
            px = grid.getpixel((label_w + col * cell + cell // 2, top + row * cell + cell // 2))
            want = tuple(min(255, c + 20 * col) for c in expected)
            assert max(abs(a - b) for a, b in zip(px, want)) <= 2, (row, col, px, want)
    # a second comparison reuses the existing folders (no new evaluation) and still builds
    job = ev.start_compare(run, sel[:2], command=fake_template("--exit-code", "9"), base_model="/b", poll_interval=0.1)
    assert job.started == ()
    done = wait_until(lambda: (j := ev.compare_job(run, job.label)) and j.status != "waiting" and j, 30)
    assert done.status == "done" and Path(done.grid_path).is_file()


def test_builtin_comparison_pins_the_same_prompts_for_every_row(tmp_path: Path, procs: Procs) -> None:
    tags = json.dumps({"5_luca": {"luca": 9, "3d render": 7, "boy": 1}})
    run = procs.watch_dir(make_run(tmp_path, epochs=(6, 8), final=False))
    for e in (6, 8):
        write_lora(run / f"luca_sdxl_v1-{e:06d}.safetensors", {"ss_epoch": str(e), "ss_tag_frequency": tags})
    job = ev.start_compare(run, ev.parse_selection(run, "6-8"), settings=Settings(), num_samples=3,
                           base_model=str(tmp_path / "missing_base.safetensors"), device="cpu", poll_interval=0.1)
    assert job.started == ("luca_sdxl_v1-000006", "luca_sdxl_v1-000008")
    argvs = [ev.eval_record(run, n).argv for n in job.started]
    prompt_files = {a[a.index("--prompts") + 1] for a in argvs}
    assert len(prompt_files) == 1
    lines = Path(prompt_files.pop()).read_text().splitlines()[1:]
    assert lines[0] == "luca, 3d render, boy" and len(lines) == 3
    # the built-in evaluator refuses the missing base in its light preflight (no torch import)
    done = wait_until(lambda: (j := ev.compare_job(run, job.label)) and j.status != "waiting" and j, 60)
    assert done.status == "failed" and "no evaluation images" in (done.error or "")
    rec = ev.eval_record(run, "luca_sdxl_v1-000006")
    assert rec.status == "failed" and rec.exit_code == 2
    assert "base model not found" in "\n".join(ev.log_tail(rec, 5))


# --------------------------------------------------------------------------- CLI


def test_cli_eval_wait_status_and_training_choice(tmp_path: Path, procs: Procs, capsys: pytest.CaptureFixture[str]) -> None:
    from sdxl_tui.cli import main

    run = procs.watch_dir(make_run(tmp_path))
    cmd = shlex.join(fake_template())
    assert main(["eval", str(run), "8", "--command", cmd, "--base-model", "/b", "--num-samples", "2", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "image 2/2" in out and "evaluation done: 2 images" in out
    assert main(["eval", str(run), "8", "--show", "--halfblock"]) == 0
    shown = capsys.readouterr().out
    assert str(run / "eval_epoch8" / "00_42.png") in shown and "\u2580" in shown
    assert main(["eval", str(run), "--status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (only,) = data["evaluations"]
    assert only["name"] == "luca_sdxl_v1-000008" and only["status"] == "done" and len(only["images"]) == 2
    assert main(["eval", str(run), "4", "--command", shlex.join(fake_template("--exit-code", "5")),
                 "--base-model", "/b", "--wait"]) == 5
    capsys.readouterr()
    trainer = procs.spawn(trainer_argv(run, "--save_every", "1000"))
    wait_until(lambda: ev.training_pid(run) == trainer.pid, 20)
    assert main(["eval", str(run), "2", "--command", cmd, "--base-model", "/b"]) == 2
    assert "pass --now" in capsys.readouterr().err
    assert main(["eval", str(run), "2", "--command", cmd, "--base-model", "/b", "--queue"]) == 0
    assert ev.eval_record(run, "luca_sdxl_v1-000002").status == "queued"
    assert main(["eval", str(run), "7", "--command", cmd]) == 2
    assert main(["eval", str(run), "--compare", "40-50", "--command", cmd]) == 2
