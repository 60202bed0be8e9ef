"""``nvidia-smi --query-gpu=… --format=csv,noheader,nounits``: the GPUs of another machine.

Why nvidia-smi and not NVML: a Slurm job's GPUs are on the compute node, reachable only by
running a program there (``srun --jobid=ID --overlap nvidia-smi …``); nvidia-smi prints the
same NVML figures as text. Pure: the argv to run and the parser of its output.
"""

from __future__ import annotations

import csv
import re

from sdxl_tui.model import GpuSample

__all__ = ["QUERY_FIELDS", "parse_query_gpu", "query_argv"]

#: The ``--query-gpu`` fields, in the order :func:`parse_query_gpu` reads them.
QUERY_FIELDS = ("index", "name", "uuid", "memory.used", "memory.total", "utilization.gpu",
                "utilization.memory", "temperature.gpu", "power.draw", "power.limit")
_MIB = 1024 * 1024
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def query_argv(program: str = "nvidia-smi") -> list[str]:
    """The nvidia-smi command line whose output :func:`parse_query_gpu` reads."""
    return [program, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]


def _number(text: str) -> float | None:
    """``42``, ``101.73``, ``0 MiB``, ``101.24 W`` -> a number; ``[N/A]``/``[Not Supported]`` -> None."""
    m = _NUMBER.match(text.strip())
    return float(m.group(0)) if m else None


def _int(text: str) -> int | None:
    value = _number(text)
    return None if value is None else int(value)


def parse_query_gpu(text: str) -> tuple[GpuSample, ...]:
    """One :class:`GpuSample` per line (with or without units); lines that do not fit are skipped."""
    samples = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != len(QUERY_FIELDS):
            continue
        index = _int(row[0])
        if index is None:
            continue
        used, total = _number(row[3]), _number(row[4])
        uuid = row[2].strip()
        samples.append(GpuSample(
            index=index, name=row[1].strip(), uuid=uuid if uuid.startswith("GPU-") else None,
            memory_used=None if used is None else int(used * _MIB),
            memory_total=None if total is None else int(total * _MIB),
            utilization=_int(row[5]), memory_utilization=_int(row[6]), temperature=_int(row[7]),
            power_draw=_number(row[8]), power_limit=_number(row[9]),
        ))
    return tuple(samples)
