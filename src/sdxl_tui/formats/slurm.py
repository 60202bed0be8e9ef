"""Slurm: the ``[slurm]`` launch table, the batch script, and what Slurm's commands print.

Pure: text in, frozen values out; nothing here runs a command. The control layer submits and
cancels, the sources layer asks the scheduler; both speak through these functions so the
facts about Slurm's formats live in one place.

Formats used (Slurm 22.05 and later print them the same way):

* ``sbatch --parsable``: ``JOBID`` or ``JOBID;CLUSTER``.
* ``squeue -h -t all -j ID -o FORMAT``: one line per job with the fields of
  :data:`SQUEUE_FORMAT`, ``|``-separated. An explicit ``-o`` format rather than ``--json``:
  the JSON layout changed between releases (22.05's v0.0.38 against 23.02's v0.0.39 with
  ``job_state`` as a list and numbers as ``{"set", "number"}``), the text format did not.
* ``scontrol show job -o ID``: one line of ``Key=Value`` words.
* ``sacct -P -n -X -j ID -o FIELDS``: ``|``-separated, in :data:`SACCT_FIELDS` order; without an
  accounting database it exits non-zero ("Slurm accounting storage is disabled").
* Durations (``squeue %l %M``, ``scontrol RunTime``, ``sacct Elapsed``):
  ``[DAYS-][HH:]MM:SS``; ``--time`` also takes ``MINUTES``, ``DAYS-HOURS`` and
  ``DAYS-HOURS:MINUTES`` (sbatch(1), option ``--time``).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdxl_tui.formats.statedir import SLURM_END_NAME

__all__ = [
    "ACTIVE_STATES",
    "END_NAME",
    "FINAL_STATES",
    "SACCT_FIELDS",
    "SQUEUE_FORMAT",
    "BatchSpec",
    "JobInfo",
    "SlurmConfig",
    "SlurmConfigError",
    "batch_script",
    "check_gres",
    "check_mem",
    "format_time_limit",
    "parse_duration",
    "parse_end_record",
    "parse_sacct",
    "parse_sbatch_parsable",
    "parse_scontrol_job",
    "parse_squeue",
    "parse_time_limit",
    "queue_position",
    "sbatch_argv",
    "slurm_config_from_dict",
]

#: Job states in which the job still holds (or waits for) resources.
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
})
#: Job states that end a job (squeue(1), "JOB STATE CODES").
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})

#: The batch script writes how the trainer ended here (``OUTPUT_DIR/.sdxl-tui/``), so the end
#: is known after the controller has forgotten the job and without an accounting database.
END_NAME = SLURM_END_NAME

_KEYS = ("partition", "gres", "time", "cpus_per_task", "mem", "account", "qos", "extra_args", "setup")
#: sbatch options sdxl-tui sets itself (or that would break the run record); not allowed in extra_args.
_RESERVED = ("--output", "-o", "--error", "-e", "--chdir", "-D", "--parsable", "--wrap", "--open-mode",
             "--dependency", "-d", "--input", "-i")
_TOKEN = re.compile(r"[^\s#'\"\\]+")
_GRES_ITEM = re.compile(r"[A-Za-z][\w.\-]*(?::[\w.\-]+)?(?::\d+[KMGTP]?)?")
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)


class SlurmConfigError(ValueError):
    """A ``[slurm]`` value is wrong; the message names the key and the accepted form."""


# --------------------------------------------------------------------------- durations


def parse_duration(text: str) -> int | None:
    """Seconds in a Slurm duration; None for ``UNLIMITED``/``INFINITE``/``NOT_SET``/``N/A``.

    Accepts every ``--time`` form: ``MINUTES``, ``MINUTES:SECONDS``, ``HOURS:MINUTES:SECONDS``,
    ``DAYS-HOURS``, ``DAYS-HOURS:MINUTES``, ``DAYS-HOURS:MINUTES:SECONDS`` (what squeue and
    scontrol print is a subset). Raises ValueError on anything else.
    """
    t = text.strip()
    if t.upper() in ("UNLIMITED", "INFINITE", "NOT_SET", "N/A", "INVALID", "PARTITION_LIMIT", ""):
        return None
    days = 0
    m = re.fullmatch(r"(\d+)-(.+)", t)
    if m:
        days, t = int(m.group(1)), m.group(2)
        parts = t.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) > 3:
            raise ValueError(f"not a Slurm duration: {text!r}")
        h, mi, s = (int(p) for p in [*parts, "0", "0"][:3])
        return days * 86400 + h * 3600 + mi * 60 + s
    parts = t.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise ValueError(f"not a Slurm duration: {text!r}")
    nums = [int(p) for p in parts]
    if len(nums) == 1:
        return nums[0] * 60
    if len(nums) == 2:
        return nums[0] * 60 + nums[1]
    return nums[0] * 3600 + nums[1] * 60 + nums[2]


def parse_time_limit(text: str) -> int | None:
    """A ``--time`` value in seconds (None: unlimited); SlurmConfigError with the forms if bad."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise SlurmConfigError(
            f"time {text!r} is not a Slurm time limit; use MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
            "D-HH:MM:SS or UNLIMITED (sbatch --time)") from None
    if seconds == 0:
        raise SlurmConfigError("time 0 would end the job at once; give a limit or UNLIMITED")
    return seconds


