"""Which GPU source the sampler reads: the first one that finds a GPU, in llama-swap's order.

NVML first (in-process, the richest figures: ours), then llama-swap's order: the LACT daemon's
socket, `nvidia-smi`, `rocm-smi`, and the kernel's DRM sysfs (amdgpu). Each is optional: a
source that is absent (no library, no socket, no command on PATH, no card) or that finds no GPU
with memory is skipped quietly (debug), and the one chosen is named at info level. Opening may
run a command or wait on a socket for a few seconds: call it on a thread.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import Any, Protocol

from llamaswap_es.perf.drm_sysfs import SYSFS_ROOT, SysfsGpus
from llamaswap_es.perf.lact import LactGpus, lact_socket_path
from llamaswap_es.perf.nvidia_smi import NvidiaSmiGpus
from llamaswap_es.perf.nvml import NvmlGpus
from llamaswap_es.perf.rocm_smi import RocmSmiGpus
from llamaswap_es.perf.samples import GpuInfo, GpuStat

log = logging.getLogger("llamaswap_es.perf.gpu_sources")


class GpuSource(Protocol):
    """What the sampler and the hardware snapshot read; `name` says which source it is."""

    name: str

    def sample(self, now: float | None = None) -> list[GpuStat]: ...

    def info(self) -> list[GpuInfo]: ...

    def close(self) -> None: ...


def open_gpu_source(
    nvml: Any | None,
    *,
    path: str | None = None,
    lact_socket: str | None = None,
    sysfs_root: str = SYSFS_ROOT,
) -> GpuSource | None:
    """The first source that finds a GPU, or None. `nvml` is the pynvml module (or a fake,
    or None); `path` is the PATH searched for the commands (the process's when None);
    `lact_socket` replaces the socket search."""
    attempts: list[tuple[str, Callable[[], GpuSource | None]]] = [
        ("NVML", lambda: NvmlGpus.open(nvml)),
        ("LACT", lambda: LactGpus.open(lact_socket or lact_socket_path())),
        ("nvidia-smi", lambda: NvidiaSmiGpus.open(shutil.which("nvidia-smi", path=path))),
        ("rocm-smi", lambda: RocmSmiGpus.open(shutil.which("rocm-smi", path=path))),
        ("sysfs", lambda: SysfsGpus.open(sysfs_root)),
    ]
    for name, attempt in attempts:
        try:
            source = attempt()
        except Exception as exc:  # a source that breaks must not hide the next one
            log.debug("GPU source %s failed: %s", name, exc)
            continue
        if source is not None:
            log.info("using %s for GPU monitoring", name)
            return source
        log.debug("GPU source %s: no GPU found", name)
    return None
