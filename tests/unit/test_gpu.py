"""GpuMonitor against the fake NVML module (and once against the real pynvml, no driver here)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdxl_tui.model import GpuStatus
from sdxl_tui.sources.gpu import GpuMonitor, throttle_reason_names
from tests.fakes import fake_nvml as fk
from tests.fakes.fake_nvml import (
    FakeDevice,
    FakeNVML,
    driver_not_loaded,
    hot_gpu,
    no_library,
    two_gpus,
)

GiB = 1024**3


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_no_library_is_a_normal_state() -> None:
    nvml = no_library()
    status = GpuMonitor(nvml).sample()
    assert status == GpuStatus(
        available=False,
        reason="no NVIDIA driver: NVML library (libnvidia-ml.so.1) not found",
        taken_at=status.taken_at,
    )
    assert nvml.shutdown_calls == 0


def test_driver_not_loaded() -> None:
    status = GpuMonitor(
        FakeNVML([FakeDevice()], init_errors=[fk.NVMLError_DriverNotLoaded])
    ).sample()
    assert not status.available and status.reason == "NVIDIA driver not loaded"


def test_factory_states() -> None:
    assert GpuMonitor(driver_not_loaded()).sample().reason == "NVIDIA driver not loaded"
    g = GpuMonitor(hot_gpu()).sample().gpus[0]
    assert (g.temperature, g.temperature_slowdown) == (89, 90)
    assert g.throttle_reasons == ("sw_power_cap", "hw_thermal_slowdown")


def test_temperature_falls_back_to_the_deprecated_call() -> None:
    dev = FakeDevice(temperature=66)
    dev.fail["nvmlDeviceGetTemperatureV"] = fk.NVMLError_FunctionNotFound  # older driver
    nvml = FakeNVML([dev])
    g = GpuMonitor(nvml).sample().gpus[0]
    assert g.temperature == 66 and g.problem is None
    assert nvml.calls.index("nvmlDeviceGetTemperatureV") < nvml.calls.index(
        "nvmlDeviceGetTemperature"
    )


def test_other_init_error_keeps_nvml_text() -> None:
    status = GpuMonitor(FakeNVML(init_errors=[fk.NVMLError_Unknown])).sample()
    assert status.reason == "NVML unavailable: Unknown Error"


def test_no_devices() -> None:
    status = GpuMonitor(FakeNVML([])).sample()
    assert not status.available
    assert status.reason == "no NVIDIA GPU found"
    assert status.driver_version == "550.54.15"


def test_two_gpus_full_data() -> None:
    clock = Clock(1234.5)
    status = GpuMonitor(two_gpus(), clock=clock).sample(trainer_pids=(4242,))
    assert status.available and status.reason is None
    assert status.driver_version == "550.54.15" and status.taken_at == 1234.5
    g0, g1 = status.gpus
    assert (g0.index, g0.name, g0.uuid) == (0, "NVIDIA GeForce RTX 4090", "GPU-4090")  # bytes
    assert (g0.memory_used, g0.memory_total) == (18 * GiB, 24 * GiB)
    assert (g0.utilization, g0.memory_utilization) == (97, 61)
    assert (g0.temperature, g0.temperature_slowdown) == (71, 90)
    assert g0.power_draw == pytest.approx(412.345) and g0.power_limit == 450.0
    assert g0.throttle_reasons == ("sw_power_cap",)
    assert dict(g0.process_memory) == {4242: 18 * GiB, 1500: 300 * 1024**2}
    assert g0.problem is None
    assert (g1.index, g1.name, g1.memory_total) == (1, "NVIDIA RTX A6000", 48 * GiB)
    assert g1.throttle_reasons == ()  # gpu_idle is not a throttle
    assert dict(g1.process_memory) == {}


def test_not_supported_fields_are_none_rest_filled() -> None:
    dev = FakeDevice(processes={7: None, 8: 5 * GiB})  # 7: memory not reported (WDDM, containers)
    for fn in (
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetPowerManagementLimit",
        "nvmlDeviceGetTemperatureThreshold",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetUUID",
    ):
        dev.fail[fn] = fk.NVMLError_NotSupported
    g = GpuMonitor(FakeNVML([dev])).sample().gpus[0]
    assert (g.power_draw, g.power_limit, g.temperature_slowdown) == (None, None, None)
    assert (g.utilization, g.memory_utilization, g.uuid) == (None, None, None)
    assert g.throttle_reasons == ()
    assert (g.name, g.memory_used, g.temperature) == ("NVIDIA GeForce RTX 4090", 18 * GiB, 71)
    assert dict(g.process_memory) == {8: 5 * GiB}
    assert g.problem is None  # N/A is not a problem


def test_power_limit_falls_back_and_unknown_field_error_is_noted() -> None:
    dev = FakeDevice(power_limit_mw=250_000)
    dev.fail["nvmlDeviceGetEnforcedPowerLimit"] = fk.NVMLError_FunctionNotFound
    dev.fail["nvmlDeviceGetTemperatureV"] = fk.NVMLError_Unknown
    g = GpuMonitor(FakeNVML([dev])).sample().gpus[0]
    assert g.power_limit == 250.0
    assert g.temperature == 71 and g.problem is None  # the fallback answered
    dev.fail["nvmlDeviceGetTemperature"] = fk.NVMLError_Unknown
    g = GpuMonitor(FakeNVML([dev])).sample().gpus[0]
    assert g.temperature is None
    assert g.problem == "temperature: Unknown Error"


def test_legacy_throttle_api_and_names() -> None:
    dev = FakeDevice(clocks_event_reasons=0x1 | 0x40 | 0x20 | 0x8 | 0x10 | 0x1000)
    g = GpuMonitor(FakeNVML([dev], clocks_api="throttle")).sample().gpus[0]
    assert g.throttle_reasons == (
        "hw_slowdown",
        "sync_boost",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "0x1000",
    )
    assert throttle_reason_names(0) == () and throttle_reason_names(0x1) == ()


def test_gpu_lost_mid_run_reports_device() -> None:
    nvml = two_gpus()
    monitor = GpuMonitor(nvml)
    assert monitor.sample().gpus[0].problem is None
    nvml.devices[0].lost = True
    status = monitor.sample()
    assert status.available
    g0, g1 = status.gpus
    assert g0.problem == "GPU is lost: GPU is lost" and g0.memory_used is None
    assert g1.problem is None and g1.memory_total == 48 * GiB
    nvml.devices[1].fail["nvmlDeviceGetMemoryInfo"] = fk.NVMLError_GpuIsLost
    assert monitor.sample().gpus[1].problem == "GPU is lost: GPU is lost"


def test_init_once_and_shutdown_on_close() -> None:
    nvml = two_gpus()
    monitor = GpuMonitor(nvml)
    assert nvml.init_calls == 0  # lazy
    for _ in range(3):
        monitor.sample()
    assert nvml.init_calls == 1
    assert nvml.calls.count("nvmlSystemGetDriverVersion") == 1
    monitor.close()
    assert nvml.shutdown_calls == 1 and not monitor.initialised
    monitor.close()
    assert nvml.shutdown_calls == 1
    with GpuMonitor(nvml) as m2:
        m2.sample()
    assert nvml.shutdown_calls == 2


def test_init_retried_at_most_every_30_seconds() -> None:
    nvml = FakeNVML([FakeDevice()], init_errors=[fk.NVMLError_LibraryNotFound] * 2)
    clock = Clock()
    monitor = GpuMonitor(nvml, clock=clock)
    assert not monitor.sample().available
    clock.now += 10
    assert not monitor.sample().available
    assert nvml.init_calls == 1  # not retried within 30 s
    clock.now += 25
    assert not monitor.sample().available
    assert nvml.init_calls == 2
    clock.now += 30  # the driver appeared
    status = monitor.sample()
    assert status.available and len(status.gpus) == 1
    assert nvml.init_calls == 3


def test_driver_disappearing_after_init() -> None:
    nvml = two_gpus()
    clock = Clock()
    monitor = GpuMonitor(nvml, clock=clock)
    assert monitor.sample().available
    nvml.count_error = fk.NVMLError_DriverNotLoaded
    status = monitor.sample()
    assert not status.available and status.reason == "NVIDIA driver not loaded"
    assert nvml.shutdown_calls == 1
    nvml.count_error = None
    clock.now += 31
    assert monitor.sample().available and nvml.init_calls == 2


def test_missing_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    status = GpuMonitor().sample()
    assert not status.available
    assert status.reason == "NVML bindings not installed (pip install nvidia-ml-py)"


def test_real_pynvml_on_this_machine() -> None:
    """The real bindings: no driver here must be a reason, not an exception."""
    import pynvml  # noqa: F401  (nvidia-ml-py is a dependency)

    monitor = GpuMonitor()
    try:
        status = monitor.sample()
    finally:
        monitor.close()
    if ctypes.util.find_library("nvidia-ml") is None and not Path("/dev/nvidiactl").exists():
        assert not status.available
        assert status.reason == "no NVIDIA driver: NVML library (libnvidia-ml.so.1) not found"
    else:  # a GPU machine
        assert status.available or status.reason


def test_probe_script_prints_json_without_a_gpu() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_probe.py"
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout)
    assert set(report) >= {"monitor", "raw"}
    assert isinstance(report["monitor"]["available"], bool)


def test_missing_driver_library_found_without_importing_the_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No libnvidia-ml: the same reason as NVML's LibraryNotFound, pynvml never imported, and
    the check is retried like any failed initialisation (a driver may be installed later)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the dlopen check is Linux-only")
    calls: list[str] = []

    def no_lib(name: str, *a: object, **k: object) -> object:
        calls.append(name)
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    now = [1000.0]
    monitor = GpuMonitor(clock=lambda: now[0])
    status = monitor.sample()
    assert not status.available
    assert status.reason == "no NVIDIA driver: NVML library (libnvidia-ml.so.1) not found"
    assert "pynvml" not in sys.modules and calls == ["libnvidia-ml.so.1"]
    assert monitor.sample().reason == status.reason and len(calls) == 1  # within the retry pause
    now[0] += 31
    monitor.sample()
    assert len(calls) == 2
