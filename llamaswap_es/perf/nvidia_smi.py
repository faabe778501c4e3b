"""NVIDIA GPUs through the `nvidia-smi` command, for hosts where NVML cannot be loaded.

The query is llama-swap's (`--query-gpu=index,name,uuid,temperature.gpu,utilization.gpu,
memory.used,memory.total,fan.speed,power.draw --format=csv,noheader,nounits`), one line per
GPU, MiB and watts without units. llama-swap keeps one `nvidia-smi --loop` running; we run the
query once per sample instead (the sampler already times the samples, on a thread, and a
one-shot command cannot be left behind). A figure the card does not report (`[N/A]`, `[Not
Supported]`, a passively cooled card's fan) reads as 0, as with NVML. Memory utilisation is
used / total, as llama-swap computes it for this source.
"""

from __future__ import annotations

import logging

from llamaswap_es.perf.command_source import CommandGpuSource
from llamaswap_es.perf.samples import GpuStat

log = logging.getLogger("llamaswap_es.perf.nvidia_smi")

QUERY = (
    "index,name,uuid,temperature.gpu,utilization.gpu,memory.used,memory.total,fan.speed,power.draw"
)
ARGS = (f"--query-gpu={QUERY}", "--format=csv,noheader,nounits")
_FIELDS = len(QUERY.split(","))


def _number(text: str) -> float:
    """A figure of the CSV; `[N/A]` and other non-numbers read as 0."""
    try:
        return float(text)
    except ValueError:
        return 0.0


def parse_query_gpu(text: str, now: float) -> list[GpuStat]:
    """The CSV `nvidia-smi` prints for `ARGS`, one `GpuStat` per well-formed line."""
    stats = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < _FIELDS or not fields[0].isdigit():
            continue
        used, total = _number(fields[5]), _number(fields[6])
        stats.append(
            GpuStat(
                timestamp=now,
                id=int(fields[0]),
                name=fields[1],
                uuid=fields[2],
                temp_c=_number(fields[3]),
                vram_temp_c=0.0,
                gpu_util_pct=_number(fields[4]),
                mem_util_pct=used / total * 100 if total > 0 else 0.0,
                mem_used_mb=used,
                mem_total_mb=total,
                fan_speed_pct=_number(fields[7]),
                power_draw_w=_number(fields[8]),
            )
        )
    return stats


class NvidiaSmiGpus(CommandGpuSource):
    """Samples by running `nvidia-smi` (the path found on PATH) once per sample."""

    name = "nvidia-smi"
    vendor = "nvidia"
    args = ARGS
    parse = staticmethod(parse_query_gpu)
