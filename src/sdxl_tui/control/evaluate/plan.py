"""Plan an evaluation: the checkpoint, its output folder and the argv with placeholders filled.

Why plain data first: the dashboard shows the plan (what runs, where the images go, whether a
trainer is using the GPU now) before anything starts, and ``sdxl-tui eval --dry-run`` prints
it. Placeholders are substituted inside argv elements, never through a shell.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sdxl_tui.config import Settings
from sdxl_tui.formats import statedir
from sdxl_tui.formats.names import (
    WEIGHT_SUFFIXES,
    classify_name,
    epoch_from_name,
    eval_dir_name,
)
from sdxl_tui.formats.safetensors import read_header, read_metadata
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
    """The epoch of a checkpoint: from its file name, else ``ss_epoch`` (a step save
    stores the 0-based index of the epoch in progress, so it is shifted to 1-based)."""
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
                stem = Path(path).stem
                e = epoch_from_name(stem)
                if e is None and classify_name(stem)[0] is None:
                    e = checkpoint_epoch(path)  # the final file: its ss_epoch is the last epoch
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


#: Where the base model is set, in the words of each place (the dashboard has no option).
BASE_MODEL_KNOBS = (
    "set eval.base_model in the config file, or the environment variable SDXL_TUI_EVAL_BASE_MODEL,"
    " or pass --base-model PATH to `sdxl-tui eval`"
)


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
                hint = {"base_model": f" ({BASE_MODEL_KNOBS})"}.get(key, "")
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


def _choose_template(
    command: str | Sequence[str] | None,
    configured: tuple[str, ...],
    *,
    builtin: bool | None,
    prompts: str | None,
    extra_args: Sequence[str],
) -> tuple[tuple[str, ...], bool]:
    """The template (``command`` > ``eval.command`` > built-in) and whether it is the built-in one."""
    if isinstance(command, str):
        template: tuple[str, ...] = template_from_string(command)
    elif command:
        template = tuple(str(a) for a in command)
    else:
        template = ()
    if builtin is None:
        builtin = not template and not configured
    if builtin:
        template = builtin_template(prompts=bool(prompts), extra=extra_args)
    elif not template:
        template = tuple(configured)
    if not template:
        raise EvalError("no evaluation command: configure eval.command, pass --command, or use the built-in evaluator")
    return template, builtin


def _plan_warnings(
    argv: Sequence[str], template: Sequence[str], values: Mapping[str, str], *, builtin: bool
) -> list[str]:
    """What will likely make the evaluation fail or mislead, said before it starts."""
    warnings = []
    if argv and os.sep not in argv[0] and shutil.which(argv[0]) is None:
        warnings.append(f"{argv[0]!r} is not on PATH: the evaluation will fail to start")
    elif argv and os.sep in argv[0] and not os.access(argv[0], os.X_OK):
        warnings.append(f"{argv[0]} is not an executable file")
    if "base_model" in values and not os.path.exists(values["base_model"]):
        warnings.append(f"base model not found: {values['base_model']}")
    if not builtin and "{checkpoint}" not in " ".join(template):
        warnings.append("the template has no {checkpoint}: every evaluation will run the same command")
    checkpoint = values["checkpoint"]
    header = _header_state(checkpoint)
    if header and header != "ok":
        warnings.append(f"{os.path.basename(checkpoint)} looks incomplete ({header}): still being written?")
    return warnings


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
    cfg = (settings or Settings()).eval
    prompts = prompts if prompts is not None else cfg.prompts
    template, builtin = _choose_template(command, cfg.command, builtin=builtin, prompts=prompts, extra_args=extra_args)
    base_model = base_model or cfg.base_model
    if builtin and not base_model:
        raise EvalError(
            "the built-in evaluator needs the SDXL base model (sd_xl_base_1.0.safetensors or a diffusers folder):"
            f" {BASE_MODEL_KNOBS}"
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
    warnings = _plan_warnings(argv, template, values, builtin=builtin)
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


#: What the built-in evaluator imports (the ``eval`` extra).
EVAL_MODULES = ("torch", "diffusers", "transformers", "peft")


def certain_failure(plan: EvalPlan) -> str | None:
    """Why ``plan`` would fail at once if started (checked before detaching), or None.

    Only what is certain: a built-in evaluation without the eval extra or without its base
    model file, a command that is not on PATH or not executable.
    """
    import importlib.util

    argv0 = plan.argv[0] if plan.argv else ""
    if os.sep not in argv0 and shutil.which(argv0) is None:
        return f"{argv0!r} is not on PATH: the evaluation command cannot start"
    if os.sep in argv0 and not os.access(argv0, os.X_OK):
        return f"{argv0} is not an executable file: the evaluation command cannot start"
    if not plan.builtin:
        return None
    missing = [m for m in EVAL_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        from sdxl_tui.evaluator.cli import INSTALL_HINT

        return f"the built-in evaluator needs {', '.join(missing)} (the eval extra): {INSTALL_HINT}"
    base = plan.values.get("base_model")
    if base and not os.path.exists(base):
        return f"base model not found: {base} ({BASE_MODEL_KNOBS})"
    return None
