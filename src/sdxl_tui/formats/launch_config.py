"""The launch config: one TOML file that says how to start a training run.

Why a file instead of the 40-flag shell line: the same description drives the preflight
check, ``sdxl-tui start`` (CLI and key ``s``) and the planner, and it is an argv list, so no
shell quoting, ``nohup`` or ``&`` is involved. Shape (see docs/architecture.md)::

    [launch]
    prefix = ["conda", "run", "--no-capture-output", "-n", "kohya_ss", "python"]
    sd_scripts_dir = "/home/me/sd-scripts"     # working directory of the trainer
    script = "sdxl_train_network.py"            # relative to sd_scripts_dir ("" = none)
    config_file = "/path/luca_sdxl_v1.toml"     # optional sd-scripts --config_file
    output_dir = "/mnt/data/ai_data/models/lora/luca/sdxl_v1"
    env = { PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True" }

    [args]                                      # sd-scripts options by dest name
    network_dim = 64
    gradient_checkpointing = true               # true -> flag, false -> omitted
    text_encoder_lr = [0.000201]                # list -> several values

A ``backend = "slurm"`` line in ``[launch]`` (default ``"local"``) submits the run with
``sbatch`` instead, with the resources of a ``[slurm]`` table (``formats/slurm.py``).

Relative ``sd_scripts_dir``, ``config_file`` and ``output_dir`` are taken relative to the
directory holding the TOML file, so ``output_dir = "."`` in ``RUN/sdxl-tui.toml`` means RUN.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sdxl_tui.formats import toml
from sdxl_tui.formats.names import LOG_NAME

if TYPE_CHECKING:  # the [slurm] table's module is imported only when a launch config has one
    from sdxl_tui.formats.slurm import SlurmConfig

#: File name looked up in the run directory when no ``--launch FILE`` is given.
DEFAULT_NAME = "sdxl-tui.toml"


_LAUNCH_KEYS = ("prefix", "sd_scripts_dir", "script", "config_file", "output_dir", "env", "backend")
#: Where a run is started: on this machine, or submitted to Slurm with ``sbatch``.
BACKENDS = ("local", "slurm")


class LaunchConfigError(ValueError):
    """The launch config is missing or wrong; the message names the file and the key."""


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def _fmt_value(value: Any) -> str:
    """One sd-scripts command-line value: numbers as Python prints them (argparse reads them)."""
    if isinstance(value, bool):  # only inside lists; top-level bools are flags
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)  # "1.0", so a float option stays visibly a float
    return str(value)


@dataclass(frozen=True)
class LaunchConfig:
    """How to start one training run; frozen so checks, start and plans can share it."""

    prefix: tuple[str, ...]
    """Command prefix as an argv list (``conda run … python``, ``accelerate launch …``)."""
    output_dir: str
    """Absolute sd-scripts ``--output_dir``; also where training.log and .sdxl-tui/ live."""
    sd_scripts_dir: str | None = None
    """Working directory of the trainer (the sd-scripts checkout)."""
    script: str = "sdxl_train_network.py"
    """Trainer script, relative to ``sd_scripts_dir``; empty when the prefix is the program."""
    config_file: str | None = None
    """sd-scripts ``--config_file`` TOML (absolute)."""
    args: Mapping[str, Any] = field(default_factory=_frozen)
    """sd-scripts options by dest name, in file order."""
    env: Mapping[str, str] = field(default_factory=_frozen)
    """Extra environment for the trainer."""
    backend: str = "local"
    """``"local"`` (a detached process here) or ``"slurm"`` (a batch job, see ``slurm``)."""
    slurm: SlurmConfig | None = None
    """The ``[slurm]`` table: what sbatch is asked for (used when ``backend == "slurm"``)."""
    source: str | None = field(default=None, compare=False)
    """The TOML file this was read from, if any."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", tuple(str(p) for p in self.prefix))
        object.__setattr__(self, "args", _frozen(self.args))
        object.__setattr__(self, "env", _frozen({str(k): str(v) for k, v in self.env.items()}))

    @property
    def cwd(self) -> str:
        """Working directory of the trainer: the sd-scripts checkout, else the output dir."""
        return self.sd_scripts_dir or self.output_dir

    @property
    def log_path(self) -> str:
        return os.path.join(self.output_dir, LOG_NAME)

    def script_args(self) -> list[str]:
        """The sd-scripts part of the command line (after the script)."""
        out: list[str] = []
        if self.config_file:
            out += ["--config_file", self.config_file]
        for key, value in self.args.items():
            if key == "output_dir":
                continue
            if isinstance(value, bool):
                if value:
                    out.append(f"--{key}")
                continue
            if isinstance(value, (list, tuple)):
                out.append(f"--{key}")
                out += [_fmt_value(v) for v in value]
                continue
            out += [f"--{key}", _fmt_value(value)]
        out += ["--output_dir", self.output_dir]
        return out

    def argv(self) -> list[str]:
        """The full argv: prefix + script + ``--config_file`` + args + ``--output_dir``."""
        head = list(self.prefix)
        if self.script:
            head.append(self.script)
        return head + self.script_args()