def format_time_limit(seconds: int | None) -> str:
    """Slurm's own way: ``D-HH:MM:SS``, ``H:MM:SS`` or ``M:SS``; ``UNLIMITED`` for None."""
    if seconds is None:
        return "UNLIMITED"
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d}-{h:02d}:{m:02d}:{s:02d}"
    if h:
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m}:{s:02d}"


def check_gres(text: str) -> str:
    """``--gres`` syntax: comma-separated ``NAME[:TYPE][:COUNT]`` (``gpu:1``, ``gpu:a100:2``)."""
    items = text.split(",")
    if not text or not all(_GRES_ITEM.fullmatch(i) for i in items):
        raise SlurmConfigError(
            f"gres {text!r} is not Slurm's --gres syntax: NAME[:TYPE][:COUNT] items separated by commas, "
            "e.g. \"gpu:1\" or \"gpu:a100:2\"")
    return text


def check_mem(text: str) -> str:
    """``--mem`` syntax: a number of megabytes, or with a K/M/G/T suffix (``64G``)."""
    if not _MEM.fullmatch(text):
        raise SlurmConfigError(f"mem {text!r} is not Slurm's --mem syntax: a size such as 32000, 64G or 500M")
    return text


# --------------------------------------------------------------------------- the [slurm] table


@dataclass(frozen=True)
class SlurmConfig:
    """The ``[slurm]`` table of a launch config: what ``sbatch`` is asked for.

    Every value but ``setup`` and ``extra_args`` becomes one ``#SBATCH`` line; ``extra_args``
    are handed to sbatch as argv words (never through a shell); ``setup`` lines are shell
    lines run before the trainer (``module load``, ``source …/activate``), as the user wrote them.
    """

    partition: str | None = None
    gres: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    extra_args: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()

    @property
    def time_limit_seconds(self) -> int | None:
        return None if self.time is None else parse_time_limit(self.time)

    def sbatch_lines(self) -> list[str]:
        """The ``#SBATCH`` lines, in a fixed order."""
        pairs = (("partition", self.partition), ("gres", self.gres), ("time", self.time),
                 ("cpus-per-task", None if self.cpus_per_task is None else str(self.cpus_per_task)),
                 ("mem", self.mem), ("account", self.account), ("qos", self.qos))
        return [f"#SBATCH --{name}={value}" for name, value in pairs if value is not None]


