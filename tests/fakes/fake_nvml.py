"""A fake ``pynvml`` module: the same function names, error classes and constants.

Why: NVML is the one boundary the project fakes (no GPU on CI). Pass an instance wherever a
module-like ``nvml`` object is accepted (``GpuMonitor(nvml=fake)``). It behaves like pynvml
where it matters: every call before ``nvmlInit`` raises ``NVMLError_Uninitialized``, errors are
subclasses of ``NVMLError`` named exactly like pynvml's, device names can be bytes (old
bindings) or str, and ``usedGpuMemory`` may be ``None``.

Usage::

    nvml = FakeNVML([FakeDevice(name="NVIDIA GeForce RTX 4090", processes={4242: 9 << 30})])
    nvml.init_errors = [NVMLError_LibraryNotFound]       # fail the next nvmlInit() once
    nvml.devices[0].fail["nvmlDeviceGetPowerUsage"] = NVMLError_NotSupported
    nvml.devices[0].lost = True                          # every call on it: GpuIsLost
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# --------------------------------------------------------------------------- constants (pynvml values)

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksEventReasonNone = 0x0
nvmlClocksThrottleReasonGpuIdle = nvmlClocksEventReasonGpuIdle
nvmlClocksThrottleReasonSwPowerCap = nvmlClocksEventReasonSwPowerCap
nvmlClocksThrottleReasonHwSlowdown = nvmlClocksEventReasonHwSlowdown
nvmlClocksThrottleReasonSwThermalSlowdown = nvmlClocksEventReasonSwThermalSlowdown
nvmlClocksThrottleReasonHwThermalSlowdown = nvmlClocksEventReasonHwThermalSlowdown

# --------------------------------------------------------------------------- errors

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Base of all fake NVML errors; ``value`` is the NVML return code, as in pynvml."""

    code = NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        self.value = self.code if value is None else value
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _error(name: str, code: int) -> type[NVMLError]:
    return type(name, (NVMLError,), {"code": code, "__module__": __name__})


