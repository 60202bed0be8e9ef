"""Settings: command line > ``SDXL_TUI_*`` environment > TOML file > defaults.

One frozen :class:`Settings` is built at start-up and handed to whatever needs it (the
app factory, the control actions). Every value remembers where it came from, so
``sdxl-tui tui --show-config`` can say why a value is what it is.

A setting has a dotted name (``refresh.gpu_interval``), which is also its place in the
TOML file (``[refresh]`` table, key ``gpu_interval``) and, upper-cased with dots turned
into underscores, its environment variable (``SDXL_TUI_REFRESH_GPU_INTERVAL``).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sdxl_tui.formats import toml

ENV_PREFIX = "SDXL_TUI_"


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and why."""


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _as_argv(value: Any) -> tuple[str, ...]:
    """An argv list. From the environment a JSON list is expected (no shell parsing of
    user strings for commands we run), a plain string is split with shlex for convenience."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    text = str(value).strip()
    if not text:
        return ()
    if text.startswith("["):
        loaded = json.loads(text)
        if not isinstance(loaded, list):
            raise ValueError("expected a JSON list")
        return tuple(str(v) for v in loaded)
    return tuple(shlex.split(text))


def _as_mapping(value: Any) -> Mapping[str, str]:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, Mapping):
        raise ValueError("expected a table")
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _as_opt_path(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return os.path.expanduser(text) if text else None


def _setting(default: Any, convert: Callable[[Any], Any], help_text: str) -> Any:
    """One row of the settings table: a dataclass field with its converter and help."""
    return field(default=default, metadata={"convert": convert, "help": help_text})


# The one table of settings: one frozen section per TOML table, in the order ``--help`` and
# the README list them. Each field's name is its key; its metadata, the converter and help.


@dataclass(frozen=True, slots=True)
class RefreshSettings:
    log_interval: float = _setting(0.25, float, "seconds between log/event re-reads when idle (watchdog wakes earlier)")
    gpu_interval: float = _setting(1.0, float, "seconds between NVML samples")
    process_interval: float = _setting(2.0, float, "seconds between process-table scans")
    busy_interval: float = _setting(
        2.0, float, "while the run writes continuously, re-read and repaint at most this often (seconds)"
    )
    force_polling: bool = _setting(False, _as_bool, "never use inotify; poll the directory (NFS/SSHFS)")
    scheduler_interval: float = _setting(10.0, float, "seconds between squeue/scontrol queries for a Slurm run")
    remote_gpu_interval: float = _setting(30.0, float, "seconds between srun nvidia-smi queries of a Slurm job's GPUs")


@dataclass(frozen=True, slots=True)
class UiSettings:
    theme: str = _setting("textual-dark", str, "Textual theme name")
    readonly: bool = _setting(False, _as_bool, "remove the start, kill and eval actions")
    keymap: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"convert": _as_mapping, "help": 'binding id -> keys, e.g. {kill-run = "ctrl+k"}'},
    )


@dataclass(frozen=True, slots=True)
class AlertSettings:
    bell: bool = _setting(True, _as_bool, "ring the terminal bell on a new alert")
    desktop: bool = _setting(True, _as_bool, "send OSC 9 / OSC 777 desktop notifications")
    hook: tuple[str, ...] = _setting((), _as_argv, "argv run once per new alert, alert JSON on stdin")
    hook_timeout: float = _setting(30.0, float, "seconds the alert hook may run before it is stopped")
    stall_factor: float = _setting(10.0, float, "stalled after this many usual step-times without a step")
    gpu_temp_warn: int = _setting(85, int, "GPU temperature (C) that raises an alert")


@dataclass(frozen=True, slots=True)
class EvalSettings:
    command: tuple[str, ...] = _setting(
        (),
        _as_argv,
        "evaluation argv template ({checkpoint} {base_model} {output_dir} {epoch} {num_samples} {resolution} {device})",
    )
    base_model: str | None = _setting(None, _as_opt_path, "SDXL base model for evaluation")
    num_samples: int = _setting(4, int, "images per evaluation")
    resolution: int = _setting(1024, int, "evaluation resolution")
    device: str = _setting("cuda", str, "evaluation device")
    prompts: str | None = _setting(None, _as_opt_path, "prompts file for evaluation (one per line)")


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    file: str | None = _setting(None, _as_opt_path, "launch config TOML (default: DIR/sdxl-tui.toml)")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    dir: str | None = _setting(
        None, _as_opt_path, "folder of the night's queue (default $XDG_STATE_HOME/sdxl-tui/queue)"
    )
    poll_interval: float = _setting(5.0, float, "seconds between the queue runner's looks at its runs")


@dataclass(frozen=True, slots=True)
class KillSettings:
    sigint_timeout: float = _setting(10.0, float, "seconds to wait after SIGINT")
    sigterm_timeout: float = _setting(10.0, float, "seconds to wait after SIGTERM before SIGKILL")


@dataclass(frozen=True, slots=True)
class ReportSettings:
    on_end: bool = _setting(
        False,
        _as_bool,
        "when a run started by `sdxl-tui start` ends, write OUTPUT_DIR/.sdxl-tui/report.html and report.md",
    )


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: bool = _setting(
        True, _as_bool, "remember each run's decoded event files in $XDG_CACHE_HOME/sdxl-tui (read only new bytes)"
    )
    max_mb: float = _setting(64.0, float, "size bound of that cache folder in MB (oldest files go first)")


_SECTIONS: tuple[tuple[str, type[Any]], ...] = (
    ("refresh", RefreshSettings),
    ("ui", UiSettings),
    ("alerts", AlertSettings),
    ("eval", EvalSettings),
    ("launch", LaunchSettings),
    ("queue", QueueSettings),
    ("kill", KillSettings),
    ("report", ReportSettings),
    ("cache", CacheSettings),
)


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting as ``--help``, the environment and the TOML file name it."""

    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str


