"""AMD GPUs read straight from the kernel's DRM sysfs, with no daemon and no vendor tool.

For each `/sys/class/drm/card<N>` (connector entries such as `card0-DP-1` are not cards) whose
driver is `amdgpu`: `device/mem_info_vram_total` and `mem_info_vram_used` (bytes),
`device/gpu_busy_percent`, and from the card's hwmon directory the temperatures
(`temp<i>_input` in m°C, named by `temp<i>_label`: `edge`, `junction`, `mem`), the power
(`power1_average`, else `power1_input`, in µW) and the fan (`fan1_input` against `fan1_max`, else
the `pwm1` duty 0-255). Every file is world-readable. A card that reports no VRAM (a display-only
adapter) is left out. The root is a parameter so tests read a tree built in a temp directory.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from llamaswap_es.perf.samples import GpuInfo, GpuStat, info_from_stats

log = logging.getLogger("llamaswap_es.perf.drm_sysfs")

SYSFS_ROOT = "/sys"
_CARD = re.compile(r"^card(\d+)$")
_MB = 1024 * 1024


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _number(path: Path) -> float | None:
    text = _read(path).split(" ", 1)[0]
    try:
        return float(text)
    except ValueError:
        return None


def _uevent(device: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in _read(device / "uevent").splitlines())
    return {key: value for key, sep, value in pairs if sep}


def _driver(device: Path) -> str:
    link = device / "driver"
    if link.exists():
        return Path(os.path.realpath(link)).name
    return _uevent(device).get("DRIVER", "")


def _hwmon(device: Path) -> Path | None:
    found = sorted((device / "hwmon").glob("hwmon*"))
    return found[0] if found else None


class SysfsGpus:
    """amdgpu cards under `root` (normally /sys)."""

    name = "sysfs"

    def __init__(self, cards: list[tuple[int, Path]]) -> None:
        self._cards = cards

    @classmethod
    def discover(cls, root: str = SYSFS_ROOT) -> list[tuple[int, Path]]:
        """(card number, its device directory) of every amdgpu card, by number."""
        cards = []
        for entry in (Path(root) / "class" / "drm").glob("card*"):
            match = _CARD.match(entry.name)
            device = entry / "device"
            if match and _driver(device) == "amdgpu":
                cards.append((int(match.group(1)), device))
        return sorted(cards)

    @classmethod
    def open(cls, root: str = SYSFS_ROOT) -> SysfsGpus | None:
        """None when no amdgpu card reports VRAM."""
        source = cls(cls.discover(root))
        if not source.sample():
            return None
        return source

    def sample(self, now: float | None = None) -> list[GpuStat]:
        ts = time.time() if now is None else now
        stats = [self._card(number, device, ts) for number, device in self._cards]
        return [stat for stat in stats if stat.mem_total_mb > 0]

    def _card(self, number: int, device: Path, now: float) -> GpuStat:
        total = (_number(device / "mem_info_vram_total") or 0) / _MB
        used = (_number(device / "mem_info_vram_used") or 0) / _MB
        temp = vram_temp = power = fan = 0.0
        hwmon = _hwmon(device)
        if hwmon is not None:
            temp, vram_temp = self._temperatures(hwmon)
            microwatts = _number(hwmon / "power1_average") or _number(hwmon / "power1_input")
            power = (microwatts or 0) / 1e6
            rpm, rpm_max = _number(hwmon / "fan1_input"), _number(hwmon / "fan1_max")
            if rpm and rpm_max:
                fan = rpm / rpm_max * 100
            elif (pwm := _number(hwmon / "pwm1")) is not None:
                fan = pwm / 255 * 100
        uevent = _uevent(device)
        name = _read(device / "product_name") or f"AMD {uevent.get('PCI_ID', f'card{number}')}"
        return GpuStat(
            timestamp=now,
            id=number,
            name=name,
            uuid=_read(device / "unique_id") or uevent.get("PCI_SLOT_NAME", ""),
            temp_c=temp,
            vram_temp_c=vram_temp,
            gpu_util_pct=_number(device / "gpu_busy_percent") or 0.0,
            mem_util_pct=used / total * 100 if total > 0 else 0.0,
            mem_used_mb=used,
            mem_total_mb=total,
            fan_speed_pct=fan,
            power_draw_w=power,
        )

    @staticmethod
    def _temperatures(hwmon: Path) -> tuple[float, float]:
        """(core, memory) in °C: `edge` (else `junction`, else the first sensor) and `mem`."""
        by_label: dict[str, float] = {}
        first = 0.0
        for path in sorted(hwmon.glob("temp*_input")):
            value = _number(path)
            if value is None or value <= 0:
                continue
            celsius = value / 1000
            label = _read(path.with_name(path.name.replace("_input", "_label"))).lower()
            by_label.setdefault(label, celsius)
            first = first or celsius
        core = by_label.get("edge") or by_label.get("junction") or first
        return core, by_label.get("mem", 0.0)

    def info(self) -> list[GpuInfo]:
        return info_from_stats(self.sample(), "amd")

    def close(self) -> None:
        """Nothing is kept open between samples."""
