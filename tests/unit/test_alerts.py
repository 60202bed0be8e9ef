"""Alert rules (sources/alerts.py) on hand-built facts: each fix is fitted to the run."""

from __future__ import annotations

from sdxl_tui.formats.optiontable import suggest
from sdxl_tui.model import (
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    GpuSample,
    GpuStatus,
    ProcessTree,
    ProcInfo,
    RunState,
    Severity,
    StateDir,
    TrainConfig,
)
from sdxl_tui.sources.alerts import AlertInputs, derive_alerts, memory_fixes

CARD_OPTS = {
    "dataset_config": ("ds.toml",),
    "mixed_precision": ("fp16",),
    "gradient_accumulation_steps": ("2",),
    "cache_latents": True,
    "cache_latents_to_disk": True,
    "save_every_n_epochs": ("2",),
}
CARD = TrainConfig(output_name="luca", batch_size=4, gradient_accumulation_steps=2, num_epochs=12,
                   mixed_precision="fp16", unet_lr=3e-4, save_every_n_epochs=2)


def ckpt(name: str, step: int, epoch: int, *, size: int = 190_000_000, kind: CheckpointKind = CheckpointKind.EPOCH,
         status: CheckpointStatus = CheckpointStatus.COMPLETE, mtime: float = 0.0) -> Checkpoint:
    return Checkpoint(name=name, path=f"/runs/luca/{name}", kind=kind, epoch=epoch, step=step, size=size,
                      mtime=mtime or float(step), status=status)


def kinds(alerts) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.kind for a in alerts]


def test_oom_fix_halves_batch_doubles_accumulation_and_names_missing_flags() -> None:
    line = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.95 GiB. ... "
            "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
    alerts = derive_alerts(AlertInputs(state=RunState.FAILED, config=CARD, options=CARD_OPTS, oom=line, step=37))
    assert kinds(alerts) == ["oom"]
    a = alerts[0]
    assert a.severity is Severity.ERROR and a.step == 37 and a.key == "oom"
    assert "batch_size = 2 in the dataset TOML (ds.toml)" in a.fix
    assert "--gradient_accumulation_steps 4 (effective batch 8 -> 8 unchanged)" in a.fix
    assert "--gradient_checkpointing (missing)" in a.fix
    assert "--xformers" in a.fix
    assert "--network_train_unet_only --cache_text_encoder_outputs" in a.fix
    assert "expandable_segments:True" in a.fix
    assert "--lowvram" in a.fix and "do not exist" in a.fix


def test_memory_fixes_skip_what_the_run_already_does() -> None:
    cfg = TrainConfig(batch_size=1, gradient_checkpointing=True, attention="sdpa", network_train_unet_only=True,
                      cache_text_encoder_outputs=True)
    fixes = memory_fixes(cfg, {"cache_latents": True})
    text = "; ".join(fixes)
    assert "batch" not in text and "gradient_checkpointing" not in text and "xformers" not in text
    assert "--fp8_base" in text
    assert "--train_batch_size 1" not in text
    fixes = memory_fixes(TrainConfig(batch_size=3), {})
    assert fixes[0].startswith("set --train_batch_size 1 and --gradient_accumulation_steps 3")


def test_nan_alert_names_first_step_fp16_vae_fix_and_last_good_checkpoint() -> None:
    cks = (ckpt("luca-000002.safetensors", 100, 2), ckpt("luca-000004.safetensors", 200, 4))
    alerts = derive_alerts(AlertInputs(state=RunState.TRAINING, config=CARD, options=CARD_OPTS, nan_step=150,
                                       checkpoints=cks, step=180))
    (a,) = alerts
    assert a.kind == "nan" and a.step == 150 and "step 150" in a.message
    assert "--no_half_vae" in a.fix and "bf16" in a.fix and "_sdxl.npz" in a.fix
    assert "luca-000002.safetensors (step 100" in a.fix
    assert a.fix.startswith("stop the run")