def _token(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise SlurmConfigError(
            f"{where}: [slurm] {key} must be one word without spaces, quotes or '#', got {value!r}")
    return value


def slurm_config_from_dict(table: Mapping[str, Any], *, where: str = "launch config") -> SlurmConfig:
    """Validate a parsed ``[slurm]`` table; SlurmConfigError names the key and the fix."""
    unknown = [k for k in table if k not in _KEYS]
    if unknown:
        raise SlurmConfigError(f"{where}: unknown key(s) in [slurm]: {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    words: dict[str, str | None] = {}
    for key in ("partition", "gres", "time", "mem", "account", "qos"):
        value = table.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key in ("time", "mem"):
            value = str(value)
        words[key] = None if value is None else _token(where, key, value)
    try:
        if words["time"] is not None:
            parse_time_limit(words["time"])
        if words["gres"] is not None:
            check_gres(words["gres"])
        if words["mem"] is not None:
            check_mem(words["mem"])
    except SlurmConfigError as exc:
        raise SlurmConfigError(f"{where}: [slurm] {exc}") from None
    cpus = table.get("cpus_per_task")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1):
        raise SlurmConfigError(f"{where}: [slurm] cpus_per_task must be a whole number >= 1, got {cpus!r}")
    extra = _str_list(where, "extra_args", table.get("extra_args", []))
    for arg in extra:
        name = arg.split("=", 1)[0]
        if not arg.startswith("-"):
            raise SlurmConfigError(
                f"{where}: [slurm] extra_args: {arg!r} is not an sbatch option (write \"--name=value\")"
            )
        if name in _RESERVED:
            raise SlurmConfigError(f"{where}: [slurm] extra_args: {name} is set by sdxl-tui itself"
                                   + (" (queue runs with `sdxl-tui queue add --after`)"
                                      if name in ("--dependency", "-d") else ""))
    setup = _str_list(where, "setup", table.get("setup", []))
    if any("\n" in line or "\0" in line for line in setup):
        raise SlurmConfigError(f"{where}: [slurm] setup: one shell line per list item (no newlines)")
    return SlurmConfig(partition=words["partition"], gres=words["gres"], time=words["time"],
                       cpus_per_task=cpus, mem=words["mem"], account=words["account"], qos=words["qos"],
                       extra_args=tuple(extra), setup=tuple(setup))


def _str_list(where: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SlurmConfigError(f"{where}: [slurm] {key} must be a list of strings")
    return list(value)


# --------------------------------------------------------------------------- the batch script


@dataclass(frozen=True)
class BatchSpec:
    """Everything the batch script and the sbatch line are made of."""

    slurm: SlurmConfig
    argv: tuple[str, ...]
    cwd: str
    output_dir: str
    log_path: str
    state_dir: str  # OUTPUT_DIR/.sdxl-tui: where the end record goes
    env: tuple[tuple[str, str], ...] = ()
    job_name: str = "sdxl-tui"
    source: str | None = None  # the launch config file, named in the script's header


def batch_script(spec: BatchSpec) -> str:
    """The batch script text.

    Signals: ``sdxl-tui kill`` runs ``scancel --full --signal=INT``, which signals this shell
    and its children (the trainer and its DataLoader workers), like Ctrl-C in a terminal. A
    trapped signal lets bash wait for the trainer to finish its KeyboardInterrupt; then the
    end record is written and, after an interrupt, the job cancels itself so Slurm's record
    says CANCELLED as for any scancel. At the time limit Slurm sends SIGTERM to everything
    (then SIGKILL after KillWait); the trap keeps bash alive long enough to write the record.
    """
    end = f"{spec.state_dir}/{END_NAME}"
    q = shlex.quote
    lines = ["#!/bin/bash"]
    lines.append(f"# Generated by sdxl-tui for {spec.output_dir}" + (f" from {spec.source}" if spec.source else ""))
    lines += spec.slurm.sbatch_lines()
    lines += [
        "",
        "sdxl_tui_signal=",
        "trap 'sdxl_tui_signal=INT' INT",
        "trap 'sdxl_tui_signal=TERM' TERM",
        f"cd {q(spec.cwd)} || exit 1",
    ]
    lines += [f"export {name}={q(value)}" for name, value in spec.env]
    if spec.slurm.setup:
        lines.append("# [slurm] setup")
        lines += list(spec.slurm.setup)
    lines += [
        "# the trainer",
        shlex.join(spec.argv),
        "sdxl_tui_status=$?",
        ("printf '{\"job_id\": \"%s\", \"exit_code\": %d, \"signal\": \"%s\", \"node\": \"%s\", \"ended_at\": %s}\\n' "
         "\"${SLURM_JOB_ID:-}\" \"$sdxl_tui_status\" \"$sdxl_tui_signal\" \"$(hostname -s)\" \"$(date +%s)\" "
         f"> {q(end + '.tmp')} && mv -f {q(end + '.tmp')} {q(end)}"),
        "if [ \"$sdxl_tui_signal\" = INT ] && [ -n \"${SLURM_JOB_ID:-}\" ]; then scancel \"$SLURM_JOB_ID\"; fi",
        "exit \"$sdxl_tui_status\"",
    ]
    return "\n".join(lines) + "\n"


def _filename_pattern(path: str) -> str:
    """sbatch expands ``%j``, ``%x``… in ``--output``; ``%%`` is a literal percent sign."""
    return path.replace("%", "%%")


def sbatch_argv(spec: BatchSpec, script_path: str, *, dependency: str | None = None,
                program: str = "sbatch") -> list[str]:
    """The sbatch command line (an argv list: no shell between it and the user's values)."""
    log = _filename_pattern(spec.log_path)
    argv = [program, "--parsable", f"--job-name={spec.job_name}", f"--chdir={spec.cwd}",
            f"--output={log}", f"--error={log}", "--open-mode=append"]
    if dependency:
        argv.append(f"--dependency={dependency}")
    argv += list(spec.slurm.extra_args)
    argv.append(script_path)
    return argv


# --------------------------------------------------------------------------- command outputs


@dataclass(frozen=True)
class JobInfo:
    """One job as one Slurm command described it (fields the command does not print are None)."""

    job_id: str
    state: str | None = None
    reason: str | None = None
    nodes: str | None = None
    time_limit: int | None = None  # seconds; None = unlimited or unknown
    elapsed: int | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    user: str | None = None
    partition: str | None = None
    cluster: str | None = None
    source: str = ""


def parse_sbatch_parsable(text: str) -> tuple[str, str | None]:
    """``(job_id, cluster or None)`` from ``sbatch --parsable``; ValueError if it is not that."""
    line = text.strip().splitlines()[-1] if text.strip() else ""
    job, _, cluster = line.partition(";")
    if not re.fullmatch(r"\d+(_\d+)?", job):
        raise ValueError(f"sbatch printed no job id: {text.strip()[:200]!r}")
    return job, (cluster or None)


def _timestamp(text: str | None) -> float | None:
    """Slurm's local ``YYYY-MM-DDTHH:MM:SS`` as Unix seconds (``N/A``, ``Unknown``: None)."""
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def _duration(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None


def _none(text: str | None) -> str | None:
    if text is None:
        return None
    t = text.strip()
    return None if t in ("", "(null)", "N/A", "None", "n/a") else t


def _state(text: str | None) -> str | None:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``RUNNING`` stays."""
    t = _none(text)
    return t.split()[0].upper() if t else None


def _exit(text: str | None) -> tuple[int | None, int | None]:
    """``ExitCode=130:0`` -> (130, None); ``0:9`` -> (None, 9): code, or the killing signal."""
    m = re.fullmatch(r"\s*(\d+):(\d+)\s*", text or "")
    if not m:
        return None, None
    code, sig = int(m.group(1)), int(m.group(2))
    return (None, sig) if sig else (code, None)


#: squeue ``-o`` fields: job id, state, reason, nodes, limit, used, submit, start, end, user, partition.
SQUEUE_FORMAT = "%i|%T|%r|%N|%l|%M|%V|%S|%e|%u|%P"


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue -h -o SQUEUE_FORMAT`` output, by job id (lines that do not fit are skipped)."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        f = line.split("|")
        if len(f) != 11 or not f[0].strip():
            continue
        state = _state(f[1])
        running = state not in (None, "PENDING")
        jobs[f[0].strip()] = JobInfo(
            job_id=f[0].strip(), state=state, reason=_none(f[2]), nodes=_none(f[3]),
            time_limit=_duration(f[4]), elapsed=_duration(f[5]), submitted_at=_timestamp(f[6]),
            started_at=_timestamp(f[7]) if running else None,
            ended_at=_timestamp(f[8]) if state in FINAL_STATES else None,
            user=_none(f[9]), partition=_none(f[10]), source="squeue")
    return jobs


def queue_position(text: str, job_id: str) -> int | None:
    """1-based place of ``job_id`` among pending jobs (``squeue -h -t PD -o %i --sort=-p,i``)."""
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    return ids.index(job_id) + 1 if job_id in ids else None


_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=")


def parse_scontrol_job(text: str) -> JobInfo | None:
    """``scontrol show job -o ID``: its ``Key=Value`` words (values may hold spaces)."""
    line = next((ln for ln in text.splitlines() if ln.startswith("JobId=")), None)
    if line is None:
        return None
    marks = list(_SCONTROL_KEY.finditer(line))
    kv: dict[str, str] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        kv[m.group(1)] = line[m.end():end].strip()
    code, sig = _exit(kv.get("ExitCode"))
    user = _none(kv.get("UserId"))
    state = _state(kv.get("JobState"))
    return JobInfo(
        job_id=kv.get("JobId", ""), state=state, reason=_none(kv.get("Reason")),
        nodes=_none(kv.get("NodeList")), time_limit=_duration(kv.get("TimeLimit")),
        elapsed=_duration(kv.get("RunTime")), submitted_at=_timestamp(kv.get("SubmitTime")),
        started_at=_timestamp(kv.get("StartTime")) if state != "PENDING" else None,
        ended_at=_timestamp(kv.get("EndTime")) if state in FINAL_STATES else None,
        exit_code=code, exit_signal=sig, user=user.split("(")[0] if user else None,
        partition=_none(kv.get("Partition")), cluster=None, source="scontrol")


#: sacct ``-o`` fields, in the order :func:`parse_sacct` reads them.
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "Timelimit", "Submit", "Start", "End",
                "NodeList", "Reason", "User", "Partition", "Cluster")


def parse_sacct(text: str, job_id: str) -> JobInfo | None:
    """``sacct -P -n -X -j ID -o SACCT_FIELDS`` (the allocation line of ``job_id``)."""
    for line in text.splitlines():
        f = line.split("|")
        if len(f) != len(SACCT_FIELDS) or f[0] != job_id:
            continue
        code, sig = _exit(f[2])
        state = _state(f[1])
        return JobInfo(
            job_id=job_id, state=state, reason=_none(f[9]), nodes=_none(f[8]) if f[8] != "None assigned" else None,
            time_limit=_duration(f[4]), elapsed=_duration(f[3]), submitted_at=_timestamp(f[5]),
            started_at=_timestamp(f[6]), ended_at=_timestamp(f[7]), exit_code=code, exit_signal=sig,
            user=_none(f[10]), partition=_none(f[11]), cluster=_none(f[12]), source="sacct")
    return None


def parse_end_record(data: Mapping[str, Any], job_id: str) -> JobInfo | None:
    """The batch script's end record (:data:`END_NAME`), if it is about ``job_id``."""
    if str(data.get("job_id", "")) != job_id:
        return None
    code = data.get("exit_code")
    ended = data.get("ended_at")
    node = data.get("node")
    return JobInfo(job_id=job_id, exit_code=code if isinstance(code, int) else None,
                   ended_at=float(ended) if isinstance(ended, (int, float)) else None,
                   nodes=node if isinstance(node, str) and node else None, source="end record")


def shell_join(words: Sequence[str]) -> str:
    """An argv as one copy-paste line (for the confirmation: the exact sbatch line)."""
    return shlex.join(words)
