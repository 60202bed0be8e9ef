"""Fakes for the boundaries the project does not own (NVML); see fake_nvml.py."""

from tests.fakes.fake_nvml import FakeDevice, FakeNVML, no_library, two_gpus

__all__ = ["FakeDevice", "FakeNVML", "no_library", "two_gpus"]
