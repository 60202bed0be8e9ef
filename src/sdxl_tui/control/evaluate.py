"""Evaluate checkpoints: one implementation behind key ``e`` and ``sdxl-tui eval``.

Why: the card evaluates checkpoint by checkpoint with its own script, by hand, and picking
the best epoch (usually 6-10) means looking at images side by side. Here an evaluation is:

1. :func:`plan_eval` - plain data: the argv after placeholder substitution (the configured
   template, ``--command``, or the built-in evaluator), the output folder
   (``OUTPUT_DIR/eval_epoch{N}`` as on the card, ``eval_<stem>`` for other files) and
   whether a trainer is using the GPU right now (so the UI can ask "run now / queue until
   training ends"). Placeholders are substituted inside argv elements, never through a shell.
2. :func:`start_eval` - writes the status file ``OUTPUT_DIR/.sdxl-tui/evals/<stem>.json``
   as ``queued`` and makes sure the *queue runner* is alive: a small detached process
   (``python -m sdxl_tui.control.evaluate runner DIR``, new session, stdin /dev/null) that
   survives the dashboard closing. It runs queued evaluations one at a time (the run
   directory's queue is serial, and a per-user lock per GPU - ``cuda`` = ``cuda:0`` - keeps
   a second run directory's evaluation queued while one uses that GPU), holds ``after-training`` ones
   until the trainer is gone, starts each in its own session with its output appended to
   ``<output_dir>/eval.log``, records pid + create_time while it runs and exit code at the
   end, and exits when the queue is empty.
3. :func:`eval_status` - the records, with a dead process that never recorded its end
   reported as ``failed``, plus the images written so far.
4. :func:`start_compare` / :func:`compare_grid` / :func:`build_grid` - the same prompts and
   seeds over several checkpoints, assembled into one labelled grid image
   (rows = checkpoints, columns = prompts) saved as ``OUTPUT_DIR/compare_<label>.png``.

Status file (read by :mod:`sdxl_tui.sources.checkpoints`): ``{checkpoint, output_dir, status:
queued|running|done|failed, pid, create_time, argv, started_at, ended_at, exit_code}`` plus
``queued_at``, ``when``, ``device``, ``log`` and ``note``. Nothing here prints.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.config import Settings
from sdxl_tui.formats import statedir
from sdxl_tui.formats.names import (
    IMAGE_SUFFIXES,
    WEIGHT_SUFFIXES,
    classify_name,
    epoch_from_name,
    eval_dir_name,
)
from sdxl_tui.formats.safetensors import read_header, read_metadata
from sdxl_tui.formats.statedir import read_json, write_json_atomic
from sdxl_tui.model import CheckpointKind
from sdxl_tui.sources.procs import find_trainer

RUNNER_LOCK = "runner.lock"  # flock only; never replaced
RUNNER_INFO = "runner.info"  # pid + create_time of the live runner (not *.json: the scanner reads those)
RUNNER_LOG = "runner.log"
EVAL_LOG = "eval.log"
MODULE = "sdxl_tui.control.evaluate"
STATUSES = ("queued", "running", "done", "failed")
WHEN = ("now", "after-training")
DEFAULT_POLL = 5.0
NOT_RESULT_IMAGES = ("contact_sheet.png",)

#: Placeholders a template may use (``{{`` / ``}}`` give literal braces).
PLACEHOLDERS: Mapping[str, str] = MappingProxyType(
    {
        "checkpoint": "absolute path of the LoRA file",
        "base_model": "eval.base_model / --base-model",
        "output_dir": "absolute output folder (default OUTPUT_DIR/eval_epoch{N}, eval_<stem> otherwise)",
        "epoch": "epoch number (from the file name, else ss_epoch); empty if unknown",
        "num_samples": "eval.num_samples / --num-samples",
        "resolution": "eval.resolution / --resolution",
        "device": "eval.device / --device",
        "prompts": "eval.prompts / --prompts (prompts file); empty if none",
        "run_dir": "the run directory (OUTPUT_DIR)",
        "name": "the checkpoint file name without its extension",
    }
)

_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class EvalError(ValueError):
    """An evaluation cannot be planned or started; the message says why and what to do."""


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation would run, for the confirmation and ``--dry-run``-style output."""

    run_dir: str
    checkpoint: str
    name: str  # checkpoint file stem: the status file is evals/<name>.json
    epoch: int | None
    output_dir: str
    argv: tuple[str, ...]
    template: tuple[str, ...]
    builtin: bool
    device: str
    values: Mapping[str, str] = field(default_factory=_empty)
    training_pid: int | None = None  # a trainer is alive for this run: ask "now" or "after-training"
    warnings: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=_empty)
    cwd: str = ""  # working directory of the evaluation (the caller's; relative template paths)

    @property
    def command_line(self) -> str:
        """The argv as one shell-quoted line (display and copy-paste only)."""
        return shlex.join(self.argv)

    @property
    def status_path(self) -> str:
        return os.path.join(evals_dir(self.run_dir), self.name + ".json")

    @property
    def log_path(self) -> str:
        return os.path.join(self.output_dir, EVAL_LOG)


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation's status file, as the UI and ``--status`` show it."""

    name: str
    checkpoint: str
    output_dir: str
    status: str  # queued | running | done | failed
    argv: tuple[str, ...] = ()
    pid: int | None = None
    create_time: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    when: str = "now"
    device: str = ""
    log: str = ""
    note: str | None = None  # e.g. "cancelled", "process gone without recording its end"
    images: tuple[str, ...] = ()  # result images written so far
    status_path: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def epoch(self) -> int | None:
        return epoch_from_name(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "output_dir": self.output_dir,
            "status": self.status,
            "pid": self.pid,
            "create_time": self.create_time,
            "argv": list(self.argv),
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "when": self.when,
            "device": self.device,
            "log": self.log,
            "note": self.note,
            "images": list(self.images),
        }


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


