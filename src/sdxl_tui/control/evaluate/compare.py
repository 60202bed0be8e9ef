"""Comparison grids: the same prompts and seeds over several checkpoints, in one image.

Why: picking the best epoch (usually 6-10) means looking at images side by side. A comparison
queues one evaluation per checkpoint with shared prompts and assembles the results into a
labelled grid (rows = checkpoints, columns = prompts) once they are done.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxl_tui.control.evaluate.plan import EvalError, compare_dir, default_output_dir
from sdxl_tui.control.evaluate.store import eval_record, read_manifest, result_images, update_status
from sdxl_tui.formats.names import (
    epoch_from_name,
)
from sdxl_tui.formats.statedir import read_json


@dataclass(frozen=True)
class CompareJob:
    """A comparison grid waiting for (or built from) its evaluations."""

    label: str
    names: tuple[str, ...]  # checkpoint stems, one grid row each, in order
    output_dirs: tuple[str, ...]
    grid_path: str
    status: str  # waiting | done | failed
    job_path: str = ""
    error: str | None = None
    started: tuple[str, ...] = ()  # names whose evaluation this job queued (others reused)


# --------------------------------------------------------------------------- comparison grid


def label_for(paths: Sequence[str]) -> str:
    epochs = [epoch_from_name(Path(p).stem) for p in paths]
    if epochs and all(e is not None for e in epochs):
        nums = sorted(e for e in epochs if e is not None)
        return f"epochs_{nums[0]}-{nums[-1]}" if len(nums) > 1 else f"epoch_{nums[0]}"
    stems = "_".join(Path(p).stem for p in paths)
    return ("cmp_" + re.sub(r"[^\w.-]+", "_", stems))[:120]


def grid_path_for(run_dir: str | os.PathLike[str], checkpoints: Sequence[str]) -> str:
    """Where the grid of these checkpoints is saved: ``OUTPUT_DIR/compare_<label>.png``."""
    return os.path.join(os.path.abspath(os.fspath(run_dir)), f"compare_{label_for(checkpoints)}.png")


def output_dir_of(run_dir: str, checkpoint: str) -> str:
    rec = eval_record(run_dir, Path(checkpoint).stem)
    return rec.output_dir if rec and rec.output_dir else default_output_dir(run_dir, checkpoint)


def build_grid(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    output: str | None = None,
    cell: int = 256,
    output_dirs: Sequence[str] | None = None,
) -> str:
    """Assemble the grid from evaluation folders that exist: rows = checkpoints (labelled
    with name/epoch), columns = images by index, labelled with the manifest's prompt and
    seed when there is one. Missing images are drawn as dark red tiles.

    Raises:
        EvalError: no images at all in any of the folders.
    """
    from sdxl_tui.render.sheet import comparison_grid

    run_dir = os.path.abspath(os.fspath(run_dir))
    dirs = list(output_dirs) if output_dirs else [output_dir_of(run_dir, c) for c in checkpoints]
    rows: list[tuple[str, list[str | None]]] = []
    column_labels: list[str] = []
    prompt_sets = set()
    for ck, folder in zip(checkpoints, dirs, strict=False):
        manifest = read_manifest(folder)
        images: list[str | None]
        if manifest and isinstance(manifest.get("prompts"), list):
            entries = manifest["prompts"]
            images = [os.path.join(folder, str(e.get("file"))) for e in entries]
            labels = [f"{e.get('prompt', '')} (seed {e.get('seed')})" for e in entries]
            prompt_sets.add(tuple((e.get("prompt"), e.get("seed")) for e in entries))
            if len(labels) > len(column_labels):
                column_labels = labels
        else:
            images = list(result_images(folder))
            if len(images) > len(column_labels):
                column_labels = [os.path.basename(p or "") for p in images]
        epoch = epoch_from_name(Path(ck).stem)
        rows.append((f"epoch {epoch}" if epoch is not None else Path(ck).stem, images))
    if not any(img for _, imgs in rows for img in imgs if img and os.path.isfile(img)):
        raise EvalError("no evaluation images to compare yet: " + ", ".join(dirs))
    title = f"{os.path.basename(run_dir)}: " + ", ".join(Path(c).stem for c in checkpoints)
    if len(prompt_sets) > 1:
        title += "  (warning: prompts/seeds differ between rows)"
    grid = comparison_grid(rows, column_labels, cell=cell, title=title)
    path = output or grid_path_for(run_dir, checkpoints)
    tmp = path + ".tmp.png"
    grid.save(tmp)
    os.replace(tmp, path)
    return path


def job_from(path: str, data: Mapping[str, Any]) -> CompareJob:
    return CompareJob(
        label=os.path.basename(path)[: -len(".json")],
        names=tuple(str(n) for n in data.get("checkpoints") or ()),
        output_dirs=tuple(str(d) for d in data.get("output_dirs") or ()),
        grid_path=str(data.get("grid") or ""),
        status=str(data.get("status") or "failed"),
        job_path=path,
        error=data.get("error"),
        started=tuple(str(n) for n in data.get("started") or ()),
    )


def compare_jobs(run_dir: str | os.PathLike[str]) -> tuple[CompareJob, ...]:
    """Comparison jobs of the run directory (waiting, done or failed)."""
    folder = compare_dir(run_dir)
    try:
        with os.scandir(folder) as it:
            paths = sorted(e.path for e in it if e.name.endswith(".json"))
    except OSError:
        return ()
    jobs = []
    for path in paths:
        data = read_json(path)
        if data is not None:
            jobs.append(job_from(path, data))
    return tuple(jobs)


def compare_ready(run_dir: str, job: CompareJob) -> bool:
    for ck in job.names:
        rec = eval_record(run_dir, Path(ck).stem)
        if rec is not None and rec.active:
            return False
    return True


def finish_compare(run_dir: str, job: CompareJob) -> CompareJob:
    try:
        path = build_grid(run_dir, job.names, output=job.grid_path, output_dirs=job.output_dirs or None)
        update_status(job.job_path, status="done", grid=path, ended_at=time.time(), error=None)
    except (EvalError, OSError) as exc:
        update_status(job.job_path, status="failed", ended_at=time.time(), error=str(exc))
    data = read_json(job.job_path) or {}
    return job_from(job.job_path, data)


def has_results(folder: str) -> bool:
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest.get("status") == "done" and bool(result_images(folder))
    return bool(result_images(folder))


def compare_job(run_dir: str | os.PathLike[str], label: str) -> CompareJob | None:
    path = os.path.join(compare_dir(run_dir), label + ".json")
    data = read_json(path)
    return job_from(path, data) if data is not None else None


