"""A stand-in for the pynvml module with two GPUs, one of which cannot report its fan."""

from __future__ import annotations

from types import SimpleNamespace


class NVMLError(Exception):
    pass


class FakeNvml:
    """Only the functions `NvmlGpus` calls, answering like a driver with two cards."""

    NVMLError = NVMLError

    def __init__(self, *, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.initialised = False
        self.shut_down = False
        self.gpus = [
            dict(name="NVIDIA H100 80GB HBM3", uuid="GPU-aaaa", temp=61, util=87, mem_util=40,
                 used=40 * 1024**3, total=80 * 1024**3, fan=35, power=312_500, limit=700_000),
            dict(name=b"NVIDIA L4", uuid=b"", temp=44, util=3, mem_util=1,
                 used=1 * 1024**3, total=24 * 1024**3, fan=None, power=17_000, limit=72_000),
        ]  # fmt: skip

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError("NVML Shared Library Not Found")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: dict) -> str | bytes:
        return h["name"]

    def nvmlDeviceGetUUID(self, h: dict) -> str | bytes:
        return h["uuid"]

    def nvmlDeviceGetTemperature(self, h: dict, sensor: int) -> int:
        assert sensor == 0
        return h["temp"]

    def nvmlDeviceGetUtilizationRates(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(gpu=h["util"], memory=h["mem_util"])

    def nvmlDeviceGetMemoryInfo(self, h: dict) -> SimpleNamespace:
        return SimpleNamespace(used=h["used"], total=h["total"], free=h["total"] - h["used"])

    def nvmlDeviceGetFanSpeed(self, h: dict) -> int:
        if h["fan"] is None:
            raise NVMLError("Not Supported")
        return h["fan"]

    def nvmlDeviceGetPowerUsage(self, h: dict) -> int:
        return h["power"]

    def nvmlDeviceGetPowerManagementLimit(self, h: dict) -> int:
        return h["limit"]

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"
