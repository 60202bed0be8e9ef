"""Fakes for the boundaries the project does not own (NVML); see fake_nvml.py."""

from tests.fakes.fake_nvml import (
    FakeDevice,
    FakeNVML,
    driver_not_loaded,
    hot_gpu,
    no_library,
    two_gpus,
)

__all__ = ["FakeDevice", "FakeNVML", "driver_not_loaded", "hot_gpu", "no_library", "two_gpus"]
