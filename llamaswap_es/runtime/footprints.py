"""GPU memory facts into the log: device samples, estimated and measured footprints (issue 18).

The reducer places models by memory but reads no GPU and no file (it stays pure): this feed
observes the world and submits what it finds as inputs through the run loop, so `replay verify`
and what-if reproduce every placement from the log alone.

- `GpuMemorySampled` at start-up, and then only when a device's free memory moved by more than
  `placement.sampleStepMb` since the last one recorded (or the devices changed), checked every
  `every_s` on a thread (NVML calls block).
- `FootprintKnown(source="estimated")` for each model whose `cmd` loads a `.gguf` file, after
  each `ConfigApplied` (read in a subprocess, `runtime/gguf_estimator.py`); a model with a
  declared footprint is not estimated, and an estimate equal to the last one is not repeated.
- `FootprintKnown(source="measured")` once a model is ready (`ProcessReady`, or adopted ready
  from the previous run): the GPU memory NVML reports per process, summed over the pids of the
  model's process group.

All of it only while `placement.mode` is `memory`: the logs of users without placement do not
grow. Nothing here raises into the run loop: a failure is logged with the model or file named.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llamaswap_es.config import LlamaSwapConfig
from llamaswap_es.config.schedule import PLACEMENT_MEMORY
from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.types import (
    ConfigApplied,
    Envelope,
    Event,
    FootprintKnown,
    GpuMemorySampled,
    ProcessAdopted,
    ProcessReady,
    ProcessSpawned,
)
from llamaswap_es.perf.footprint_estimate import EstimateError
from llamaswap_es.perf.nvml import DeviceMemory
from llamaswap_es.runtime.gguf_command import gguf_command
from llamaswap_es.runtime.gguf_estimator import GgufEstimator
from llamaswap_es.runtime.process_spec import ProcessSpec

log = logging.getLogger("llamaswap_es.runtime.footprints")

SAMPLE_EVERY_S = 2.0
STARTUP_ESTIMATES_WAIT_S = 10
"""How long a start waits for the GGUF estimates before the first placements (then they follow)."""
"""How often free memory is checked while placement is on (only a move past the step is
recorded, so a quiet GPU writes nothing)."""


class GpuMemorySource(Protocol):
    """What the feed reads from the GPUs (`perf.nvml.NvmlGpus`, or a test's fake driver)."""

    def memory(self) -> list[DeviceMemory]: ...

    def process_memory_mb(self) -> list[dict[int, int]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PlacementKnobs:
    """The placement settings the feed follows (from `llamaswap-es: placement`)."""

    enabled: bool
    sample_step_mb: int


def placement_knobs(config: LlamaSwapConfig) -> PlacementKnobs:
    placement = config.llamaswap_es.placement
    return PlacementKnobs(
        enabled=placement.mode == PLACEMENT_MEMORY, sample_step_mb=placement.sample_step_mb
    )


class FootprintFeed:
    """Observes GPUs and model files; submits `GpuMemorySampled` and `FootprintKnown`."""

    def __init__(
        self,
        *,
        submit: Callable[[Event], None],
        config: Callable[[], LlamaSwapConfig],
        spec_for: Callable[[str], ProcessSpec | None],
        open_gpus: Callable[[], GpuMemorySource | None],
        estimator: GgufEstimator | None = None,
        every_s: float = SAMPLE_EVERY_S,
    ) -> None:
        self._submit = submit
        self._config = config
        self._spec_for = spec_for
        self._open_gpus = open_gpus
        self._estimator = estimator or GgufEstimator()
        self._every_s = every_s
        self._gpus: GpuMemorySource | None = None
        self._gpus_opened = False
        self._recorded: GpuMemorySampled | None = None
        self._estimated: dict[str, tuple[int, int, str]] = {}
        self._groups: dict[str, tuple[int, int]] = {}
        """model -> (instance, process group id) of its newest ProcessSpawned (one entry per
        model, so a model that keeps failing to start does not grow it)."""
        self._sampling: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._estimating: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def knobs(self) -> PlacementKnobs:
        return placement_knobs(self._config())

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """At start-up, with placement on: the first device sample and the estimates, before the
        first `ConfigApplied` and the preloads, so the first placements already know them.
        The periodic sampling begins at that `ConfigApplied` (which also starts or stops it)."""
        if self.knobs.enabled and not self._stopped:
            try:
                await self.sample_once()
            except Exception:  # the periodic sampling tries again
                log.exception("sampling GPU memory at start-up failed")
            estimating = self._estimate_latest()
            done, _ = await asyncio.wait({estimating}, timeout=STARTUP_ESTIMATES_WAIT_S)
            if not done:  # a slow disk or mount: serve now, the estimates follow as inputs
                log.warning(
                    "placement by memory: the GGUF estimates took longer than %d s at start-up;"
                    " serving now, they are recorded when they are done",
                    STARTUP_ESTIMATES_WAIT_S,
                )

    async def stop(self) -> None:
        self._stopped = True
        tasks = [*self._tasks, *([self._sampling] if self._sampling else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._gpus is not None:
            await asyncio.to_thread(self._gpus.close)

    async def settled(self) -> None:
        """Return once the estimates and measurements under way have finished (tests, and
        anyone who must know the facts of a config just applied are in)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        """The run loop's listener: schedules work, never blocks, never raises."""
        for envelope in envelopes:
            body = envelope.body
            if isinstance(body, ProcessSpawned):
                self._groups[body.model] = (body.instance, body.pgid)
            elif isinstance(body, ProcessReady | ProcessAdopted):
                if isinstance(body, ProcessAdopted):  # ready since the previous run
                    pgid: int | None = body.pgid
                else:
                    spawned = self._groups.get(body.model)
                    pgid = None  # unknown, or a stale ready of an older instance
                    if spawned is not None and spawned[0] == body.instance:
                        pgid = self._groups.pop(body.model)[1]
                if pgid is not None and self.knobs.enabled:
                    self._spawn(self._measure(body.model, body.instance, pgid), body.model)
            elif isinstance(body, ConfigApplied):
                self._follow_config()

    def _follow_config(self) -> None:
        if not self.knobs.enabled:
            if self._sampling is not None:
                self._sampling.cancel()
                self._sampling = None
            return
        self._start_sampling()
        self._estimate_latest()

    def _estimate_latest(self) -> asyncio.Task[None]:
        """Estimate every model of the config now in force; a run for an older config still
        under way is cancelled first, so its facts (from a config no longer loaded) never land
        after the newer ones and no estimate is submitted twice."""
        if self._estimating is not None:
            self._estimating.cancel()
        task = asyncio.create_task(self._estimate_all(), name="footprints: estimates")
        if self._stopped:
            task.cancel()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._estimating = task
        return task

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        if self._stopped:
            work.close()
            return
        task = asyncio.create_task(work, name=f"footprints: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ device samples

    def _start_sampling(self) -> None:
        if self._sampling is None and not self._stopped:
            self._sampling = asyncio.create_task(self._sample_forever(), name="footprints: GPUs")

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a driver hiccup: the next round tries again
                log.exception("sampling GPU memory failed")
            await asyncio.sleep(self._every_s)

    async def gpus(self) -> GpuMemorySource | None:
        """The GPU source, opened once (on a thread) the first time it is needed."""
        if not self._gpus_opened:
            self._gpus_opened = True
            self._gpus = await asyncio.to_thread(self._open_gpus)
            if self._gpus is None:
                log.info("placement by memory: no NVIDIA GPU found through NVML")
        return self._gpus

    async def sample_once(self) -> GpuMemorySampled | None:
        """Read the devices; submit and return a sample when it is the first or moved past
        the step, else None."""
        gpus = await self.gpus()
        if gpus is None:
            return None
        devices = await asyncio.to_thread(gpus.memory)
        sample = GpuMemorySampled(
            uuids=tuple(d.uuid for d in devices),
            names=tuple(d.name for d in devices),
            total_mb=tuple(d.total_mb for d in devices),
            free_mb=tuple(d.free_mb for d in devices),
        )
        if not self._moved(sample, self.knobs.sample_step_mb):
            return None
        self._recorded = sample
        self._submit(sample)
        return sample

    def _moved(self, sample: GpuMemorySampled, step_mb: int) -> bool:
        last = self._recorded
        if last is None or (last.uuids, last.total_mb) != (sample.uuids, sample.total_mb):
            return True
        return any(
            abs(new - old) > step_mb for new, old in zip(sample.free_mb, last.free_mb, strict=True)
        )

    # ------------------------------------------------------------------ estimates

    async def _estimate_all(self) -> None:
        config = self._config()
        for model in sorted(config.models):
            if _declared_mb(config, model) > 0:
                continue  # a declared footprint wins over an estimate: no need to read files
            try:
                spec = self._spec_for(model)
                command = gguf_command(spec) if spec is not None else None
                if command is None:
                    continue
                estimate = await self._estimator.estimate(command)
            except (LlamaSwapError, EstimateError) as exc:
                log.warning("model %r: no estimated footprint: %s", model, exc)
                continue
            except Exception:  # a bug or an OS failure: this model has no estimate, no more
                log.exception("model %r: estimating its footprint failed", model)
                continue
            devices = _declared_devices(config, model)
            if self._estimated.get(model) == (estimate.mb, devices, estimate.detail):
                continue
            self._estimated[model] = (estimate.mb, devices, estimate.detail)
            self._submit(
                FootprintKnown(
                    model=model, source="estimated", mb=estimate.mb, devices=devices,
                    detail=estimate.detail,
                )
            )  # fmt: skip

    # ------------------------------------------------------------------ measurements

    async def _measure(self, model: str, instance: int, pgid: int) -> None:
        try:
            await self._measure_group(model, instance, pgid)
        except Exception:  # the driver failed: the model keeps its declared or estimated one
            log.exception("model %r: measuring its GPU memory failed", model)

    async def _measure_group(self, model: str, instance: int, pgid: int) -> None:
        gpus = await self.gpus()
        if gpus is None:
            return
        per_process = await asyncio.to_thread(gpus.process_memory_mb)
        fact = measured_footprint(model, instance, pgid, per_process, _process_group)
        if fact is None:
            log.info("model %r: NVML reports no GPU memory for its process group %d", model, pgid)
            return
        self._submit(fact)
        await self.sample_once()  # its memory is in use now: the devices moved


def measured_footprint(
    model: str,
    instance: int,
    pgid: int,
    per_process: Sequence[dict[int, int]],
    group_of: Callable[[int], int | None],
) -> FootprintKnown | None:
    """The `FootprintKnown` of a ready model from NVML's per-process memory (per device, by
    pid): the sum over the pids whose process group is `pgid`. `per_device_mb` is the split over
    the devices it uses, in device order. None when none of its pids uses GPU memory."""
    used: list[tuple[int, int, list[int]]] = []
    for device, pids in enumerate(per_process):
        mine = sorted(pid for pid in pids if group_of(pid) == pgid)
        total = sum(pids[pid] for pid in mine)
        if total > 0:
            used.append((device, total, mine))
    if not used:
        return None
    where = "; ".join(
        f"pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))} on GPU{device}"
        for device, _, pids in used
    )
    return FootprintKnown(
        model=model,
        source="measured",
        mb=sum(total for _, total, _ in used),
        devices=len(used),
        per_device_mb=tuple(total for _, total, _ in used),
        detail=f"NVML: {where} after ready (instance {instance})",
        instance=instance,
    )


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone, or another pid namespace's number
        return None


def _declared_mb(config: LlamaSwapConfig, model: str) -> int:
    entry = config.llamaswap_es.models.get(model)
    return entry.footprint_mb if entry is not None else 0


def _declared_devices(config: LlamaSwapConfig, model: str) -> int:
    entry = config.llamaswap_es.models.get(model)
    return entry.devices if entry is not None else 1