# --------------------------------------------------------------------------- paths, names


def evals_dir(run_dir: str | os.PathLike[str]) -> str:
    return os.fspath(statedir.evals_dir(run_dir))


def compare_dir(run_dir: str | os.PathLike[str]) -> str:
    return os.fspath(statedir.state_dir(run_dir) / statedir.COMPARE_DIR)


def _header_state(path: str) -> str | None:
    """``ok`` / ``short`` / ``bad`` for a safetensors file (None for other formats)."""
    if not path.endswith(".safetensors"):
        return None
    try:
        return read_header(path).state
    except OSError:
        return None


def checkpoint_epoch(path: str) -> int | None:
    """The epoch of a checkpoint: from its file name, else ``ss_epoch`` (REF §4.4: a step
    save stores the 0-based index of the epoch in progress, so it is shifted to 1-based)."""
    stem = Path(path).stem
    epoch = epoch_from_name(stem)
    if epoch is not None:
        return epoch
    raw = read_metadata(path).get("ss_epoch") if path.endswith(".safetensors") else None
    try:
        value = int(str(raw)) if raw is not None else None
    except ValueError:
        return None
    if value is not None and classify_name(stem)[0] is CheckpointKind.STEP:
        value += 1
    return value


def default_output_dir(run_dir: str | os.PathLike[str], checkpoint: str) -> str:
    """``OUTPUT_DIR/eval_epoch{N}`` for epoch files (the card's layout), ``eval_<stem>`` otherwise."""
    stem = Path(checkpoint).stem
    epoch = epoch_from_name(stem)
    return os.path.join(os.path.abspath(os.fspath(run_dir)), eval_dir_name(stem, epoch))


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[str]:
    """Weights files directly in the run directory, sorted by name."""
    try:
        with os.scandir(run_dir) as it:
            return sorted(e.path for e in it if e.is_file() and e.name.endswith(WEIGHT_SUFFIXES))
    except OSError:
        return []


def resolve_checkpoint(run_dir: str | os.PathLike[str], spec: str) -> str:
    """CHECKPOINT as given on the command line: a path, a file name in DIR, or an epoch number.

    Raises:
        EvalError: nothing matches, or an epoch number matches no file.
    """
    spec = str(spec).strip()
    run_dir = os.fspath(run_dir)
    if spec.isdigit():
        epoch = int(spec)
        files = list_checkpoints(run_dir)
        for path in files:
            if epoch_from_name(Path(path).stem) == epoch:
                return os.path.abspath(path)
        for path in files:  # the final file carries ss_epoch = the last epoch
            if classify_name(Path(path).stem)[0] is not CheckpointKind.STEP and checkpoint_epoch(path) == epoch:
                return os.path.abspath(path)
        have = sorted({e for e in (epoch_from_name(Path(p).stem) for p in files) if e is not None})
        raise EvalError(
            f"no checkpoint for epoch {epoch} in {run_dir}"
            + (f" (epochs saved: {', '.join(map(str, have))})" if have else " (no epoch checkpoints yet)")
        )
    candidates = [os.path.expanduser(spec), os.path.join(run_dir, spec)]
    if not spec.endswith(WEIGHT_SUFFIXES):
        candidates.append(os.path.join(run_dir, spec + ".safetensors"))
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise EvalError(f"checkpoint not found: {spec} (give a file in {run_dir}, a path, or an epoch number)")