def test_crash_shows_exception_line_and_known_fix() -> None:
    (a,) = derive_alerts(AlertInputs(state=RunState.FAILED, traceback="ModuleNotFoundError: No module named 'bitsandbytes'"))
    assert a.kind == "crash" and "No module named 'bitsandbytes'" in a.message
    assert "pip install bitsandbytes" in a.fix and a.key == "crash:ModuleNotFoundError"
    (b,) = derive_alerts(AlertInputs(state=RunState.FAILED, traceback="RuntimeError: boom"))
    assert "training.log" in b.fix


def test_bad_args_with_did_you_mean() -> None:
    (a,) = derive_alerts(AlertInputs(state=RunState.FAILED,
                                     unrecognized_args=("--batch_size", "2", "--lowvram", "--network_dimm", "8")))
    assert a.kind == "bad_args"
    assert "--batch_size: did you mean --train_batch_size? there is no --batch_size; set `batch_size = N`" in a.fix
    assert "--lowvram: did you mean --lowram? --lowvram is a Stable Diffusion web UI option" in a.fix
    assert "--network_dimm: did you mean --network_dim" in a.fix
    assert suggest("--zzzzzzzz") is None


def test_interrupted_fix_prefers_resume_from_state_dir() -> None:
    cks = (ckpt("luca-000002.safetensors", 100, 2),)
    states = (StateDir("luca-000002-state", "/runs/luca/luca-000002-state", 2, 100, True),)
    (a,) = derive_alerts(AlertInputs(state=RunState.INTERRUPTED, config=CARD, checkpoints=cks, states=states,
                                     exit_signal=15, step=130))
    assert a.kind == "interrupted" and "SIGTERM" in a.message and "luca-000002.safetensors" in a.message
    assert a.fix == "resume with --resume /runs/luca/luca-000002-state added to the trainer's command"
    (b,) = derive_alerts(AlertInputs(state=RunState.INTERRUPTED, config=CARD, checkpoints=cks, keyboard_interrupt=True))
    assert "SIGINT" in b.message
    assert "--network_weights /runs/luca/luca-000002.safetensors and --max_train_epochs 10" in b.fix


def test_stall_message_and_key_follow_the_step() -> None:
    tree = ProcessTree(trainer=ProcInfo(pid=4242, create_time=1.0, cmdline=("python",)))
    (a,) = derive_alerts(AlertInputs(state=RunState.STALLED, step=77, seconds_per_step=3.0, now=1000.0,
                                     last_step_at=1000.0 - 1500, process=tree))
    assert a.kind == "stall" and a.key == "stall:77"
    assert "25 min" in a.message and "3.0 s/step" in a.message and "PID 4242" in a.message
    assert "py-spy dump --pid 4242" in a.fix


def test_disk_forecast_against_free_space() -> None:
    cks = (ckpt("luca-000002.safetensors", 100, 2, size=200_000_000),)
    base = {"state": RunState.TRAINING, "config": CARD, "options": CARD_OPTS, "checkpoints": cks, "remaining_saves": 5}
    assert derive_alerts(AlertInputs(**base, disk_free=10_000_000_000)) == ()
    (a,) = derive_alerts(AlertInputs(**base, disk_free=600_000_000))
    assert a.kind == "disk" and a.severity is Severity.ERROR
    assert "5 more saves" in a.message and "1.0 GB needed" in a.message and "600.0 MB free" in a.message
    assert "--save_last_n_epochs 2" in a.fix
    # with --save_state the state dirs count too
    (b,) = derive_alerts(AlertInputs(**{**base, "options": {**CARD_OPTS, "save_state": True}}, disk_free=3_000_000_000))
    assert "800.0 MB" in b.message


def test_gpu_heat_and_throttle() -> None:
    gpu = GpuStatus(available=True, gpus=(
        GpuSample(index=0, name="RTX 4090", temperature=88, power_limit=450.0,
                  throttle_reasons=("sw_power_cap", "hw_thermal_slowdown")),
        GpuSample(index=1, name="RTX 4090", temperature=60, throttle_reasons=("gpu_idle",)),
    ))
    alerts = derive_alerts(AlertInputs(state=RunState.TRAINING, gpu=gpu, gpu_temp_warn=85))
    assert [(a.kind, a.key) for a in alerts] == [("gpu_heat", "gpu_heat:0"), ("gpu_throttle", "gpu_throttle:0")]
    assert "88 C" in alerts[0].message and "-pl 382" in alerts[0].fix
    assert "hw_thermal_slowdown" in alerts[1].message and "sw_power_cap" not in alerts[1].message


