"""GPU state through NVML, behind one injectable module-like boundary.

Why a boundary object: the dashboard must run (and be tested) on machines without an NVIDIA
driver, where "no GPU" is a normal state to show, not a traceback. Everything NVML-specific
goes through ``self._nvml``: the real ``pynvml`` module (package nvidia-ml-py) by default,
``tests/fakes/fake_nvml.py`` in tests. The rules follow nvitop's ``api/``: initialise lazily
once, ``nvmlShutdown`` on close, a field that raises ``NotSupported`` (or any per-field error)
becomes ``None`` (N/A) while the rest of the device is still filled, and a lost GPU is reported
on that device instead of failing the sample.

Retry policy (decided): when NVML cannot start (no library, driver not loaded, no permission,
version mismatch) ``sample()`` answers ``available=False`` with a human reason and tries
``nvmlInit`` again at most every ``retry_seconds`` (30 s): a driver installed or loaded while
the dashboard runs is picked up, and a machine without one pays one failed ``dlopen`` per
30 s. A missing ``pynvml`` module is never retried (it cannot appear without a restart).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any

from sdxl_tui.model import GpuSample, GpuStatus

__all__ = ["RETRY_SECONDS", "THROTTLE_REASON_NAMES", "GpuMonitor", "LatestGpu", "sample_gpus", "throttle_reason_names"]

RETRY_SECONDS = 30.0


class LatestGpu:
    """The newest GPU status, handed from the thread that samples NVML to the run reader.

    Why: the dashboard samples the GPUs on their own thread at ``refresh.gpu_interval`` (NVML
    calls can block); the run reader folds the latest status into its snapshots (the GPU
    alerts) without touching NVML. A reference assignment is atomic, so no lock is needed.
    It is a :data:`~sdxl_tui.sources.rundir.GpuSource`: call it for the status.
    """

    def __init__(self) -> None:
        self._status = GpuStatus(available=False, reason="not sampled yet")

    def set(self, status: GpuStatus) -> None:
        self._status = status

    def __call__(self, trainer_pids: Collection[int] = ()) -> GpuStatus:
        return self._status

THROTTLE_REASON_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0x2: "applications_clocks_setting",
        0x4: "sw_power_cap",
        0x8: "hw_slowdown",
        0x10: "sync_boost",
        0x20: "sw_thermal_slowdown",
        0x40: "hw_thermal_slowdown",
        0x80: "hw_power_brake_slowdown",
        0x100: "display_clock_setting",
        0x200: "board_limit",
        0x400: "reliability",
    }
)
"""NVML clocks event (throttle) reason bits; 0x1 (gpu_idle) and 0 (none) are not reasons."""

_GPU_IDLE = 0x1

# Per-field errors that simply mean "N/A here" (nvitop's rule); anything else is also N/A but
# noted in GpuSample.problem, and GpuIsLost stops the device.
_NA_ERRORS = (
    "NVMLError_NotSupported",
    "NVMLError_FunctionNotFound",
    "NVMLError_NoPermission",
    "NVMLError_NotFound",
    "NVMLError_InvalidArgument",
    "NVMLError_NoData",
)

def _nvml_library_missing() -> str | None:
    """The "no driver" reason when libnvidia-ml cannot be loaded on Linux, else None.

    Why: without a driver, importing the ``pynvml`` bindings (a large module) costs tens of
    milliseconds of a cold ``sdxl-tui status`` only for ``nvmlInit`` to fail at its first
    ``dlopen``. Trying that ``dlopen`` first costs a fraction of a millisecond and gives the
    same answer (retried later like any failed initialisation). Missing bindings still give
    their own reason: this check runs only when the module can be found.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        if importlib.util.find_spec("pynvml") is None:
            return None  # the import below reports the missing bindings
    except (ImportError, ValueError):
        return None
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return _INIT_REASONS["NVMLError_LibraryNotFound"]
    return None


_INIT_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "NVMLError_LibraryNotFound": "no NVIDIA driver: NVML library (libnvidia-ml.so.1) not found",
        "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
        "NVMLError_NoPermission": "no permission to use NVML",
        "NVMLError_LibRmVersionMismatch": (
            "NVIDIA driver and NVML library versions differ (reload the driver or reboot)"
        ),
        "NVMLError_GpuIsLost": "GPU is lost (NVML)",
    }
)


def throttle_reason_names(mask: int) -> tuple[str, ...]:
    """Readable names for the set bits of an NVML clocks event/throttle reasons mask.

    ``gpu_idle`` is dropped (an idle GPU is not throttled); unknown bits come out as hex.
    """
    names: list[str] = []
    bit = 1
    rest = mask & ~_GPU_IDLE
    while rest:
        if rest & bit:
            names.append(THROTTLE_REASON_NAMES.get(bit, f"0x{bit:x}"))
            rest &= ~bit
        bit <<= 1
    return tuple(names)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class _DeviceLost(Exception):
    """Raised inside one device's query when NVML says the GPU is gone."""