NVMLError_Uninitialized = _error("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _error("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _error("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_Timeout = _error("NVMLError_Timeout", NVML_ERROR_TIMEOUT)
NVMLError_LibraryNotFound = _error("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_LibRmVersionMismatch = _error(
    "NVMLError_LibRmVersionMismatch", NVML_ERROR_LIB_RM_VERSION_MISMATCH
)
NVMLError_Unknown = _error("NVMLError_Unknown", NVML_ERROR_UNKNOWN)

ERROR_CLASSES: tuple[type[NVMLError], ...] = (
    NVMLError_Uninitialized,
    NVMLError_InvalidArgument,
    NVMLError_NotSupported,
    NVMLError_NoPermission,
    NVMLError_NotFound,
    NVMLError_DriverNotLoaded,
    NVMLError_Timeout,
    NVMLError_LibraryNotFound,
    NVMLError_FunctionNotFound,
    NVMLError_GpuIsLost,
    NVMLError_LibRmVersionMismatch,
    NVMLError_Unknown,
)

# --------------------------------------------------------------------------- devices


@dataclass
class FakeDevice:
    """One fake GPU. Set ``fail[function_name]`` to an error class (or instance) to raise."""

    name: str | bytes = "NVIDIA GeForce RTX 4090"
    uuid: str | bytes = "GPU-00000000-0000-0000-0000-000000000000"
    memory_total: int = 24 * 1024**3
    memory_used: int = 18 * 1024**3
    util_gpu: int = 97
    util_memory: int = 61
    temperature: int = 71
    temperature_slowdown: int = 90
    power_mw: int = 412_345
    power_limit_mw: int = 450_000
    clocks_event_reasons: int = 0
    processes: dict[int, int | None] = field(default_factory=dict)  # compute: pid -> bytes
    graphics_processes: dict[int, int | None] = field(default_factory=dict)
    fail: dict[str, type[BaseException] | BaseException] = field(default_factory=dict)
    lost: bool = False  # every call on this device raises NVMLError_GpuIsLost


class FakeNVML:
    """A module-like fake of pynvml. Counts calls so tests can check init/shutdown."""

    def __init__(
        self,
        devices: list[FakeDevice] | None = None,
        *,
        driver_version: str | bytes = "550.54.15",
        init_errors: list[type[BaseException] | BaseException] | None = None,
        clocks_api: str = "event",
        missing: tuple[str, ...] = (),
    ) -> None:
        self.devices: list[FakeDevice] = list(devices or [])
        self.driver_version = driver_version
        self.init_errors: list[type[BaseException] | BaseException] = list(init_errors or [])
        """Raised by successive nvmlInit() calls, one per call, before init succeeds."""
        self.count_error: type[BaseException] | BaseException | None = None
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[str] = []
        self._refcount = 0
        hidden = set(missing)
        if clocks_api == "throttle":  # bindings older than nvml 12.x
            hidden.add("nvmlDeviceGetCurrentClocksEventReasons")
        elif clocks_api == "event":  # bindings where the deprecated name is gone
            hidden.add("nvmlDeviceGetCurrentClocksThrottleReasons")
        self._hidden = frozenset(hidden)

    # The error classes and constants are reachable on the instance, as on the module.
    def __getattr__(self, name: str) -> Any:
        value = globals().get(name)
        if value is None or not (name.startswith(("NVML", "nvmlClocks"))):
            raise AttributeError(name)
        return value

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "_hidden"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _raise(err: type[BaseException] | BaseException) -> None:
        raise err() if isinstance(err, type) else err

    def _check(self, fn: str) -> None:
        self.calls.append(fn)
        if self._refcount <= 0:
            raise NVMLError_Uninitialized()

    def _dev(self, handle: Any, fn: str) -> FakeDevice:
        self._check(fn)
        dev: FakeDevice = handle.device
        if dev.lost:
            raise NVMLError_GpuIsLost()
        err = dev.fail.get(fn)
        if err is not None:
            self._raise(err)
        return dev

    # ---------------------------------------------------------------- library

    def nvmlInit(self) -> None:
        self.init_calls += 1
        self.calls.append("nvmlInit")
        if self.init_errors:
            self._raise(self.init_errors.pop(0))
        self._refcount += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.shutdown_calls += 1
        self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._check("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        if self.count_error is not None:
            self._raise(self.count_error)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.devices):
            raise NVMLError_InvalidArgument()
        dev = self.devices[index]
        if dev.lost:
            raise NVMLError_GpuIsLost()
        err = dev.fail.get("nvmlDeviceGetHandleByIndex")
        if err is not None:
            self._raise(err)
        return SimpleNamespace(device=dev, index=index)

    # ---------------------------------------------------------------- device queries

    def nvmlDeviceGetName(self, handle: Any) -> str | bytes:
        return self._dev(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes:
        return self._dev(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        d = self._dev(handle, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            total=d.memory_total, used=d.memory_used, free=d.memory_total - d.memory_used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        d = self._dev(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=d.util_gpu, memory=d.util_memory)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        d = self._dev(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument()
        return d.temperature

    def nvmlDeviceGetTemperatureV(self, handle: Any, sensor: int, version: Any = None) -> int:
        d = self._dev(handle, "nvmlDeviceGetTemperatureV")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument()
        return d.temperature

    def nvmlDeviceGetTemperatureThreshold(self, handle: Any, threshold: int) -> int:
        d = self._dev(handle, "nvmlDeviceGetTemperatureThreshold")
        if threshold != NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            raise NVMLError_NotSupported()
        return d.temperature_slowdown

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._dev(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return self._dev(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return self._dev(handle, "nvmlDeviceGetPowerManagementLimit").power_limit_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._dev(handle, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        dev = self._dev(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")
        return dev.clocks_event_reasons

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        d = self._dev(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in d.processes.items()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[Any]:
        d = self._dev(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in d.graphics_processes.items()]


def no_library() -> FakeNVML:
    """NVML as on a machine with no NVIDIA driver installed."""
    return FakeNVML(init_errors=[NVMLError_LibraryNotFound] * 1000)


def driver_not_loaded() -> FakeNVML:
    """NVML as with the library installed but the kernel module not loaded."""
    return FakeNVML(init_errors=[NVMLError_DriverNotLoaded] * 1000)


def hot_gpu() -> FakeNVML:
    """One GPU near its slowdown temperature, clocks cut by heat and the power cap."""
    return FakeNVML(
        [
            FakeDevice(
                temperature=89,
                temperature_slowdown=90,
                clocks_event_reasons=nvmlClocksEventReasonHwThermalSlowdown
                | nvmlClocksEventReasonSwPowerCap,
                processes={4242: 23 * 1024**3},
                memory_used=23 * 1024**3 + 512 * 1024**2,
            )
        ]
    )


def two_gpus() -> FakeNVML:
    """A two-GPU workstation with the trainer (pid 4242) on GPU 0."""
    return FakeNVML(
        [
            FakeDevice(
                name=b"NVIDIA GeForce RTX 4090",
                uuid=b"GPU-4090",
                processes={4242: 18 * 1024**3},
                graphics_processes={1500: 300 * 1024**2},
                clocks_event_reasons=nvmlClocksEventReasonSwPowerCap,
            ),
            FakeDevice(
                name="NVIDIA RTX A6000",
                uuid="GPU-a6000",
                memory_total=48 * 1024**3,
                memory_used=1024**3,
                util_gpu=0,
                util_memory=0,
                temperature=38,
                temperature_slowdown=93,
                power_mw=25_000,
                power_limit_mw=300_000,
                clocks_event_reasons=nvmlClocksEventReasonGpuIdle,
            ),
        ]
    )