def test_finished_info_and_reader_problems_sorted_after_errors() -> None:
    final = ckpt("luca.safetensors", 600, 12, kind=CheckpointKind.FINAL)
    alerts = derive_alerts(AlertInputs(state=RunState.FINISHED, checkpoints=(final,), step=600,
                                       problems=("permission denied: logs/x", "skipped bad CRC record")))
    assert kinds(alerts) == ["reader", "finished", "reader"]
    assert alerts[0].severity is Severity.WARNING
    assert "luca.safetensors (190.0 MB)" in alerts[1].message


def test_host_oom_from_sigkill() -> None:
    (a,) = derive_alerts(AlertInputs(state=RunState.INTERRUPTED, exit_signal=9,
                                     options={"max_data_loader_n_workers": ("8",)})
                         )[:1]
    assert a.kind == "host_oom" and "--max_data_loader_n_workers 8 -> 2" in a.fix


def test_disk_forecast_uses_the_measured_state_dir_size() -> None:
    cks = (ckpt("luca-000002.safetensors", 100, 2, size=200_000_000),)
    inp = AlertInputs(state=RunState.TRAINING, config=CARD, options={**CARD_OPTS, "save_state": True},
                      checkpoints=cks, remaining_saves=5, state_dir_size=1_000_000_000, disk_free=5_000_000_000)
    (a,) = derive_alerts(inp)
    assert "5 more saves x 1.2 GB = 6.0 GB needed" in a.message


def test_dataset_toml_errors_get_the_fix_of_their_kind() -> None:
    """voluptuous says what is wrong and where; the fix follows (config_util.ConfigSanitizer)."""
    def fix(line: str) -> str:
        (a,) = derive_alerts(AlertInputs(state=RunState.FAILED, traceback=line))
        return a.fix or ""

    wrong_type = fix("voluptuous.error.MultipleInvalid: expected int for dictionary value "
                     "@ data['datasets'][0]['resolution']")
    assert wrong_type.startswith("fix the dataset TOML: 'resolution' (in datasets[0]) must be of type int")
    assert "misspelled" not in wrong_type
    extra = fix("voluptuous.error.MultipleInvalid: extra keys not allowed @ data['datasets'][0]['subsets'][1]['num_repeat']")
    assert extra == ("fix the dataset TOML: 'num_repeat' (in datasets[0].subsets[1]) is not an option sd-scripts "
                     "knows there (misspelled or misplaced)")
    required = fix("voluptuous.error.MultipleInvalid: required key not provided @ data['datasets'][0]['subsets'][0]['image_dir']")
    assert required == "fix the dataset TOML: add the required key 'image_dir' (in datasets[0].subsets[0])"


def test_no_data_found_names_the_missing_or_empty_image_dirs() -> None:
    from tests.unit.test_logparse import feed_text, rec

    text = (rec(["found directory /data/img contains 0 image files"], "train_util.py:1940")
            + rec(["not directory: /data/10 luca"], "train_util.py:1905", level="WARNING")
            + rec(["No data found. Please verify arguments (train_data_dir must be the parent of",
                   "folders with images) / 画像がありません。"], "train_network.py:300", level="ERROR"))
    facts = feed_text(text).facts
    assert facts.no_data and facts.empty_image_dirs == ("/data/img", "/data/10 luca")
    (a,) = derive_alerts(AlertInputs(state=RunState.FAILED, traceback="No data found. Please verify arguments",
                                     empty_image_dirs=facts.empty_image_dirs))
    assert a.fix == "no images in image_dir /data/img, '/data/10 luca' (missing or empty): fix image_dir in the dataset TOML"