def parse_selection(run_dir: str | os.PathLike[str], spec: str | Sequence[str]) -> list[str]:
    """Checkpoints for a comparison: ``"6-10"`` (epochs that exist in the range), ``"6,8,10"``,
    file names or paths (comma separated or a list).

    Raises:
        EvalError: an entry matches nothing, or a range matches no checkpoint.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    tokens = [t.strip() for item in items for t in str(item).split(",") if t.strip()]
    out: list[str] = []
    for token in tokens:
        m = re.fullmatch(r"(\d+)\s*(?:-|\.\.)\s*(\d+)", token)
        if m:
            lo, hi = sorted((int(m.group(1)), int(m.group(2))))
            found = []
            for path in list_checkpoints(run_dir):
                e = epoch_from_name(Path(path).stem)
                if e is not None and lo <= e <= hi:
                    found.append((e, os.path.abspath(path)))
            if not found:
                raise EvalError(f"no epoch checkpoints between {lo} and {hi} in {os.fspath(run_dir)}")
            out.extend(p for _, p in sorted(found))
        else:
            out.append(resolve_checkpoint(run_dir, token))
    seen: set[str] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    if not unique:
        raise EvalError("no checkpoints selected")
    return unique


# --------------------------------------------------------------------------- templates


def template_from_string(text: str) -> tuple[str, ...]:
    """``--command TEMPLATE``: one string split like a POSIX shell would (shlex), no shell run.

    Raises:
        EvalError: unbalanced quotes, or empty.
    """
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise EvalError(f"cannot split --command: {exc}") from None
    if not argv:
        raise EvalError("empty --command")
    return argv


def substitute(template: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """Replace ``{name}`` inside every argv element (``{{``/``}}`` are literal braces).

    Raises:
        EvalError: an unknown placeholder, or one whose value is not set.
    """
    out = []
    for element in template:

        def repl(m: re.Match[str]) -> str:
            token = m.group(0)
            if token == "{{":
                return "{"
            if token == "}}":
                return "}"
            key = m.group(1).strip()
            if key not in PLACEHOLDERS:
                raise EvalError(
                    f"unknown placeholder {{{key}}} in evaluation template; known: "
                    + ", ".join("{" + k + "}" for k in PLACEHOLDERS)
                )
            value = values.get(key)
            if value is None:
                hint = {"base_model": " (set eval.base_model in the config or pass --base-model)"}.get(key, "")
                raise EvalError(f"the evaluation template uses {{{key}}} but it has no value{hint}")
            return value

        out.append(_PLACEHOLDER_RE.sub(repl, str(element)))
    return tuple(out)


def builtin_template(*, prompts: bool, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The built-in evaluator's argv template (same options as the card's script)."""
    argv = [
        sys.executable, "-m", "sdxl_tui.evaluator",
        "--checkpoint", "{checkpoint}",
        "--base-model", "{base_model}",
        "--output-dir", "{output_dir}",
        "--num-samples", "{num_samples}",
        "--device", "{device}",
        "--resolution", "{resolution}",
    ]  # fmt: skip
    if prompts:
        argv += ["--prompts", "{prompts}"]
    return (*argv, *extra)


def training_pid(run_dir: str | os.PathLike[str]) -> int | None:
    """The trainer's pid when a training process writes to ``run_dir``, else None."""
    tree = find_trainer(run_dir)
    return tree.pid if tree is not None and tree.alive else None


