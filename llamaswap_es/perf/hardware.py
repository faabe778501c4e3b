"""The hardware snapshot of `/api/hardware` (spec/api.md §18), taken once at start-up.

Facts we cannot find are `null`; a value outside llama-swap's vocabularies is `other` with the
raw text beside it, as its schema (version 1) requires. GPUs come from the GPU source the sampler
uses (`GpuSource.info`: NVML, LACT, nvidia-smi, rocm-smi or sysfs).
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

import llamaswap_es
from llamaswap_es.perf.gpu_sources import GpuSource

_ARCHITECTURES = {
    "x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "armv7", "ppc64le": "ppc64le", "riscv64": "riscv64", "s390x": "s390x",
}  # fmt: skip
_OS_FAMILIES = {"linux": "linux", "darwin": "macos", "windows": "windows", "freebsd": "freebsd"}


def detect_hardware(gpus: GpuSource | None, *, now: datetime | None = None) -> dict[str, Any]:
    """The schema-version-1 snapshot; raises OSError only if the host cannot be read at all."""
    captured = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema_version": 1,
        "captured_at": captured,
        "capture": {
            "scope": "inference_host",
            "method": "detected",
            "detector": {"name": "llamaswap-es", "version": llamaswap_es.__version__},
        },
        "architecture": _architecture(),
        "operating_system": _operating_system(),
        "environment": _environment(),
        "cpu": _cpu(),
        "memory": {"capacity_bytes": int(psutil.virtual_memory().total)},
        "accelerators": _accelerators(gpus),
    }


def _architecture() -> dict[str, Any]:
    raw = platform.machine()
    name = _ARCHITECTURES.get(raw.lower(), "other")
    return {"name": name, "raw_name": raw or None}


def _operating_system() -> dict[str, Any]:
    raw = platform.system()
    family = _OS_FAMILIES.get(raw.lower(), "other")
    name = raw
    version: str | None = platform.release()
    if family == "linux":
        release = _os_release()
        name = release.get("NAME", "Linux")
        version = release.get("VERSION_ID", "") or None
    out: dict[str, Any] = {
        "family": family,
        "name": name or None,
        "version": version or None,
        "kernel": platform.release() or None,
    }
    if family == "other":
        out["raw_family"] = raw
    return out


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v.strip().strip('"') for k, v in pairs}


def _environment() -> dict[str, Any]:
    if "microsoft" in platform.release().lower():
        return {"kind": "wsl", "name": None, "version": None}
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return {"kind": "container", "name": None, "version": None}
    try:
        cgroup = Path("/proc/1/cgroup").read_text(encoding="utf-8")
    except OSError:
        cgroup = ""
    if any(word in cgroup for word in ("docker", "kubepods", "containerd", "lxc")):
        return {"kind": "container", "name": None, "version": None}
    return {"kind": "unknown", "name": None, "version": None}


def _cpu() -> dict[str, Any]:
    vendor, model = None, None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id" and vendor is None:
                vendor = value.strip()
            elif key == "model name" and model is None:
                model = value.strip()
    except OSError:
        pass
    return {
        "vendor": vendor,
        "model": model or platform.processor() or None,
        "socket_count": None,
        "physical_core_count": psutil.cpu_count(logical=False),
        "logical_thread_count": psutil.cpu_count(logical=True) or os.cpu_count(),
    }


def _accelerators(gpus: GpuSource | None) -> list[dict[str, Any]]:
    if gpus is None:
        return []
    return [
        {
            "index": info.index,
            "kind": "gpu",
            "vendor": info.vendor,
            "model": info.name or None,
            "architecture": None,
            "memory": {"kind": "dedicated", "capacity_bytes": info.memory_total_bytes or None},
            "driver": (
                {"name": info.vendor, "version": info.driver_version}
                if info.driver_version
                else None
            ),
            "power_limit_watts": info.power_limit_watts,
        }
        for info in gpus.info()
    ]
