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
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


@dataclass(frozen=True)
class Spec:
    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str


#: Every setting, in the order ``--help`` and the README list them.
SPECS: tuple[Spec, ...] = (
    Spec("refresh.log_interval", 0.25, float, "seconds between log/event re-reads when idle (watchdog wakes earlier)"),
    Spec("refresh.gpu_interval", 1.0, float, "seconds between NVML samples"),
    Spec("refresh.process_interval", 2.0, float, "seconds between process-table scans"),
    Spec("refresh.busy_interval", 2.0, float, "while the run writes continuously, re-read and repaint at most this often (seconds)"),
    Spec("refresh.force_polling", False, _as_bool, "never use inotify; poll the directory (NFS/SSHFS)"),
    Spec("refresh.scheduler_interval", 10.0, float, "seconds between squeue/scontrol queries for a Slurm run"),
    Spec("refresh.remote_gpu_interval", 30.0, float, "seconds between srun nvidia-smi queries of a Slurm job's GPUs"),
    Spec("ui.theme", "textual-dark", str, "Textual theme name"),
    Spec("ui.readonly", False, _as_bool, "remove the start, kill and eval actions"),
    Spec("ui.keymap", MappingProxyType({}), _as_mapping, "binding id -> keys, e.g. {kill-run = \"ctrl+k\"}"),
    Spec("alerts.bell", True, _as_bool, "ring the terminal bell on a new alert"),
    Spec("alerts.desktop", True, _as_bool, "send OSC 9 / OSC 777 desktop notifications"),
    Spec("alerts.hook", (), _as_argv, "argv run once per new alert, alert JSON on stdin"),
    Spec("alerts.hook_timeout", 30.0, float, "seconds the alert hook may run before it is stopped"),
    Spec("alerts.stall_factor", 10.0, float, "stalled after this many usual step-times without a step"),
    Spec("alerts.gpu_temp_warn", 85, int, "GPU temperature (C) that raises an alert"),
    Spec("eval.command", (), _as_argv, "evaluation argv template ({checkpoint} {base_model} {output_dir} {epoch} {num_samples} {resolution} {device})"),
    Spec("eval.base_model", None, _as_opt_path, "SDXL base model for evaluation"),
    Spec("eval.num_samples", 4, int, "images per evaluation"),
    Spec("eval.resolution", 1024, int, "evaluation resolution"),
    Spec("eval.device", "cuda", str, "evaluation device"),
    Spec("eval.prompts", None, _as_opt_path, "prompts file for evaluation (one per line)"),
    Spec("launch.file", None, _as_opt_path, "launch config TOML (default: DIR/sdxl-tui.toml)"),
    Spec("queue.dir", None, _as_opt_path, "folder of the night's queue (default $XDG_STATE_HOME/sdxl-tui/queue)"),
    Spec("queue.poll_interval", 5.0, float, "seconds between the queue runner's looks at its runs"),
    Spec("kill.sigint_timeout", 10.0, float, "seconds to wait after SIGINT"),
    Spec("kill.sigterm_timeout", 10.0, float, "seconds to wait after SIGTERM before SIGKILL"),
)

_SPEC_BY_NAME = {s.name: s for s in SPECS}


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper().replace(".", "_")


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sdxl-tui" / "config.toml"


@dataclass(frozen=True)
class Settings:
    """Resolved settings; ``values[name]`` is the value, ``sources[name]`` where it came from
    ("default", "file", "env" or "cli")."""

    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({s.name: s.default for s in SPECS}))
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({s.name: "default" for s in SPECS}))
    config_file: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def replace(self, **overrides: Any) -> Settings:
        """Return a copy with dotted-name overrides given as ``section__key=value``."""
        values = dict(self.values)
        sources = dict(self.sources)
        for key, value in overrides.items():
            name = key.replace("__", ".")
            values[name] = _SPEC_BY_NAME[name].convert(value)
            sources[name] = "cli"
        return Settings(MappingProxyType(values), MappingProxyType(sources), self.config_file)


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
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
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
    return Settings(
        MappingProxyType(values), MappingProxyType(sources), str(path) if path else None
    )


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
