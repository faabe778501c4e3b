"""A stand-in for the pynvml module with two GPUs, one of which cannot report its fan.

Per-process memory (`nvmlDeviceGetComputeRunningProcesses`) is what a test gives it: either
`set_process_memory(device, pid, mib)` in the test's own process, or, for a server in a
subprocess, a JSON file named by `FAKE_NVML_STATE` that the fake reads at every call:
`{"processes": {"<device>": {"<pid>": <MiB>}}, "used_mb": {"<device>": <MiB>},
"models": {"<model>": {"<device>": <MiB>}}}`. `models` gives the memory to the process this
server started for that model (found by its `LLAMASWAP_ES_TAG`, which starts with this server's
env tag `LLAMASWAP_ES_ENV_TAG`: other servers on the machine may run a model of the same name),
so a test can say what a model will use before its pid exists. A process's memory counts as
used memory on its device, as on a real driver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from llamaswap_es.runtime.orphans import find_tagged_processes

STATE_ENV = "FAKE_NVML_STATE"
_MIB = 1024 * 1024


def _tagged_pid(model: str) -> int | None:
    """The lowest live pid tagged as this server's upstream process of `model` (the server's
    own lookup: the fake runs inside the server process)."""
    env_tag = os.environ.get("LLAMASWAP_ES_ENV_TAG", "")
    pids = (
        p.pid for p in find_tagged_processes(env_tag) if p.model == model and p.role == "upstream"
    )
    return min(pids, default=None)


class NVMLError(Exception):
    pass


class FakeNvml:
    """Only the functions `NvmlGpus` calls, answering like a driver with two cards."""

    NVMLError = NVMLError

    def __init__(self, *, fail_init: bool = False, state_file: str | None = None) -> None:
        self.state_file = state_file
        self.processes: dict[int, dict[int, int]] = {}
        """Device index -> pid -> bytes it uses there."""
        self.fail_init = fail_init
        self.initialised = False
        self.shut_down = False
        self.gpus = [
            dict(name="NVIDIA H100 80GB HBM3", uuid="GPU-aaaa", temp=61, util=87, mem_util=40,
                 used=40 * 1024**3, total=80 * 1024**3, fan=35, power=312_500, limit=700_000),
            dict(name=b"NVIDIA L4", uuid=b"", temp=44, util=3, mem_util=1,
                 used=1 * 1024**3, total=24 * 1024**3, fan=None, power=17_000, limit=72_000),
        ]  # fmt: skip
        for index, gpu in enumerate(self.gpus):
            gpu["index"] = index
            gpu["base_used"] = gpu["used"]

    def set_process_memory(self, device: int, pid: int, mib: int) -> None:
        """Report `pid` as using `mib` MiB on `device` (0 forgets it)."""
        if mib:
            self.processes.setdefault(device, {})[pid] = mib * _MIB
        else:
            self.processes.get(device, {}).pop(pid, None)

    def _refresh(self) -> None:
        """Read the state file, when there is one (a test in another process writes it)."""
        if not self.state_file or not Path(self.state_file).is_file():
            return
        state = json.loads(Path(self.state_file).read_text() or "{}")
        self.processes = {
            int(device): {int(pid): int(mib) * _MIB for pid, mib in pids.items()}
            for device, pids in state.get("processes", {}).items()
        }
        for model, devices in state.get("models", {}).items():
            pid = _tagged_pid(model)
            for device, mib in devices.items() if pid is not None else ():
                self.processes.setdefault(int(device), {})[pid] = int(mib) * _MIB
        for device, mib in state.get("used_mb", {}).items():
            self.gpus[int(device)]["base_used"] = int(mib) * _MIB

    def _used(self, h: dict) -> int:
        return h["base_used"] + sum(self.processes.get(h["index"], {}).values())

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
        self._refresh()
        used = self._used(h)
        return SimpleNamespace(used=used, total=h["total"], free=h["total"] - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict) -> list[SimpleNamespace]:
        self._refresh()
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=size)
            for pid, size in sorted(self.processes.get(h["index"], {}).items())
        ]

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
