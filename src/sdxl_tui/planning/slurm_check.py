"""The Slurm part of a launch check: can this machine submit the job, and will Slurm take it?

Why before the start: a wrong partition or a time limit above the partition's makes sbatch
refuse at once (better said by the check, with the partitions that exist), and a job without
a GPU request or with no time limit runs somewhere unexpected or is cut at the partition's
default. The syntax of ``time``, ``gres`` and ``mem`` is already checked when the launch
config is read (``formats/slurm.py``); here the cluster is asked (``sinfo``).
"""

from __future__ import annotations

import shutil

from sdxl_tui.formats.slurm import SlurmConfig, format_time_limit, parse_duration
from sdxl_tui.planning.findings import Finding
from sdxl_tui.sources.scheduler import Runner, run_command

__all__ = ["RULES", "check_slurm"]

#: ``(code, severity, what it means)`` for ``sdxl-tui check --help``.
RULES = (
    ("slurm-no-sbatch", "error", "backend = \"slurm\" but sbatch is not on PATH (not a login node?)"),
    ("slurm-partition-unknown", "error", "[slurm] partition that sinfo does not list"),
    ("slurm-time-over-limit", "error", "[slurm] time above the partition's MaxTime (sbatch refuses)"),
    ("slurm-partition-down", "warning", "the partition is not up (jobs stay pending)"),
    ("slurm-no-gres", "warning", "no [slurm] gres: the job may get no GPU"),
    ("slurm-no-time", "note", "no [slurm] time: the partition's default limit applies"),
)


def _partitions(runner: Runner) -> tuple[dict[str, tuple[str, str]], str | None, str | None]:
    """``({name: (availability, time limit)}, default partition, problem)`` from sinfo."""
    res = runner(["sinfo", "-h", "-o", "%P|%a|%l"])
    if res.returncode != 0:
        return {}, None, res.first_error
    parts: dict[str, tuple[str, str]] = {}
    default = None
    for line in res.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3:
            continue
        name = fields[0]
        if name.endswith("*"):
            name = name[:-1]
            default = name
        parts[name] = (fields[1], fields[2])
    return parts, default, None


def check_slurm(slurm: SlurmConfig | None, *, runner: Runner = run_command, sbatch: str = "sbatch") -> list[Finding]:
    """Findings about the ``[slurm]`` table of a ``backend = "slurm"`` launch."""
    cfg = slurm or SlurmConfig()
    out: list[Finding] = []
    if shutil.which(sbatch) is None:
        return [Finding("error", "slurm-no-sbatch", f"{sbatch} is not on PATH: this machine cannot submit Slurm jobs",
                        "run sdxl-tui on the cluster's login node (or load its Slurm module)", "backend")]
    parts, default, problem = _partitions(runner)
    name = cfg.partition or default
    if problem is not None:
        out.append(Finding("warning", "slurm-partition-unknown", f"sinfo could not list the partitions: {problem}",
                           "check that the Slurm controller answers (sinfo)", "partition"))
    elif cfg.partition is not None and cfg.partition not in parts:
        out.append(Finding("error", "slurm-partition-unknown",
                           f"partition {cfg.partition!r} does not exist "
                           f"(sinfo lists {', '.join(sorted(parts)) or 'none'})",
                           "set [slurm] partition to one of those", "partition"))
        name = None
    if name is not None and name in parts:
        avail, limit = parts[name]
        if avail != "up":
            out.append(Finding("warning", "slurm-partition-down", f"partition {name} is {avail}: the job stays pending",
                               "choose another partition, or ask the admins", "partition"))
        try:
            max_seconds = parse_duration(limit)
        except ValueError:
            max_seconds = None
        wanted = cfg.time_limit_seconds
        if cfg.time is not None and max_seconds is not None and (wanted is None or wanted > max_seconds):
            out.append(Finding("error", "slurm-time-over-limit",
                               f"time {cfg.time} is above partition {name}'s limit {format_time_limit(max_seconds)}: "
                               "sbatch refuses the job",
                               f"set [slurm] time to at most {format_time_limit(max_seconds)} (and resume the rest)",
                               "time"))
    if cfg.gres is None:
        out.append(Finding("warning", "slurm-no-gres", "no [slurm] gres: the job may run without a GPU",
                           "set [slurm] gres = \"gpu:1\"", "gres"))
    if cfg.time is None:
        out.append(Finding("note", "slurm-no-time", "no [slurm] time: the partition's default time limit applies",
                           "set [slurm] time, e.g. \"12:00:00\"", "time"))
    return out