def _resolve(base: Path, value: str) -> str:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = base / path
    return os.path.normpath(str(path))


def _check_scalar(where: str, value: Any) -> Any:
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise LaunchConfigError(f"{where}: {value!r} is not a usable number")
        return value
    raise LaunchConfigError(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


def _launch_table(data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    launch = data.get("launch")
    if not isinstance(launch, Mapping):
        raise LaunchConfigError(f"{where}: missing [launch] table")
    unknown = [k for k in launch if k not in _LAUNCH_KEYS]
    if unknown:
        raise LaunchConfigError(
            f"{where}: unknown key(s) in [launch]: {', '.join(unknown)} (known: {', '.join(_LAUNCH_KEYS)})"
        )
    return launch


def _prefix(launch: Mapping[str, Any], where: str) -> tuple[str, ...]:
    prefix = launch.get("prefix")
    if isinstance(prefix, str):
        raise LaunchConfigError(
            f"{where}: [launch] prefix must be an argv list such as [\"conda\", \"run\", \"-n\", "
            f"\"kohya_ss\", \"python\"], not a string"
        )
    if not isinstance(prefix, list) or not prefix or not all(isinstance(p, str) and p for p in prefix):
        raise LaunchConfigError(f"{where}: [launch] prefix must be a non-empty list of strings")
    return tuple(prefix)


def _env(launch: Mapping[str, Any], where: str) -> dict[str, str]:
    env_raw = launch.get("env", {})
    if not isinstance(env_raw, Mapping):
        raise LaunchConfigError(f"{where}: [launch] env must be a table of NAME = \"value\"")
    env: dict[str, str] = {}
    for key, value in env_raw.items():
        if isinstance(value, (Mapping, list)):
            raise LaunchConfigError(f"{where}: [launch.env] {key} must be a string or number")
        scalar = _check_scalar(f"[launch.env] {key}", value)
        env[str(key)] = ("1" if scalar else "0") if isinstance(scalar, bool) else str(scalar)
    return env


def _trainer_args(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    args_raw = data.get("args", {})
    if not isinstance(args_raw, Mapping):
        raise LaunchConfigError(f"{where}: [args] must be a table")
    args: dict[str, Any] = {}
    for key, value in args_raw.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", key):
            raise LaunchConfigError(f"{where}: [args] {key!r} is not an option name")
        if isinstance(value, Mapping):
            raise LaunchConfigError(f"{where}: [args] {key} must be a value, not a table")
        if isinstance(value, list):
            args[key] = tuple(_check_scalar(f"[args] {key}", v) for v in value)
        else:
            args[key] = _check_scalar(f"[args] {key}", value)
    return args


def _slurm(data: Mapping[str, Any], backend: str, where: str) -> SlurmConfig | None:
    slurm_raw = data.get("slurm")
    if slurm_raw is None and backend != "slurm":
        return None
    if slurm_raw is not None and not isinstance(slurm_raw, Mapping):
        raise LaunchConfigError(f"{where}: [slurm] must be a table")
    from sdxl_tui.formats.slurm import SlurmConfigError, slurm_config_from_dict

    try:
        return slurm_config_from_dict(slurm_raw or {}, where=where)
    except SlurmConfigError as exc:
        raise LaunchConfigError(str(exc)) from None


def launch_config_from_dict(data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] | None = None,
                            source: str | None = None) -> LaunchConfig:
    """Build a :class:`LaunchConfig` from parsed TOML data.

    Raises:
        LaunchConfigError: a missing ``[launch]`` table or ``output_dir``, unknown keys,
            or values of the wrong type.
    """
    where = source or "launch config"
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    launch = _launch_table(data, where)
    prefix = _prefix(launch, where)
    output_dir = launch.get("output_dir")
    if not isinstance(output_dir, str) or not output_dir.strip():
        raise LaunchConfigError(f"{where}: [launch] output_dir is required (a path)")

    def opt_path(key: str) -> str | None:
        value = launch.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise LaunchConfigError(f"{where}: [launch] {key} must be a path string")
        return _resolve(base, value)

    script = launch.get("script", "sdxl_train_network.py")
    if not isinstance(script, str):
        raise LaunchConfigError(f"{where}: [launch] script must be a string (\"\" for none)")
    env = _env(launch, where)
    args = _trainer_args(data, where)
    backend = launch.get("backend", "local")
    if backend not in BACKENDS:
        raise LaunchConfigError(f"{where}: [launch] backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    slurm = _slurm(data, backend, where)
    resolved_out = _resolve(base, output_dir)
    if "output_dir" in args and _resolve(base, str(args["output_dir"])) != resolved_out:
        raise LaunchConfigError(
            f"{where}: [args] output_dir differs from [launch] output_dir; set it once, in [launch]"
        )
    return LaunchConfig(
        prefix=prefix,
        output_dir=resolved_out,
        sd_scripts_dir=opt_path("sd_scripts_dir"),
        script=script,
        config_file=opt_path("config_file"),
        args=args,
        env=env,
        backend=str(backend),
        slurm=slurm,
        source=source,
    )


def load_launch_config(path: str | os.PathLike[str]) -> LaunchConfig:
    """Read a launch config TOML file.

    Raises:
        LaunchConfigError: the file is missing or unreadable, is not valid TOML, or its
            content is wrong (see :func:`launch_config_from_dict`).
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LaunchConfigError(f"launch config not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LaunchConfigError(f"cannot read launch config {p}: {exc}") from None
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise LaunchConfigError(f"{p}: not valid TOML: {exc}") from None
    return launch_config_from_dict(data, base_dir=p.resolve().parent, source=str(p))


def find_launch_config(run_dir: str | os.PathLike[str] | None,
                       explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The launch config to use: ``explicit`` if given (even when missing, so the error
    names it), else ``RUN_DIR/sdxl-tui.toml`` when it exists, else None."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if run_dir is None:
        return None
    candidate = Path(run_dir).expanduser() / DEFAULT_NAME
    return candidate if candidate.is_file() else None


# --------------------------------------------------------------------------- writing


def dumps_launch_config(cfg: LaunchConfig, *, comment: str | None = None) -> str:
    """The TOML text of a launch config (paths written absolute)."""
    launch: dict[str, Any] = {"prefix": list(cfg.prefix)}
    if cfg.sd_scripts_dir:
        launch["sd_scripts_dir"] = cfg.sd_scripts_dir
    launch["script"] = cfg.script
    if cfg.config_file:
        launch["config_file"] = cfg.config_file
    launch["output_dir"] = cfg.output_dir
    if cfg.env:
        launch["env"] = dict(cfg.env)
    if cfg.backend != "local":
        launch["backend"] = cfg.backend
    tables: dict[str, Any] = {"launch": launch, "args": dict(cfg.args)}
    if cfg.slurm is not None:
        tables["slurm"] = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg.slurm).items()
                           if v is not None and v != ()}
    return toml.dumps(tables, header=comment or "", inline=("launch.env",))


def write_launch_config(cfg: LaunchConfig, path: str | os.PathLike[str], *, comment: str | None = None) -> Path:
    """Write ``cfg`` as TOML to ``path`` atomically (temp file + rename); returns the path."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps_launch_config(cfg, comment=comment), encoding="utf-8")
    os.replace(tmp, p)
    return p
