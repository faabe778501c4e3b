"""The performance samples llama-swap's `/api/performance` returns (spec/api.md §17).

Field names are llama-swap's, so its UI and scripts read ours unchanged. Timestamps are wall-clock
seconds internally and RFC3339 (UTC) in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def rfc3339(ts: float) -> str:
    """UTC RFC3339 with nanosecond-free microseconds trimmed, e.g. `2026-01-02T03:04:05.25Z`."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
    head, _, frac = text.removesuffix("+00:00").partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


@dataclass(frozen=True, slots=True)
class NetIO:
    name: str
    bytes_recv: int
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class SysStat:
    timestamp: float
    cpu_util_per_core: tuple[float, ...]
    mem_total_mb: int
    mem_used_mb: int
    mem_free_mb: int
    swap_total_mb: int
    swap_used_mb: int
    load_avg_1: float
    load_avg_5: float
    load_avg_15: float
    net_io: tuple[NetIO, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": rfc3339(self.timestamp),
            "cpu_util_per_core": list(self.cpu_util_per_core),
            "mem_total_mb": self.mem_total_mb,
            "mem_used_mb": self.mem_used_mb,
            "mem_free_mb": self.mem_free_mb,
            "swap_total_mb": self.swap_total_mb,
            "swap_used_mb": self.swap_used_mb,
            "load_avg_1": self.load_avg_1,
            "load_avg_5": self.load_avg_5,
            "load_avg_15": self.load_avg_15,
            "net_io": [
                {"name": n.name, "bytes_recv": n.bytes_recv, "bytes_sent": n.bytes_sent}
                for n in self.net_io
            ],
        }


@dataclass(frozen=True, slots=True)
class GpuStat:
    timestamp: float
    id: int
    name: str
    uuid: str
    temp_c: float
    vram_temp_c: float
    gpu_util_pct: float
    mem_util_pct: float
    mem_used_mb: float
    mem_total_mb: float
    fan_speed_pct: float
    power_draw_w: float

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": rfc3339(self.timestamp),
            "id": self.id,
            "name": self.name,
            "uuid": self.uuid,
            "temp_c": self.temp_c,
            "vram_temp_c": self.vram_temp_c,
            "gpu_util_pct": self.gpu_util_pct,
            "mem_util_pct": self.mem_util_pct,
            "mem_used_mb": self.mem_used_mb,
            "mem_total_mb": self.mem_total_mb,
            "fan_speed_pct": self.fan_speed_pct,
            "power_draw_w": self.power_draw_w,
        }


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """What does not change while the server runs: for `/api/hardware`."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    power_limit_watts: float | None
    driver_version: str | None
    vendor: str = "nvidia"
    """`nvidia`, `amd`, `intel` or `other` (the accelerator's vendor in the hardware snapshot)."""


_MB = 1024 * 1024


def info_from_stats(stats: list[GpuStat], vendor: str) -> list[GpuInfo]:
    """The hardware facts a source without an info call can give: from one sample."""
    return [
        GpuInfo(
            index=stat.id,
            name=stat.name,
            uuid=stat.uuid,
            memory_total_bytes=int(stat.mem_total_mb * _MB),
            power_limit_watts=None,
            driver_version=None,
            vendor=vendor,
        )
        for stat in stats
    ]
