"""NVIDIA GPUs through NVML, behind a small interface so tests can hand in a fake module.

`NvmlGpus(module)` takes anything with pynvml's function names (`nvmlInit`,
`nvmlDeviceGetCount`, `nvmlDeviceGetHandleByIndex`, …); `load_nvml()` imports the real one. A host
without an NVIDIA driver is normal: `NvmlGpus.open` then returns None and nothing is logged above
debug. A figure a GPU cannot report (a passively cooled card has no fan speed) reads as 0, as
llama-swap's sources report it, instead of dropping the whole sample.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import logging
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaswap_es.perf.samples import GpuInfo, GpuStat

log = logging.getLogger("llamaswap_es.perf.nvml")

_MB = 1024 * 1024
NVML_TEMPERATURE_GPU = 0


NVML_LIBRARY = "libnvidia-ml.so.1"
"""The driver's library, by the name pynvml's `nvmlInit` loads it outside Windows (the dynamic
loader's search: /usr/lib/wsl/lib on WSL2 is found as on any Linux host)."""
BINDING_DISTRIBUTIONS = ("pynvml", "nvidia-ml-py")


def load_nvml() -> Any | None:
    """The pynvml module, or None when it is not installed, or when it is the installed binding
    and the NVIDIA driver's library is not there for it to load (outside Windows).

    Without the driver, `nvmlInit` could only fail: importing the binding first would cost the
    server ~0.9 MiB for the whole run (docs/benchmarks.md, "Idle memory") on every host without
    an NVIDIA GPU. A `pynvml` that no installed distribution owns (a stand-in put first on the
    path, as the e2e tests' driver is) is imported as it is, without the probe."""
    spec = importlib.util.find_spec("pynvml")
    if spec is None:
        return None
    if sys.platform != "win32" and _is_installed_binding(spec.origin):
        try:
            ctypes.CDLL(NVML_LIBRARY)
        except OSError as exc:
            log.debug("no NVIDIA driver (%s), pynvml not loaded", exc)
            return None
    try:
        with warnings.catch_warnings():  # pynvml warns that it is now packaged as nvidia-ml-py
            warnings.simplefilter("ignore")
            import pynvml
    except ImportError:
        return None
    return pynvml


def _is_installed_binding(origin: str | None) -> bool:
    """Whether the `pynvml` found at `origin` is a file of the installed pynvml or nvidia-ml-py
    distribution (their RECORD lists it); False for any other module of that name."""
    if origin is None:
        return False
    target = Path(origin).resolve()
    for name in BINDING_DISTRIBUTIONS:
        try:
            files = importlib.metadata.files(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        if any(Path(str(f.locate())).resolve() == target for f in files if f.name.endswith(".py")):
            return True
    return False


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    """One GPU's memory as placement counts it (MiB, by NVML index)."""

    index: int
    uuid: str
    name: str
    total_mb: int
    free_mb: int


class NvmlGpus:
    name = "NVML"

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls, nvml: Any | None) -> NvmlGpus | None:
        """Initialise NVML; None when there is no module, no driver or no GPU."""
        if nvml is None:
            return None
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
            log.debug("no NVIDIA GPUs: %s", exc)
            return None
        if not handles:
            cls._shutdown(nvml)
            return None
        return cls(nvml, handles)

    @property
    def count(self) -> int:
        return len(self._handles)

    def sample(self, now: float | None = None) -> list[GpuStat]:
        ts = time.time() if now is None else now
        nvml = self._nvml
        out = []
        for index, h in enumerate(self._handles):
            util = self._call(nvml.nvmlDeviceGetUtilizationRates, h)
            mem = self._call(nvml.nvmlDeviceGetMemoryInfo, h)
            out.append(
                GpuStat(
                    timestamp=ts,
                    id=index,
                    name=_text(self._call(nvml.nvmlDeviceGetName, h, default="")),
                    uuid=_text(self._call(nvml.nvmlDeviceGetUUID, h, default="")),
                    temp_c=float(
                        self._call(nvml.nvmlDeviceGetTemperature, h, NVML_TEMPERATURE_GPU) or 0
                    ),
                    vram_temp_c=0.0,
                    gpu_util_pct=float(getattr(util, "gpu", 0) or 0),
                    mem_util_pct=float(getattr(util, "memory", 0) or 0),
                    mem_used_mb=float(getattr(mem, "used", 0) or 0) / _MB,
                    mem_total_mb=float(getattr(mem, "total", 0) or 0) / _MB,
                    fan_speed_pct=float(self._call(nvml.nvmlDeviceGetFanSpeed, h) or 0),
                    power_draw_w=float(self._call(nvml.nvmlDeviceGetPowerUsage, h) or 0) / 1000,
                )
            )
        return out

    def info(self) -> list[GpuInfo]:
        nvml = self._nvml
        driver = self._call(getattr(nvml, "nvmlSystemGetDriverVersion", None), default=None)
        out = []
        for index, h in enumerate(self._handles):
            mem = self._call(nvml.nvmlDeviceGetMemoryInfo, h)
            limit_mw = self._call(getattr(nvml, "nvmlDeviceGetPowerManagementLimit", None), h)
            out.append(
                GpuInfo(
                    index=index,
                    name=_text(self._call(nvml.nvmlDeviceGetName, h, default="")),
                    uuid=_text(self._call(nvml.nvmlDeviceGetUUID, h, default="")),
                    memory_total_bytes=int(getattr(mem, "total", 0) or 0),
                    power_limit_watts=None if not limit_mw else float(limit_mw) / 1000,
                    driver_version=_text(driver) if driver else None,
                )
            )
        return out

    def memory(self) -> list[DeviceMemory]:
        """Each GPU's total and free memory (placement's `GpuMemorySampled`); a GPU that cannot
        report its memory reads 0 total and 0 free (nothing fits on it)."""
        nvml = self._nvml
        out = []
        for index, h in enumerate(self._handles):
            mem = self._call(nvml.nvmlDeviceGetMemoryInfo, h)
            out.append(
                DeviceMemory(
                    index=index,
                    uuid=_text(self._call(nvml.nvmlDeviceGetUUID, h, default="")),
                    name=_text(self._call(nvml.nvmlDeviceGetName, h, default="")),
                    total_mb=int(getattr(mem, "total", 0) or 0) // _MB,
                    free_mb=int(getattr(mem, "free", 0) or 0) // _MB,
                )
            )
        return out

    def process_memory_mb(self) -> list[dict[int, int]]:
        """Per GPU (by index), the MiB each compute process uses there, by pid.

        A process whose use the driver does not report (`usedGpuMemory` None: some containers,
        Windows WDDM) is left out; a GPU that cannot list its processes gives an empty dict.
        """
        nvml = self._nvml
        list_processes = getattr(nvml, "nvmlDeviceGetComputeRunningProcesses", None)
        out: list[dict[int, int]] = []
        for h in self._handles:
            used: dict[int, int] = {}
            for proc in self._call(list_processes, h, default=None) or ():
                pid, size = getattr(proc, "pid", None), getattr(proc, "usedGpuMemory", None)
                if isinstance(pid, int) and isinstance(size, int) and size >= 0:
                    used[pid] = used.get(pid, 0) + -(-size // _MB)
            out.append(used)
        return out

    def close(self) -> None:
        self._shutdown(self._nvml)

    @staticmethod
    def _shutdown(nvml: Any) -> None:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", exc)

    @staticmethod
    def _call(fn: Callable[..., Any] | None, *args: Any, default: Any = None) -> Any:
        if fn is None:
            return default
        try:
            return fn(*args)
        except Exception:  # one figure this GPU does not report
            return default


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