def plan_eval(
    run_dir: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    command: str | Sequence[str] | None = None,
    builtin: bool | None = None,
    base_model: str | None = None,
    num_samples: int | None = None,
    resolution: int | str | None = None,
    device: str | None = None,
    prompts: str | None = None,
    output_dir: str | None = None,
    extra_args: Sequence[str] = (),
    check_training: bool = True,
) -> EvalPlan:
    """Plan one evaluation: template (``command`` > ``eval.command`` > built-in), values, argv.

    ``builtin=True`` forces the built-in evaluator; ``builtin=None`` uses it only when no
    template is configured. ``command`` is a shlex-split string or an argv list.
    ``extra_args`` are appended to the built-in evaluator's argv (e.g. ``--steps 2``).

    Raises:
        EvalError: missing checkpoint, unknown placeholder, a placeholder without a value
            (typically the base model), or the built-in evaluator without a base model.
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    checkpoint = os.path.abspath(os.fspath(checkpoint_path))
    if not os.path.isfile(checkpoint):
        raise EvalError(f"checkpoint not found: {checkpoint}")
    if isinstance(command, str):
        template: tuple[str, ...] = template_from_string(command)
    elif command:
        template = tuple(str(a) for a in command)
    else:
        template = ()
    cfg = (settings or Settings()).eval
    configured = cfg.command
    if builtin is None:
        builtin = not template and not configured
    prompts = prompts if prompts is not None else cfg.prompts
    if builtin:
        template = builtin_template(prompts=bool(prompts), extra=extra_args)
    elif not template:
        template = configured
    if not template:
        raise EvalError("no evaluation command: configure eval.command, pass --command, or use the built-in evaluator")
    base_model = base_model or cfg.base_model
    if builtin and not base_model:
        raise EvalError(
            "the built-in evaluator needs the SDXL base model: pass --base-model PATH or set eval.base_model"
            " (sd_xl_base_1.0.safetensors or a diffusers folder)"
        )
    name = Path(checkpoint).stem
    epoch = checkpoint_epoch(checkpoint)
    out = os.path.abspath(output_dir) if output_dir else default_output_dir(run_dir, checkpoint)
    dev = str(device or cfg.device)
    values: dict[str, str] = {
        "checkpoint": checkpoint,
        "output_dir": out,
        "epoch": "" if epoch is None else str(epoch),
        "num_samples": str(num_samples if num_samples is not None else cfg.num_samples),
        "resolution": str(resolution if resolution is not None else cfg.resolution),
        "device": dev,
        "prompts": os.path.abspath(os.path.expanduser(prompts)) if prompts else "",
        "run_dir": run_dir,
        "name": name,
    }
    if base_model:
        values["base_model"] = os.path.abspath(os.path.expanduser(str(base_model)))
    argv = substitute(template, values)
    warnings = []
    if argv and os.sep not in argv[0] and shutil.which(argv[0]) is None:
        warnings.append(f"{argv[0]!r} is not on PATH: the evaluation will fail to start")
    elif argv and os.sep in argv[0] and not os.access(argv[0], os.X_OK):
        warnings.append(f"{argv[0]} is not an executable file")
    if base_model and not os.path.exists(values["base_model"]):
        warnings.append(f"base model not found: {values['base_model']}")
    if not builtin and "{checkpoint}" not in " ".join(template):
        warnings.append("the template has no {checkpoint}: every evaluation will run the same command")
    header = _header_state(checkpoint)
    if header and header != "ok":
        warnings.append(f"{os.path.basename(checkpoint)} looks incomplete ({header}): still being written?")
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = run_dir
    return EvalPlan(
        run_dir=run_dir,
        checkpoint=checkpoint,
        name=name,
        epoch=epoch,
        output_dir=out,
        argv=argv,
        template=tuple(template),
        builtin=bool(builtin),
        device=dev,
        values=MappingProxyType(values),
        training_pid=training_pid(run_dir) if check_training else None,
        warnings=tuple(warnings),
        cwd=cwd,
    )


# --------------------------------------------------------------------------- status files


@contextlib.contextmanager
def _status_lock(run_dir: str) -> Iterator[None]:
    """Serialise read-modify-write of status files between the UI, CLI and runner."""
    import fcntl

    os.makedirs(evals_dir(run_dir), exist_ok=True)
    with open(os.path.join(evals_dir(run_dir), ".status.lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _update(path: str, **changes: Any) -> dict[str, Any]:
    data = read_json(path) or {}
    data.update(changes)
    write_json_atomic(path, data)
    return data


def result_images(output_dir: str) -> tuple[str, ...]:
    """Result images in an evaluation folder (sorted; the contact sheet and base_* left out)."""
    try:
        with os.scandir(output_dir) as it:
            names = sorted(
                e.name
                for e in it
                if e.is_file()
                and e.name.lower().endswith(IMAGE_SUFFIXES)
                and e.name not in NOT_RESULT_IMAGES
                and not e.name.startswith("base_")
            )
    except OSError:
        return ()
    return tuple(os.path.join(output_dir, n) for n in names)


def read_manifest(output_dir: str) -> dict[str, Any] | None:
    """The built-in evaluator's ``manifest.json`` in ``output_dir`` (None if absent)."""
    return read_json(os.path.join(output_dir, "manifest.json"))


def _alive(pid: int | None, create_time: float | None) -> bool:
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - float(create_time)) < 0.01
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied, bad values
        return False


def _record(path: str, data: Mapping[str, Any]) -> EvalRecord:
    name = os.path.basename(path)[: -len(".json")]
    status = str(data.get("status", "failed"))
    note = data.get("note")
    if status not in STATUSES:
        status, note = "failed", f"unknown status {status!r}"
    pid, ctime = data.get("pid"), data.get("create_time")
    # The runner records the end a moment after the process exits; a dead process without a
    # recorded end *and* without its live runner means the runner died too.
    if (
        status == "running"
        and not _alive(pid, ctime)
        and not _alive(data.get("runner_pid"), data.get("runner_create_time"))
    ):
        status, note = "failed", "the evaluation process is gone without a recorded end (runner killed?)"
    out = str(data.get("output_dir") or "")
    return EvalRecord(
        name=name,
        checkpoint=str(data.get("checkpoint") or ""),
        output_dir=out,
        status=status,
        argv=tuple(str(a) for a in data.get("argv") or ()),
        pid=pid if isinstance(pid, int) else None,
        create_time=float(ctime) if isinstance(ctime, (int, float)) else None,
        queued_at=data.get("queued_at"),
        started_at=data.get("started_at"),
        ended_at=data.get("ended_at"),
        exit_code=data.get("exit_code") if isinstance(data.get("exit_code"), int) else None,
        when=str(data.get("when") or "now"),
        device=str(data.get("device") or ""),
        log=str(data.get("log") or (os.path.join(out, EVAL_LOG) if out else "")),
        note=str(note) if note else None,
        images=result_images(out) if out else (),
        status_path=path,
    )


