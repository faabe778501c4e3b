"""GPUs through the LACT daemon's unix socket (AMD, NVIDIA and Intel cards alike).

LACT (`lactd`) answers newline-separated JSON on a unix socket: `{"command": "list_devices"}`
gives `[{"id", "name"}]`, `{"command": "device_stats", "args": {"id": …}}` a device's stats
(`vram.total`/`vram.used` in bytes, `busy_percent`, `fan.pwm_current` 0-255, `power.average` /
`power.current` in watts, `temps.<sensor>.current` in °C); every answer is
`{"status": "ok"|"error", "data": …}`. The socket is `$LACT_DAEMON_SOCKET_PATH`, else
`/run/lactd.sock`, else `/run/user/<uid>/lactd.sock`, as llama-swap looks for it. Each sample
opens a fresh connection (the daemon may have restarted) with short timeouts. A device that
reports no VRAM (an integrated display adapter) is left out, as llama-swap leaves it out.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamaswap_es.perf.samples import GpuInfo, GpuStat

log = logging.getLogger("llamaswap_es.perf.lact")

CONNECT_TIMEOUT_S = 2.0
EXCHANGE_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024
_MB = 1024 * 1024
_VENDORS = {"1002": "amd", "10DE": "nvidia", "8086": "intel"}


class LactError(Exception):
    """The daemon answered with an error, or not in its protocol."""


def lact_socket_path(environ: Mapping[str, str] = os.environ, uid: int | None = None) -> str | None:
    """Where the daemon listens, or None when no socket is there."""
    candidates = [environ.get("LACT_DAEMON_SOCKET_PATH", ""), "/run/lactd.sock"]
    candidates.append(f"/run/user/{os.getuid() if uid is None else uid}/lactd.sock")
    for path in candidates:
        if path and Path(path).exists():
            return path
    return None


class _Connection:
    """One connection: request, read one line, check the status."""

    def __init__(self, path: str) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(CONNECT_TIMEOUT_S)
        self._sock.connect(path)
        self._sock.settimeout(EXCHANGE_TIMEOUT_S)
        self._buffer = b""

    def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"command": command}
        if args is not None:
            message["args"] = args
        self._sock.sendall(json.dumps(message).encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise LactError(f"the daemon closed the connection during {command}")
            self._buffer += chunk
            if len(self._buffer) > MAX_ANSWER_BYTES:
                raise LactError(f"the answer to {command} is larger than {MAX_ANSWER_BYTES} bytes")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise LactError(f"{command}: not JSON: {exc}") from None
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            data = answer.get("data") if isinstance(answer, dict) else answer
            raise LactError(f"{command}: {data}")
        return answer.get("data")

    def close(self) -> None:
        self._sock.close()


def _current(temps: Any, *names: str) -> float:
    """The first of these sensors that reports a current temperature above 0."""
    if not isinstance(temps, dict):
        return 0.0
    for name in names:
        entry = temps.get(name)
        value = entry.get("current") if isinstance(entry, dict) else None
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return 0.0


def stat_from_device_stats(
    data: dict[str, Any], *, index: int, device_id: str, name: str, now: float
) -> GpuStat:
    """One GpuStat from a `device_stats` answer (missing figures read as 0)."""
    vram = data.get("vram") or {}
    total = float(vram.get("total") or 0) / _MB
    used = float(vram.get("used") or 0) / _MB
    power = data.get("power") or {}
    draw = power.get("average") or 0
    if not draw or draw <= 0:
        draw = power.get("current") or 0
    pwm = (data.get("fan") or {}).get("pwm_current")
    temps = data.get("temps") or {}
    temp = _current(temps, "edge", "junction")
    if not temp and isinstance(temps, dict):  # another sensor, whatever its name
        temp = _current(temps, *sorted(temps))
    return GpuStat(
        timestamp=now,
        id=index,
        name=name,
        uuid=device_id,
        temp_c=temp,
        vram_temp_c=_current(temps, "mem", "VRAM"),  # amdgpu says mem, nvidia VRAM
        gpu_util_pct=float(data.get("busy_percent") or 0),
        mem_util_pct=used / total * 100 if total > 0 else 0.0,
        mem_used_mb=used,
        mem_total_mb=total,
        fan_speed_pct=float(pwm) / 255 * 100 if isinstance(pwm, int | float) else 0.0,
        power_draw_w=float(draw),
    )


def vendor_of(device_id: str) -> str:
    """LACT ids start with the PCI vendor id (`1002:687F-…`)."""
    return _VENDORS.get(device_id.split(":", 1)[0].upper(), "other")


class LactGpus:
    """Samples through the LACT daemon at `path`."""

    name = "LACT"

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def open(cls, path: str | None) -> LactGpus | None:
        """None when there is no socket, it does not answer, or no device has VRAM."""
        if path is None:
            return None
        source = cls(path)
        if not source.sample():
            return None
        return source

    def sample(self, now: float | None = None) -> list[GpuStat]:
        ts = time.time() if now is None else now
        try:
            connection = _Connection(self.path)
        except OSError as exc:
            log.debug("cannot connect to LACT at %s: %s", self.path, exc)
            return []
        try:
            devices = connection.request("list_devices")
            stats = []
            for index, device in enumerate(devices if isinstance(devices, list) else []):
                device_id, name = str(device.get("id", "")), str(device.get("name", ""))
                try:
                    data = connection.request("device_stats", {"id": device_id})
                except LactError as exc:  # this device only: the others still count
                    log.debug("LACT device_stats %s: %s", device_id, exc)
                    continue
                if not isinstance(data, dict):
                    continue
                stat = stat_from_device_stats(
                    data, index=index, device_id=device_id, name=name, now=ts
                )
                if stat.mem_total_mb > 0:
                    stats.append(stat)
            return stats
        except (OSError, LactError) as exc:
            log.debug("LACT at %s: %s", self.path, exc)
            return []
        finally:
            connection.close()

    def info(self) -> list[GpuInfo]:
        return [
            GpuInfo(
                index=stat.id,
                name=stat.name,
                uuid=stat.uuid,
                memory_total_bytes=int(stat.mem_total_mb * _MB),
                power_limit_watts=None,
                driver_version=None,
                vendor=vendor_of(stat.uuid),
            )
            for stat in self.sample()
        ]

    def close(self) -> None:
        """Nothing is kept open between samples."""
