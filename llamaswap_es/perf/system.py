"""Host CPU, memory, swap, load and network figures from psutil, as one `SysStat`.

`cpu_percent(percpu=True)` without an interval measures since the previous call, so the sampler's
own period is the averaging window and sampling never sleeps. The loopback interface is left out of
the network figures, as llama-swap leaves it out.
"""

from __future__ import annotations

import os
import time
from types import ModuleType

import psutil

from llamaswap_es.perf.samples import NetIO, SysStat

_MB = 1024 * 1024


def sample_system(ps: ModuleType = psutil, now: float | None = None) -> SysStat:
    mem = ps.virtual_memory()
    swap = ps.swap_memory()
    try:
        load = os.getloadavg()
    except OSError:  # not available on this platform
        load = (0.0, 0.0, 0.0)
    counters = ps.net_io_counters(pernic=True) or {}
    net = tuple(
        NetIO(name, int(c.bytes_recv), int(c.bytes_sent))
        for name, c in sorted(counters.items())
        if name != "lo"
    )
    return SysStat(
        timestamp=time.time() if now is None else now,
        cpu_util_per_core=tuple(float(p) for p in ps.cpu_percent(percpu=True)),
        mem_total_mb=int(mem.total // _MB),
        mem_used_mb=int(mem.used // _MB),
        mem_free_mb=int(mem.available // _MB),
        swap_total_mb=int(swap.total // _MB),
        swap_used_mb=int(swap.used // _MB),
        load_avg_1=float(load[0]),
        load_avg_5=float(load[1]),
        load_avg_15=float(load[2]),
        net_io=net,
    )
