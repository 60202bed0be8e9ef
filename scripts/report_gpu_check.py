#!/usr/bin/env python3
"""Check the GPU history and the end-of-run report on a real GPU box (run once, by hand).

Why: the unit tests fake NVML; this starts a simulated run the way ``sdxl-tui start`` does
(the supervisor records ``gpu.jsonl``, and with ``SDXL_TUI_REPORT_ON_END=1`` writes the report
when the run ends) while a torch matmul load, if torch with CUDA is installed, fills the GPU.
A second recorder samples every second so a short run has a history. The reports, the
history and the run record are copied to OUT.

Usage: PYTHONPATH=src python3 scripts/report_gpu_check.py OUT
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdxl_tui.control.launch import launch
from sdxl_tui.control.run_end import GpuRecorder
from sdxl_tui.formats.launch_config import LaunchConfig
from sdxl_tui.formats.statedir import read_run_record, state_dir

LOAD = """\
import time, torch
held = torch.empty(40 * 2**30, dtype=torch.uint8, device="cuda")
x = torch.randn(8192, 8192, device="cuda")
t = time.time()
while time.time() - t < 22:
    y = x @ x
torch.cuda.synchronize()
"""


def _start_load() -> subprocess.Popen[bytes] | None:
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip() != "True":
        print("no torch with CUDA: the GPU stays idle", flush=True)
        return None
    return subprocess.Popen([sys.executable, "-c", LOAD])


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    run = work / "night_run"
    os.environ["XDG_CONFIG_HOME"] = str(work / "xdg")  # no user settings file
    load = _start_load()
    cfg = LaunchConfig(
        prefix=(sys.executable, "-m", "sdxl_tui", "simulate", "--sim-batches-per-epoch", "40",
                "--sim-step-seconds", "0.1", "--sim-startup-seconds", "1"),
        script="", output_dir=str(run), env={"SDXL_TUI_REPORT_ON_END": "1"},
        args={"output_name": "night run", "max_train_epochs": 4, "save_every_n_epochs": 1, "network_dim": 4,
              "logging_dir": str(run / "logs"), "log_with": "tensorboard"},
    )
    result = launch(cfg)
    print("launch:", result.ok, result.message, flush=True)
    recorder = GpuRecorder(run, interval=1.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        recorder.tick([load.pid] if load else [])
        record = read_run_record(run)
        if record is not None and record.ended:
            break
        time.sleep(0.25)
    recorder.close()
    report = state_dir(run) / "report.md"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not report.exists():
        time.sleep(0.5)
    if load is not None and load.poll() is None:
        load.kill()
        load.wait()
    for name in ("report.html", "report.md", "gpu.jsonl", "report.log", "run.json"):
        path = state_dir(run) / name
        if path.exists():
            shutil.copy(path, out / name)
    print("copied:", sorted(os.listdir(out)), flush=True)
    return 0 if report.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