def _default_of(f: Field[Any]) -> Any:
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


#: Every setting, in table order (derived from the sections above).
SPECS: tuple[Spec, ...] = tuple(
    Spec(f"{section}.{f.name}", _default_of(f), f.metadata["convert"], f.metadata["help"])
    for section, cls in _SECTIONS
    for f in fields(cls)
)

_SPEC_BY_NAME = {s.name: s for s in SPECS}


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper().replace(".", "_")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sdxl-tui" / "config.toml"


def _default_sources() -> Mapping[str, str]:
    return MappingProxyType({s.name: "default" for s in SPECS})


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings, typed by section (``settings.alerts.stall_factor``); ``sources[name]``
    says where each dotted name's value came from ("default", "file", "env" or "cli")."""

    refresh: RefreshSettings = field(default_factory=RefreshSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    kill: KillSettings = field(default_factory=KillSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    sources: Mapping[str, str] = field(default_factory=_default_sources)
    config_file: str | None = None

    def value(self, name: str) -> Any:
        """The value of a dotted name (``--show-config``)."""
        section, _, key = name.partition(".")
        return getattr(getattr(self, section), key)

    def replace(self, **overrides: Any) -> Settings:
        """Return a copy with dotted-name overrides given as ``section__key=value``."""
        values = {s.name: self.value(s.name) for s in SPECS}
        sources = dict(self.sources)
        for key, value in overrides.items():
            name = key.replace("__", ".")
            values[name] = _SPEC_BY_NAME[name].convert(value)
            sources[name] = "cli"
        return _build(values, sources, self.config_file)


def _build(values: Mapping[str, Any], sources: Mapping[str, str], config_file: str | None) -> Settings:
    """Settings from converted values by dotted name."""
    sections = {
        section: cls(**{f.name: values[f"{section}.{f.name}"] for f in fields(cls)}) for section, cls in _SECTIONS
    }
    return Settings(**sections, sources=MappingProxyType(dict(sources)), config_file=config_file)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in _SPEC_BY_NAME:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_settings(
    cli: Mapping[str, Any] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from all layers.

    Args:
        cli: dotted names to values given on the command line (``None`` values are skipped).
        config_path: explicit ``--config`` file; must exist. Without it the XDG file is used
            when present.
        environ: the environment (defaults to ``os.environ``).

    Raises:
        ConfigError: unreadable or invalid TOML, unknown keys, or values of the wrong type.
    """
    env = os.environ if environ is None else environ
    values = {s.name: s.default for s in SPECS}
    sources = {s.name: "default" for s in SPECS}

    path: Path | None
    if config_path is not None:
        path = Path(config_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
    elif env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from {ENV_PREFIX}CONFIG)")
    else:
        path = default_config_path(env)
        if not path.is_file():
            path = None

    def apply(name: str, raw: Any, origin: str) -> None:
        spec = _SPEC_BY_NAME.get(name)
        if spec is None:
            raise ConfigError(f"unknown setting {name!r} ({origin}); known: {', '.join(_SPEC_BY_NAME)}")
        try:
            values[name] = spec.convert(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value for {name} ({origin}): {raw!r}: {exc}") from None
        sources[name] = origin

    if path is not None:
        try:
            data = toml.load(path)
        except (OSError, toml.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        for name, raw in _flatten(data).items():
            apply(name, raw, "file")
    for spec in SPECS:
        var = env_var(spec.name)
        if var in env:
            apply(spec.name, env[var], "env")
    for name, raw in (cli or {}).items():
        if raw is not None:
            apply(name, raw, "cli")
    return _build(values, sources, str(path) if path else None)


def settings_help() -> str:
    """The settings table for ``--help`` epilogs."""
    lines = ["settings (TOML [section] key / environment variable, default):"]
    for spec in SPECS:
        default = spec.default
        if isinstance(default, Mapping):
            default = dict(default)
        lines.append(f"  {spec.name:<24} {env_var(spec.name):<34} {default!r}")
        lines.append(f"      {spec.help}")
    return "\n".join(lines)
