"""AMD GPUs through the `rocm-smi` command.

The arguments are llama-swap's (`-i -P -t -f -u --showmemuse --showmeminfo vram
--showproductname --csv`). rocm-smi's CSV columns differ between versions (5.x names the card
`Card series`, 7.x `Card Series` beside a `GFX Version`), so the columns are read by the header
line's names, never by position; a line whose field count does not match the header is skipped.
Memory figures are bytes; `card<N>` gives the id.
"""

from __future__ import annotations

import csv
import logging

from llamaswap_es.perf.command_source import CommandGpuSource
from llamaswap_es.perf.samples import GpuStat

log = logging.getLogger("llamaswap_es.perf.rocm_smi")

ARGS = (
    "-i", "-P", "-t", "-f", "-u", "--showmemuse", "--showmeminfo", "vram", "--showproductname",
    "--csv",
)  # fmt: skip
_MB = 1024 * 1024
_NOT_A_NAME = ("", "N/A")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _stat(row: dict[str, str], now: float) -> GpuStat | None:
    device = row.get("device", "")
    if not device.startswith("card") or not device[4:].isdigit():
        return None
    total = _number(row.get("VRAM Total Memory (B)", "")) / _MB
    used = _number(row.get("VRAM Total Used Memory (B)", "")) / _MB
    power = row.get("Average Graphics Package Power (W)") or row.get(
        "Current Socket Graphics Package Power (W)", ""
    )
    series = row.get("Card Series") or row.get("Card series") or ""
    name = series if series not in _NOT_A_NAME else row.get("Device Name", "")
    if name in _NOT_A_NAME:
        name = device
    elif row.get("GFX Version", "") not in _NOT_A_NAME:
        name = f"{name} ({row['GFX Version']})"
    return GpuStat(
        timestamp=now,
        id=int(device[4:]),
        name=name,
        uuid=row.get("GUID", "") if row.get("GUID", "") not in _NOT_A_NAME else "",
        temp_c=_number(row.get("Temperature (Sensor edge) (C)", "")),
        vram_temp_c=_number(row.get("Temperature (Sensor memory) (C)", "")),
        gpu_util_pct=_number(row.get("GPU use (%)", "")),
        mem_util_pct=used / total * 100 if total > 0 else 0.0,
        mem_used_mb=used,
        mem_total_mb=total,
        fan_speed_pct=_number(row.get("Fan speed (%)", "")),
        power_draw_w=_number(power),
    )


def parse_csv(text: str, now: float) -> list[GpuStat]:
    """rocm-smi's `--csv` output: a `device,…` header, then one line per card."""
    header: list[str] | None = None
    stats = []
    for fields in csv.reader(line for line in text.splitlines() if line.strip()):
        fields = [field.strip() for field in fields]
        if fields and fields[0] == "device":
            header = fields
            continue
        if header is None or len(fields) != len(header):
            continue
        stat = _stat(dict(zip(header, fields, strict=True)), now)
        if stat is not None:
            stats.append(stat)
    return stats


class RocmSmiGpus(CommandGpuSource):
    """Samples by running `rocm-smi` once per sample."""

    name = "rocm-smi"
    vendor = "amd"
    args = ARGS
    parse = staticmethod(parse_csv)
