"""The launch config's backend and [slurm] table: read, validated, written back."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdxl_tui.formats.launch_config import (
    LaunchConfigError,
    load_launch_config,
    write_launch_config,
)
from sdxl_tui.formats.slurm import SlurmConfig

BASE = '[launch]\nprefix = ["python"]\noutput_dir = "out"\n'


def test_local_is_the_default_and_slurm_round_trips(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(BASE, encoding="utf-8")
    local = load_launch_config(tmp_path / "a.toml")
    assert (local.backend, local.slurm) == ("local", None)
    (tmp_path / "b.toml").write_text(BASE + 'backend = "slurm"\n\n[slurm]\npartition = "gpu"\ngres = "gpu:a100:1"\n'
                                     'time = "1-00:00:00"\ncpus_per_task = 8\nextra_args = ["--exclusive"]\n'
                                     'setup = ["module load cuda"]\n', encoding="utf-8")
    cfg = load_launch_config(tmp_path / "b.toml")
    assert cfg.backend == "slurm"
    assert cfg.slurm == SlurmConfig(partition="gpu", gres="gpu:a100:1", time="1-00:00:00", cpus_per_task=8,
                                    extra_args=("--exclusive",), setup=("module load cuda",))
    again = load_launch_config(write_launch_config(cfg, tmp_path / "c.toml"))
    assert (again.backend, again.slurm) == (cfg.backend, cfg.slurm)
    bare = tmp_path / "d.toml"
    bare.write_text(BASE + 'backend = "slurm"\n', encoding="utf-8")
    assert load_launch_config(bare).slurm == SlurmConfig()  # the cluster's defaults


@pytest.mark.parametrize(("text", "message"), [
    ('backend = "pbs"\n', "backend must be one of local, slurm"),
    ('backend = "slurm"\n\n[slurm]\ntime = "12h"\n', "[slurm] time '12h' is not a Slurm time limit"),
    ('\n[slurm]\nqueue = "gpu"\n', "unknown key(s) in [slurm]: queue"),
    ('\n[args]\nnetwork_dim = 4\n\n[slurm.gres]\ncount = 1\n', "[slurm] gres must be one word"),
])
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + text, encoding="utf-8")
    with pytest.raises(LaunchConfigError) as err:
        load_launch_config(path)
    assert message in str(err.value) and str(path) in str(err.value)