def eval_status(run_dir: str | os.PathLike[str]) -> tuple[EvalRecord, ...]:
    """Every evaluation of the run directory, queued first in queue order, then by start."""
    folder = evals_dir(run_dir)
    try:
        with os.scandir(folder) as it:
            paths = sorted(e.path for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return ()
    records = []
    for path in paths:
        data = read_json(path)
        if data is not None:
            records.append(_record(path, data))
    order = {"running": 0, "queued": 1, "done": 2, "failed": 2}
    return tuple(
        sorted(records, key=lambda r: (order[r.status], r.queued_at or r.started_at or 0.0, r.name))
    )


def eval_record(run_dir: str | os.PathLike[str], name: str) -> EvalRecord | None:
    """The record of one checkpoint (by file stem), or None."""
    path = os.path.join(evals_dir(run_dir), Path(name).stem + ".json")
    data = read_json(path)
    return _record(path, data) if data is not None else None


def log_tail(record: EvalRecord, lines: int = 20, *, max_bytes: int = 64 * 1024) -> tuple[str, ...]:
    """The last ``lines`` lines of an evaluation's log (``\\r`` redraws collapsed)."""
    try:
        with open(record.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ()
    text = data.decode("utf-8", errors="replace")
    out = [seg.rsplit("\r", 1)[-1] for seg in text.replace("\r\n", "\n").split("\n")]
    out = [line for line in out if line.strip()]
    return tuple(out[-lines:])


# --------------------------------------------------------------------------- start, queue, runner


def start_eval(
    plan: EvalPlan,
    *,
    when: str = "now",
    poll_interval: float = DEFAULT_POLL,
    spawn_runner: bool = True,
) -> EvalRecord:
    """Queue ``plan`` and make sure the detached queue runner is alive.

    ``when="now"`` runs as soon as no other evaluation of this run directory is running
    (training or not: the user chose); ``"after-training"`` also waits until no trainer
    writes to the run directory. The runner outlives the caller (the dashboard).

    Raises:
        EvalError: ``when`` is unknown, or this checkpoint already has an evaluation queued
            or running.
    """
    if when not in WHEN:
        raise EvalError(f"when must be one of {', '.join(WHEN)}, not {when!r}")
    path = plan.status_path
    with _status_lock(plan.run_dir):
        existing = read_json(path)
        if existing is not None:
            rec = _record(path, existing)
            if rec.active:
                raise EvalError(f"{plan.name} already has an evaluation {rec.status} (pid {rec.pid or '-'})")
        write_json_atomic(
            path,
            {
                "checkpoint": plan.checkpoint,
                "output_dir": plan.output_dir,
                "status": "queued",
                "pid": None,
                "create_time": None,
                "argv": list(plan.argv),
                "started_at": None,
                "ended_at": None,
                "exit_code": None,
                "queued_at": time.time(),
                "when": when,
                "device": plan.device,
                "log": plan.log_path,
                "note": None,
                "env": dict(plan.env),
                "cwd": plan.cwd or plan.run_dir,
            },
        )
    if spawn_runner:
        ensure_runner(plan.run_dir, poll_interval=poll_interval)
    result = eval_record(plan.run_dir, plan.name)
    assert result is not None
    return result


def cancel_eval(run_dir: str | os.PathLike[str], name: str, *, timeout: float = 10.0) -> EvalRecord | None:
    """Cancel a queued evaluation, or stop a running one (its whole process group, after
    checking pid + create_time). Returns the updated record (None if there is none)."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    path = os.path.join(evals_dir(run_dir), Path(name).stem + ".json")
    with _status_lock(run_dir):
        data = read_json(path)
        if data is None:
            return None
        if data.get("status") == "queued":
            _update(path, status="failed", note="cancelled before it started", ended_at=time.time())
            return eval_record(run_dir, name)
    pid, ctime = data.get("pid"), data.get("create_time")
    if data.get("status") == "running" and isinstance(pid, int) and _alive(pid, ctime):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, ctime):
            time.sleep(0.05)
        if _alive(pid, ctime):
            _signal_group(pid, signal.SIGKILL)
        with _status_lock(run_dir):
            _update(path, note="cancelled")
    return eval_record(run_dir, name)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the evaluation was started as its own session/group leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def runner_pid(run_dir: str | os.PathLike[str]) -> int | None:
    """The live queue runner's pid (from its lock file, identity-checked), else None."""
    data = read_json(os.path.join(evals_dir(run_dir), RUNNER_INFO))
    if not data:
        return None
    pid, ctime = data.get("pid"), data.get("create_time")
    return int(pid) if isinstance(pid, int) and _alive(pid, ctime) else None


def ensure_runner(run_dir: str | os.PathLike[str], *, poll_interval: float = DEFAULT_POLL) -> None:
    """Start a detached queue runner. Always: a spare one finds the lock held and exits at
    once, and asking a live runner instead could race with it exiting."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    os.makedirs(evals_dir(run_dir), exist_ok=True)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(os.path.join(evals_dir(run_dir), RUNNER_LOG), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, "runner", run_dir, "--poll", str(poll_interval)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=run_dir,
        )
    # The runner forks once and its first process exits at once: reap it (no zombie), and the
    # real runner is re-parented away from the dashboard.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _next_job(run_dir: str, trainer_alive: bool) -> str | None:
    queued = []
    for rec in eval_status(run_dir):
        if rec.status == "queued" and (rec.when == "now" or not trainer_alive):
            queued.append(rec)
    queued.sort(key=lambda r: (r.queued_at or 0.0, r.name))
    return queued[0].status_path if queued else None


def _has_pending(run_dir: str) -> bool:
    if any(r.status in ("queued", "running") for r in eval_status(run_dir)):
        return True
    return any(j.status == "waiting" for j in compare_jobs(run_dir))


def device_lock_path(device: str) -> str | None:
    """The per-user lock file of a GPU (``cuda`` means ``cuda:0``); None for the CPU.

    Why: two evaluations on one GPU (from two run directories) would both run out of memory;
    the runner holding a job takes this lock for the job's lifetime, across run directories.
    """
    name = device.strip().lower() or "cuda"
    if name == "cpu":
        return None
    if name == "cuda":
        name = "cuda:0"
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"sdxl-tui-{os.getuid()}"
    )
    return os.path.join(base, "sdxl-tui-locks", re.sub(r"[^\w.-]+", "_", name) + ".lock")


def _acquire_device(run_dir: str, path: str, device: str, poll_interval: float) -> Any:
    """Wait (the job stays queued, with a note) until the device is free; the open lock file,
    or None if the job was cancelled meanwhile or the device needs no lock."""
    import fcntl

    lock_path = device_lock_path(device)
    if lock_path is None:
        return None
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fh = open(lock_path, "a+")  # noqa: SIM115 - held while the evaluation runs
    noted = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if noted:
                with _status_lock(run_dir):
                    _update(path, note=None)
            return fh
        except OSError:
            pass
        with _status_lock(run_dir):
            data = read_json(path) or {}
            if data.get("status") != "queued":
                fh.close()
                return False
            if not noted:
                _update(path, note=f"waiting for {device}: another evaluation is using it")
                noted = True
        time.sleep(poll_interval)


_RUNNER_CREATE_TIME: float | None = None  # set by run_queue: identifies this runner in status files


def _run_job(run_dir: str, path: str, poll_interval: float = DEFAULT_POLL) -> None:
    """Run one queued evaluation to its end and record it (called in the runner)."""
    data = read_json(path)
    if not data or data.get("status") != "queued":
        return
    device_lock = _acquire_device(run_dir, path, str(data.get("device") or ""), poll_interval)
    if device_lock is False:
        return
    try:
        _run_locked(run_dir, path)
    finally:
        if device_lock is not None:
            device_lock.close()


def _run_locked(run_dir: str, path: str) -> None:
    with _status_lock(run_dir):
        data = read_json(path)
        if not data or data.get("status") != "queued":
            return
        argv = [str(a) for a in data.get("argv") or []]
        out = str(data.get("output_dir"))
        log_path = str(data.get("log") or os.path.join(out, EVAL_LOG))
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (data.get("env") or {}).items()})
        env["PYTHONUNBUFFERED"] = "1"
        started = time.time()
        try:
            os.makedirs(out, exist_ok=True)
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        except OSError as exc:
            _update(path, status="failed", started_at=started, ended_at=time.time(), exit_code=None,
                    note=f"cannot write {log_path}: {exc.strerror or exc}")
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        log.write(f"# sdxl-tui eval {stamp}: {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            cwd = str(data.get("cwd") or run_dir)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=env,
                                    cwd=cwd if os.path.isdir(cwd) else run_dir)
        except OSError as exc:
            log.write(f"# cannot start: {exc}\n".encode())
            log.close()
            _update(path, status="failed", started_at=started, ended_at=time.time(), exit_code=127,
                    note=f"cannot start {argv[0] if argv else '(empty argv)'}: {exc.strerror or exc}")
            return
        ctime = None
        with contextlib.suppress(Exception):
            import psutil

            ctime = psutil.Process(proc.pid).create_time()
        _update(path, status="running", pid=proc.pid, create_time=ctime, started_at=started,
                runner_pid=os.getpid(), runner_create_time=_RUNNER_CREATE_TIME)
    code = proc.wait()
    ended = time.time()
    with contextlib.suppress(OSError):
        log.write(f"# exit status {code} after {ended - started:.1f} s\n".encode())
    log.close()
    with _status_lock(run_dir):
        current = read_json(path) or {}
        note = current.get("note")
        if code < 0:
            note = note or f"killed by signal {-code}"
        _update(path, status="done" if code == 0 else "failed", exit_code=code, ended_at=ended, note=note)


def run_queue(run_dir: str, *, poll_interval: float = DEFAULT_POLL) -> int:
    """The runner's loop: run eligible queued evaluations one by one, build waiting grids,
    exit when nothing is pending.

    An ``flock`` on ``runner.lock`` makes it the only runner of this run directory (a spare
    one exits at once); ``runner.json`` names its pid. Before exiting it releases the lock
    and looks once more, so a job queued meanwhile is never stranded: either this runner
    sees it and takes the lock back, or the runner started for it gets the lock.
    """
    import fcntl

    run_dir = os.path.abspath(run_dir)
    os.makedirs(evals_dir(run_dir), exist_ok=True)
    lock_path = os.path.join(evals_dir(run_dir), RUNNER_LOCK)
    info_path = os.path.join(evals_dir(run_dir), RUNNER_INFO)
    me: dict[str, Any] = {"pid": os.getpid(), "create_time": None, "started_at": time.time()}
    global _RUNNER_CREATE_TIME
    with contextlib.suppress(Exception):
        import psutil

        me["create_time"] = _RUNNER_CREATE_TIME = psutil.Process().create_time()
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another runner owns the queue
        write_json_atomic(info_path, me)
        while True:
            trainer = training_pid(run_dir)
            job = _next_job(run_dir, trainer is not None)
            if job is not None:
                _run_job(run_dir, job, poll_interval)
                continue
            for cj in compare_jobs(run_dir):
                if cj.status == "waiting" and _compare_ready(run_dir, cj):
                    _finish_compare(run_dir, cj)
            if _has_pending(run_dir):
                time.sleep(poll_interval)
                continue
            with contextlib.suppress(OSError):
                os.unlink(info_path)
            fcntl.flock(fh, fcntl.LOCK_UN)
            if not _has_pending(run_dir):
                return 0
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0
            write_json_atomic(info_path, me)


def wait_for(run_dir: str | os.PathLike[str], name: str, *, timeout: float | None = None,
             interval: float = 0.2) -> EvalRecord | None:
    """Block until the evaluation of ``name`` is done or failed (or ``timeout`` passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rec = eval_record(run_dir, name)
        if rec is None or not rec.active:
            return rec
        if deadline is not None and time.monotonic() >= deadline:
            return rec
        time.sleep(interval)


# --------------------------------------------------------------------------- comparison grid


def _label_for(paths: Sequence[str]) -> str:
    epochs = [epoch_from_name(Path(p).stem) for p in paths]
    if epochs and all(e is not None for e in epochs):
        nums = sorted(e for e in epochs if e is not None)
        return f"epochs_{nums[0]}-{nums[-1]}" if len(nums) > 1 else f"epoch_{nums[0]}"
    stems = "_".join(Path(p).stem for p in paths)
    return ("cmp_" + re.sub(r"[^\w.-]+", "_", stems))[:120]


def grid_path_for(run_dir: str | os.PathLike[str], checkpoints: Sequence[str]) -> str:
    """Where the grid of these checkpoints is saved: ``OUTPUT_DIR/compare_<label>.png``."""
    return os.path.join(os.path.abspath(os.fspath(run_dir)), f"compare_{_label_for(checkpoints)}.png")


def _output_dir_of(run_dir: str, checkpoint: str) -> str:
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
    dirs = list(output_dirs) if output_dirs else [_output_dir_of(run_dir, c) for c in checkpoints]
    rows: list[tuple[str, list[str | None]]] = []
    column_labels: list[str] = []
    prompt_sets = set()
    for ck, folder in zip(checkpoints, dirs):
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


def _compare_job(path: str, data: Mapping[str, Any]) -> CompareJob:
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
            jobs.append(_compare_job(path, data))
    return tuple(jobs)


def _compare_ready(run_dir: str, job: CompareJob) -> bool:
    for ck in job.names:
        rec = eval_record(run_dir, Path(ck).stem)
        if rec is not None and rec.active:
            return False
    return True


def _finish_compare(run_dir: str, job: CompareJob) -> CompareJob:
    try:
        path = build_grid(run_dir, job.names, output=job.grid_path, output_dirs=job.output_dirs or None)
        _update(job.job_path, status="done", grid=path, ended_at=time.time(), error=None)
    except (EvalError, OSError) as exc:
        _update(job.job_path, status="failed", ended_at=time.time(), error=str(exc))
    data = read_json(job.job_path) or {}
    return _compare_job(job.job_path, data)


def _has_results(folder: str) -> bool:
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest.get("status") == "done" and bool(result_images(folder))
    return bool(result_images(folder))


def start_compare(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    settings: Settings | None = None,
    when: str = "now",
    rerun: bool = False,
    poll_interval: float = DEFAULT_POLL,
    **plan_kw: Any,
) -> CompareJob:
    """Evaluate several checkpoints with the same prompts and seeds, then grid them (detached).

    Checkpoints whose evaluation folder already has results are reused unless ``rerun``.
    For the built-in evaluator the prompts are fixed once (written to a prompts file shared
    by every row), so all rows render the same prompts with the same seeds. The queue runner
    builds the grid when the last evaluation ends; :func:`compare_grid` waits for it.

    Raises:
        EvalError: planning failed for one of the checkpoints (nothing is queued then).
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    checkpoints = [os.path.abspath(c) for c in checkpoints]
    if not checkpoints:
        raise EvalError("no checkpoints to compare")
    label = _label_for(checkpoints)
    os.makedirs(compare_dir(run_dir), exist_ok=True)
    plans: list[EvalPlan] = []
    dirs: list[str] = []
    prompts_file = plan_kw.pop("prompts", None)
    for ck in checkpoints:
        folder = _output_dir_of(run_dir, ck)
        rec = eval_record(run_dir, Path(ck).stem)
        if rec is not None and rec.active:
            dirs.append(rec.output_dir)
            continue
        if not rerun and _has_results(folder):
            dirs.append(folder)
            continue
        plan = plan_eval(run_dir, ck, settings=settings, prompts=prompts_file, check_training=False, **plan_kw)
        if plan.builtin and not (prompts_file or (settings or Settings()).eval.prompts):
            prompts_file = _shared_prompts(run_dir, label, checkpoints[0], plan)
            plan = plan_eval(run_dir, ck, settings=settings, prompts=prompts_file, check_training=False, **plan_kw)
        plans.append(plan)
        dirs.append(plan.output_dir)
    job_path = os.path.join(compare_dir(run_dir), label + ".json")
    write_json_atomic(
        job_path,
        {
            "checkpoints": checkpoints,
            "output_dirs": dirs,
            "grid": grid_path_for(run_dir, checkpoints),
            "status": "waiting",
            "created_at": time.time(),
            "started": [p.name for p in plans],
            "error": None,
        },
    )
    for plan in plans:
        start_eval(plan, when=when, poll_interval=poll_interval, spawn_runner=False)
    ensure_runner(run_dir, poll_interval=poll_interval)
    return _compare_job(job_path, read_json(job_path) or {})


def _shared_prompts(run_dir: str, label: str, first_checkpoint: str, plan: EvalPlan) -> str:
    """Fix the built-in evaluator's prompts once for a comparison (same prompts every row)."""
    from sdxl_tui.evaluator.prompts import quote_prompt, resolve_prompts

    n = int(plan.values.get("num_samples") or 4)
    specs, _ = resolve_prompts(first_checkpoint, prompts_file=None, config_prompts_file=None, num_samples=n)
    path = os.path.join(compare_dir(run_dir), label + ".prompts.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# prompts shared by every checkpoint of this comparison\n")
        fh.writelines(quote_prompt(s) + "\n" for s in specs)
    return path


def compare_job(run_dir: str | os.PathLike[str], label: str) -> CompareJob | None:
    path = os.path.join(compare_dir(run_dir), label + ".json")
    data = read_json(path)
    return _compare_job(path, data) if data is not None else None


def compare_grid(
    run_dir: str | os.PathLike[str],
    checkpoints: Sequence[str],
    *,
    settings: Settings | None = None,
    wait: bool = True,
    timeout: float | None = None,
    interval: float = 0.25,
    **kw: Any,
) -> str:
    """Evaluate (or reuse) ``checkpoints`` and return the grid image's path.

    With ``wait`` it blocks until the grid exists. Without, it returns the path the runner
    will write.

    Raises:
        EvalError: planning failed, the grid could not be built, or ``timeout`` passed.
    """
    job = start_compare(run_dir, checkpoints, settings=settings, **kw)
    if not wait:
        return job.grid_path
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = compare_job(run_dir, job.label)
        if current is None:
            raise EvalError("the comparison job disappeared")
        if current.status == "done":
            return current.grid_path
        if current.status == "failed":
            raise EvalError(f"comparison failed: {current.error}")
        if deadline is not None and time.monotonic() >= deadline:
            raise EvalError(f"comparison not finished after {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- runner entry point


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description="sdxl-tui evaluation queue runner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runner", help="run the evaluation queue of DIR (detached; exits when empty)")
    r.add_argument("run_dir")
    r.add_argument("--poll", type=float, default=DEFAULT_POLL)
    r.add_argument("--no-fork", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.no_fork and hasattr(os, "fork") and os.fork() > 0:
        os._exit(0)  # the launcher reaps this at once; the child is re-parented to init
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return run_queue(args.run_dir, poll_interval=args.poll)


if __name__ == "__main__":
    sys.exit(_main())