class GpuMonitor:
    """Sample all NVIDIA GPUs; ``available=False`` with a reason when there are none.

    Not thread-safe: one monitor belongs to one reader thread.
    """

    def __init__(
        self,
        nvml: Any = None,
        *,
        clock: Callable[[], float] = time.time,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._nvml: Any = nvml
        self._errors: tuple[type[BaseException], ...] = _errors_of(nvml)
        self._clock = clock
        self._retry = retry_seconds
        self._initialised = False
        self._permanent_reason: str | None = None
        self._last_attempt: float | None = None
        self._last_reason: str | None = None
        self._driver_version: str | None = None

    # ---------------------------------------------------------------- public

    @property
    def initialised(self) -> bool:
        """True between a successful ``nvmlInit`` and ``close()``."""
        return self._initialised

    def sample(self, trainer_pids: Collection[int] = ()) -> GpuStatus:
        """Query every device once; never raises for NVML trouble.

        Args:
            trainer_pids: accepted for the agreed signature. ``process_memory`` always lists
                every process NVML reports on a device, so the caller can pick the trainer's.

        Returns:
            ``GpuStatus``: the devices, or ``available=False`` and why.
        """
        now = self._clock()
        reason = self._ensure_init(now)
        if reason is not None:
            return GpuStatus(available=False, reason=reason, taken_at=now)
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except self._errors as exc:  # driver gone under us: report, shut down, retry later
            reason = self._reason_for(exc, "NVML stopped answering")
            self._drop(now, reason)
            return GpuStatus(
                available=False, reason=reason, driver_version=self._driver_version, taken_at=now
            )
        if count <= 0:
            return GpuStatus(
                available=False,
                reason="no NVIDIA GPU found",
                driver_version=self._driver_version,
                taken_at=now,
            )
        gpus = tuple(self._device(i) for i in range(count))
        return GpuStatus(
            available=True, gpus=gpus, driver_version=self._driver_version, taken_at=now
        )

    def close(self) -> None:
        """Shut NVML down if this monitor started it; a later ``sample()`` starts it again."""
        if self._initialised:
            self._initialised = False
            # shutting down a dead driver must not fail the app's exit
            with contextlib.suppress(*self._errors):
                self._nvml.nvmlShutdown()
        self._last_attempt = None

    def __enter__(self) -> GpuMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- init

    def _ensure_init(self, now: float) -> str | None:
        """None when NVML is ready, else the reason it is not (retried every retry_seconds)."""
        if self._initialised:
            return None
        if self._permanent_reason is not None:
            return self._permanent_reason
        if self._last_attempt is not None and now - self._last_attempt < self._retry:
            return self._last_reason
        self._last_attempt = now
        if self._nvml is None:
            missing = _nvml_library_missing()
            if missing is not None:
                self._last_reason = missing
                return missing
            try:
                self._nvml = importlib.import_module("pynvml")
                self._errors = _errors_of(self._nvml)
            except ImportError:
                self._permanent_reason = "NVML bindings not installed (pip install nvidia-ml-py)"
                return self._permanent_reason
        try:
            self._nvml.nvmlInit()
        except self._errors as exc:
            self._last_reason = self._reason_for(exc, "NVML unavailable")
            return self._last_reason
        self._initialised = True
        self._last_reason = None
        if self._driver_version is None:
            with contextlib.suppress(*self._errors):
                self._driver_version = _text(self._nvml.nvmlSystemGetDriverVersion())
        return None

    def _drop(self, now: float, reason: str) -> None:
        self.close()
        self._last_attempt = now
        self._last_reason = reason

    def _reason_for(self, exc: BaseException, prefix: str) -> str:
        for cls in type(exc).__mro__:
            known = _INIT_REASONS.get(cls.__name__)
            if known is not None:
                return known
        return f"{prefix}: {exc}" if str(exc) else f"{prefix}: {type(exc).__name__}"

    def _is(self, exc: BaseException, *names: str) -> bool:
        classes = tuple(
            c for c in (getattr(self._nvml, n, None) for n in names) if isinstance(c, type)
        )
        return bool(classes) and isinstance(exc, classes)

    # ---------------------------------------------------------------- one device

    def _device(self, index: int) -> GpuSample:
        query = _Query(self)
        try:
            handle = query("handle", ("nvmlDeviceGetHandleByIndex", (index,)))
            if handle is None:
                return GpuSample(
                    index=index,
                    name=f"GPU {index}",
                    problem="; ".join(query.notes) or "cannot open device",
                )
            raw = self._read_device(query, handle)
        except _DeviceLost as lost:
            return GpuSample(index=index, name=f"GPU {index}", problem=f"GPU is lost: {lost}")
        name, power, limit, reasons = raw["name"], raw["power"], raw["limit"], raw["reasons"]
        return GpuSample(
            index=index,
            name=_text(name) if name is not None else f"GPU {index}",
            uuid=_text(raw["uuid"]) if raw["uuid"] is not None else None,
            memory_used=_int_attr(raw["mem"], "used"),
            memory_total=_int_attr(raw["mem"], "total"),
            utilization=_int_attr(raw["util"], "gpu"),
            memory_utilization=_int_attr(raw["util"], "memory"),
            temperature=_int_or_none(raw["temperature"]),
            temperature_slowdown=_int_or_none(raw["slowdown"]),
            power_draw=None if _int_or_none(power) is None else int(power) / 1000.0,
            power_limit=None if _int_or_none(limit) is None else int(limit) / 1000.0,
            throttle_reasons=(
                throttle_reason_names(int(reasons)) if _int_or_none(reasons) is not None else ()
            ),
            process_memory=MappingProxyType(raw["processes"]),
            problem="; ".join(query.notes) or None,
        )

    def _read_device(self, query: _Query, handle: Any) -> dict[str, Any]:
        """NVML's raw answers for one device, by field (None where N/A)."""
        nvml = self._nvml
        raw: dict[str, Any] = {
            "name": query("name", ("nvmlDeviceGetName", (handle,))),
            "uuid": query("uuid", ("nvmlDeviceGetUUID", (handle,))),
            "mem": query("memory", ("nvmlDeviceGetMemoryInfo", (handle,))),
            "util": query("utilization", ("nvmlDeviceGetUtilizationRates", (handle,))),
        }
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        raw["temperature"] = query(
            "temperature",
            ("nvmlDeviceGetTemperatureV", (handle, sensor)),
            ("nvmlDeviceGetTemperature", (handle, sensor)),
        )
        raw["slowdown"] = query(
            "slowdown temperature",
            (
                "nvmlDeviceGetTemperatureThreshold",
                (handle, getattr(nvml, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", 1)),
            ),
        )
        raw["power"] = query("power", ("nvmlDeviceGetPowerUsage", (handle,)))
        raw["limit"] = query(
            "power limit",
            ("nvmlDeviceGetEnforcedPowerLimit", (handle,)),
            ("nvmlDeviceGetPowerManagementLimit", (handle,)),
        )
        raw["reasons"] = query(
            "throttle reasons",
            ("nvmlDeviceGetCurrentClocksEventReasons", (handle,)),
            ("nvmlDeviceGetCurrentClocksThrottleReasons", (handle,)),
        )
        processes: dict[int, int] = {}
        for fn_name in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            for proc in query("processes", (fn_name, (handle,))) or ():
                pid = getattr(proc, "pid", None)
                used = getattr(proc, "usedGpuMemory", None)
                if isinstance(pid, int) and isinstance(used, int) and used >= 0:
                    processes[pid] = max(used, processes.get(pid, 0))
        raw["processes"] = processes
        return raw


class _Query:
    """NVML calls for one device: the first call that answers; None (N/A) when none does.

    ``GpuIsLost`` aborts (:class:`_DeviceLost`). An unexpected error is noted only when no
    fallback call answered either.
    """

    def __init__(self, monitor: GpuMonitor) -> None:
        self._monitor = monitor
        self.notes: list[str] = []

    def __call__(self, label: str, *calls: tuple[str, tuple[Any, ...]]) -> Any:
        monitor = self._monitor
        errors: list[str] = []
        for fn_name, args in calls:
            fn = getattr(monitor._nvml, fn_name, None)
            if fn is None:
                continue
            try:
                return fn(*args)
            except monitor._errors as exc:
                if monitor._is(exc, "NVMLError_GpuIsLost"):
                    raise _DeviceLost(str(exc) or "GPU is lost") from exc
                if not monitor._is(exc, *_NA_ERRORS) and not isinstance(exc, AttributeError):
                    errors.append(f"{label}: {str(exc) or type(exc).__name__}")
        self.notes.extend(errors[:1])
        return None


def sample_gpus() -> GpuStatus:
    """The GPUs now, from a monitor opened for this one look (NVML is shut down after)."""
    with GpuMonitor() as monitor:
        return monitor.sample()


def _errors_of(nvml: Any) -> tuple[type[BaseException], ...]:
    """What an NVML call may raise: the module's NVMLError family plus ctypes/binding slips."""
    found = [
        c
        for c in (getattr(nvml, "NVMLError", None), getattr(nvml, "NVMLLibraryMismatchError", None))
        if isinstance(c, type) and issubclass(c, BaseException)
    ]
    return (*found, OSError, AttributeError, TypeError, ValueError)


def _int_or_none(value: object) -> int | None:
    """NVML integers; None for N/A and for the 'value not available' sentinels."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if value < 0 or value in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return value


def _int_attr(obj: object, name: str) -> int | None:
    return None if obj is None else _int_or_none(getattr(obj, name, None))
