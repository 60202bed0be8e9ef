#!/usr/bin/env python3
"""Print what GpuMonitor sees next to the raw NVML answers, as JSON (run once on a GPU box).

Why: the unit tests use a fake NVML; this is the check against a real driver. Compare
"monitor" (what the dashboard shows) with "raw" (each pynvml call, or the error it raised).
Usage: python scripts/gpu_probe.py [--samples N]  (exit 0 even without a GPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from sdxl_tui.sources.gpu import GpuMonitor


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "_fields_"):  # ctypes structures from pynvml
        return {name: _jsonable(getattr(value, name)) for name, *_ in value._fields_}
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)


def _call(fn: Any, *args: Any) -> Any:
    try:
        return _jsonable(fn(*args))
    except Exception as exc:  # noqa: BLE001  (record anything, never stop the probe)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _raw() -> dict[str, Any]:
    try:
        import pynvml as n
    except ImportError as exc:
        return {"error": f"ImportError: {exc}"}
    init = _call(n.nvmlInit)
    if isinstance(init, dict):
        return {"nvmlInit": init}
    out: dict[str, Any] = {
        "driver": _call(n.nvmlSystemGetDriverVersion),
        "nvml": _call(n.nvmlSystemGetNVMLVersion),
        "count": _call(n.nvmlDeviceGetCount),
        "devices": [],
    }
    for i in range(out["count"] if isinstance(out["count"], int) else 0):
        try:
            h = n.nvmlDeviceGetHandleByIndex(i)
        except Exception as exc:  # noqa: BLE001
            out["devices"].append({"handle": {"error": f"{type(exc).__name__}: {exc}"}})
            continue
        calls = {
            "name": (n.nvmlDeviceGetName, h),
            "uuid": (n.nvmlDeviceGetUUID, h),
            "memory": (n.nvmlDeviceGetMemoryInfo, h),
            "utilization": (n.nvmlDeviceGetUtilizationRates, h),
            "temperatureV": (getattr(n, "nvmlDeviceGetTemperatureV", None), h, 0),
            "temperature": (n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            "slowdown": (
                n.nvmlDeviceGetTemperatureThreshold,
                h,
                n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
            ),
            "power_mw": (n.nvmlDeviceGetPowerUsage, h),
            "enforced_limit_mw": (n.nvmlDeviceGetEnforcedPowerLimit, h),
            "mgmt_limit_mw": (n.nvmlDeviceGetPowerManagementLimit, h),
            "clocks_event": (getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None), h),
            "clocks_throttle": (getattr(n, "nvmlDeviceGetCurrentClocksThrottleReasons", None), h),
            "compute_procs": (n.nvmlDeviceGetComputeRunningProcesses, h),
            "graphics_procs": (n.nvmlDeviceGetGraphicsRunningProcesses, h),
        }
        out["devices"].append(
            {k: _call(fn, *a) if fn else "absent in bindings" for k, (fn, *a) in calls.items()}
        )
    _call(n.nvmlShutdown)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3, help="samples to time (default 3)")
    args = ap.parse_args()
    with GpuMonitor() as monitor:
        t0 = time.perf_counter()
        first = monitor.sample()
        first_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        for _ in range(max(0, args.samples - 1)):
            monitor.sample()
        later_ms = (time.perf_counter() - t0) * 1000 / max(1, args.samples - 1)
    report = {
        "monitor": _jsonable(first),
        "timing_ms": {"first_sample": round(first_ms, 2), "later_sample": round(later_ms, 2)},
        "raw": _raw(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
