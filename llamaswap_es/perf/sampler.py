"""The performance sampler: host and GPU figures every `performance.every`, one hour kept.

One background task (owned by whoever calls `start`, cancelled by `stop`) samples on a thread so a
slow psutil, NVML or command call never stalls the event loop. Each ring buffer holds an hour of
samples, as llama-swap's do (spec/api.md §17). `performance.disabled` means no task, no samples,
and the HTTP layer answers 503 `{"enabled":false}`. The settings follow a reload (`reconfigure`):
disabling stops the task, closes the GPU source and forgets the samples; enabling starts it again
(opening the GPU source anew, on the task's thread); a new interval restarts the task at once, so
the next sample is not held back by the old period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from llamaswap_es.perf.gpu_sources import GpuSource
from llamaswap_es.perf.samples import GpuStat, SysStat
from llamaswap_es.perf.system import sample_system

log = logging.getLogger("llamaswap_es.perf.sampler")

MIN_EVERY_S = 5.0
HISTORY_S = 3600.0


GpuOpener = Callable[[], GpuSource | None]


class PerformanceSampler:
    def __init__(
        self,
        *,
        every_s: float = 5.0,
        disabled: bool = False,
        gpus: GpuSource | None = None,
        open_gpus: GpuOpener | None = None,
        ps: ModuleType = psutil,
        clock: Callable[[], float] = time.time,
        min_every_s: float = MIN_EVERY_S,
    ) -> None:
        """`gpus` is a source already open; `open_gpus` opens one when sampling (re)starts
        without one (after a reload enabled monitoring): the sampler then owns and closes it."""
        self._min_every_s = min_every_s
        self.every_s = max(float(every_s), min_every_s)
        self.disabled = disabled
        self.gpus = gpus
        self._open_gpus = open_gpus
        self._ps = ps
        self._clock = clock
        self._sys: deque[SysStat] = deque(maxlen=self._history_size())
        self._gpu: deque[list[GpuStat]] = deque(maxlen=self._history_size())
        self._task: asyncio.Task[None] | None = None

    def _history_size(self) -> int:
        return max(1, int(HISTORY_S // self.every_s))

    @classmethod
    def from_config(
        cls, performance: Any, gpus: GpuSource | None, open_gpus: GpuOpener | None = None
    ) -> PerformanceSampler:
        """From the config's `performance` block (`every` is in nanoseconds, Go's duration)."""
        return cls(
            every_s=performance.every / 1e9,
            disabled=performance.disabled,
            gpus=gpus,
            open_gpus=open_gpus,
        )

    @property
    def enabled(self) -> bool:
        return not self.disabled

    def sample_once(self) -> None:
        """Take one sample now and keep it (blocking; for tests and one-off use)."""
        self._keep(*self._take())

    def _take(self) -> tuple[SysStat, list[GpuStat] | None]:
        """Measure (blocking: psutil and NVML calls); touches no shared state."""
        now = self._clock()
        return sample_system(self._ps, now), self.gpus.sample(now) if self.gpus else None

    def _keep(self, system: SysStat, gpus: list[GpuStat] | None) -> None:
        self._sys.append(system)
        if gpus is not None:
            self._gpu.append(gpus)

    def start(self) -> None:
        if self.disabled or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="performance sampler")

    async def _run(self) -> None:
        if self.gpus is None and self._open_gpus is not None:
            try:
                self.gpus = await asyncio.to_thread(self._open_gpus)
            except Exception:
                log.exception("opening the GPU source failed; sampling the host only")
        while True:
            try:
                # Measure on a thread, keep on the loop: the API reads the buffers on the loop.
                self._keep(*await asyncio.to_thread(self._take))
            except Exception:
                log.exception("performance sampling failed; trying again next period")
            await asyncio.sleep(self.every_s)

    async def reconfigure(self, *, every_s: float, disabled: bool) -> None:
        """Apply a reloaded `performance` block: stop, start or re-time the sampling."""
        every_s = max(float(every_s), self._min_every_s)
        retimed = every_s != self.every_s
        if retimed:
            self.every_s = every_s
            self._sys = deque(self._sys, maxlen=self._history_size())  # newest samples kept
            self._gpu = deque(self._gpu, maxlen=self._history_size())
        if disabled:
            if not self.disabled:
                self.disabled = True
                await self._cancel_task()
                self._close_gpus()
                self._sys.clear()
                self._gpu.clear()
                log.info("performance monitoring stopped (performance.disabled)")
            return
        if self.disabled:
            self.disabled = False
            self.start()
            log.info("performance monitoring started, every %g s", self.every_s)
        elif retimed and self._task is not None:
            await self._cancel_task()
            self.start()
            log.info("performance monitoring now samples every %g s", self.every_s)

    async def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _close_gpus(self) -> None:
        """Close the source if this sampler can open another one (else it is kept)."""
        if self.gpus is not None and self._open_gpus is not None:
            self.gpus.close()
            self.gpus = None

    async def stop(self) -> None:
        await self._cancel_task()
        if self.gpus is not None:
            self.gpus.close()

    def sys_stats(self, after: float | None = None) -> list[SysStat]:
        return [s for s in self._sys if after is None or s.timestamp > after]

    def gpu_stats(self, after: float | None = None) -> list[GpuStat]:
        return [g for batch in self._gpu for g in batch if after is None or g.timestamp > after]

    def latest_sys(self) -> SysStat | None:
        return self._sys[-1] if self._sys else None

    def latest_gpus(self) -> list[GpuStat]:
        return sorted(self._gpu[-1], key=lambda g: g.id) if self._gpu else []
