"""Everything the projections need at run time, started and stopped together with the server.

`Projections.start(service, …)` opens the projections' connections to the event log's database,
catches the activity table up from its checkpoint, follows the run loop live, starts the
performance sampler and takes the hardware snapshot. The object is also the `deps` that every
`register_routes(router, deps)` in this package takes, so wiring the routes is one line each.
The history (`history`) is one more table projection of the runner where it lives in the event
log's own file (the default), or a sink that follows the loop into a history database elsewhere.
`activityRetentionDays` is applied at start and after each reducer snapshot the service writes
(the moments the event log is pruned too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.core.views import SchedulerView
from llamaswap_es.perf.gpu_sources import GpuSource, open_gpu_source
from llamaswap_es.perf.hardware import detect_hardware
from llamaswap_es.perf.nvml import load_nvml
from llamaswap_es.perf.sampler import PerformanceSampler
from llamaswap_es.projections.activity import ActivityProjection, AppliedRow
from llamaswap_es.projections.activity_retention import prune_activity
from llamaswap_es.projections.captures import CaptureStore, capture_secrets
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.event_hub import EventHub
from llamaswap_es.projections.history.lifecycle import History
from llamaswap_es.projections.history.metrics import HistoryCollector
from llamaswap_es.projections.inflight import InflightTracker
from llamaswap_es.projections.metrics import LogGauges, ModelMetrics, metrics_registry
from llamaswap_es.projections.runner import LogSource, ProjectionRunner

if TYPE_CHECKING:
    from llamaswap_es.runtime.service import SwapService

log = logging.getLogger("llamaswap_es.projections")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(eq=False)
class Projections:
    """The running projections and the handles the HTTP handlers use (their `deps`)."""

    db: ProjectionDatabase
    store: LogSource
    runner: ProjectionRunner
    captures: CaptureStore
    registry: CollectorRegistry
    model_metrics: ModelMetrics
    log_gauges: LogGauges
    sampler: PerformanceSampler
    hardware: dict[str, Any] | None
    inflight: InflightTracker
    history: History
    state: Callable[[], SchedulerView | None]
    config: Callable[[], LlamaSwapConfig]
    clock_ms: Callable[[], int] = wall_ms
    _pruning: set[asyncio.Task[int]] = field(default_factory=set, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    @property
    def db_path(self) -> Path:
        return self.db.path

    @classmethod
    async def start(
        cls,
        service: SwapService,
        *,
        inflight: InflightTracker,
        hub: EventHub | None = None,
        nvml: Any | None = None,
        use_gpus: bool = True,
    ) -> Projections:
        """Start after `service.start()`; `nvml` replaces pynvml (tests hand in a fake);
        `use_gpus=False` reads no GPU source at all."""
        assert service.store is not None and service.loop is not None
        config = service.config
        db = ProjectionDatabase(service.store.path)
        loop = service.loop

        def open_gpus() -> GpuSource | None:
            if not use_gpus:
                return None
            return open_gpu_source(nvml if nvml is not None else load_nvml())

        gpus = None
        if not config.performance.disabled:
            gpus = await asyncio.to_thread(open_gpus)  # may run nvidia-smi: not on the loop
        sampler = PerformanceSampler.from_config(config.performance, gpus, open_gpus)
        try:
            hardware: dict[str, Any] | None = await asyncio.to_thread(detect_hardware, gpus)
        except Exception as exc:  # /api/hardware answers 503 instead
            log.warning("hardware detection failed: %s", exc)
            hardware = None
        registry, model_metrics, log_gauges = metrics_registry(
            state=lambda: loop.view, sampler=sampler, health=service.health.report
        )
        counted_from = model_metrics.seq = await service.store.last_seq()
        history = await History.start(
            config.llamaswap_es, store=service.store, projection_db=db, loop=loop
        )
        runner = ProjectionRunner(
            db,
            service.store,
            activity=ActivityProjection(db.path),
            tables=history.tables,
            memory=[model_metrics],
        )
        history.follow(runner)
        runner.add_row_listener(lambda rows: model_metrics.count_rows(rows, counted_from))
        if hub is not None:

            def publish_activity(rows: list[AppliedRow]) -> None:
                for row in rows:
                    hub.publish("activity", {"id": row.id})

            runner.add_row_listener(publish_activity)
        loop.add_listener(runner.on_committed)
        await runner.start()
        registry.register(HistoryCollector(history.status))
        sampler.start()
        captures = CaptureStore(
            db, budget_mib=config.capture_buffer, secrets=capture_secrets(config)
        )
        projections = cls(
            db=db,
            store=service.store,
            runner=runner,
            captures=captures,
            registry=registry,
            model_metrics=model_metrics,
            log_gauges=log_gauges,
            sampler=sampler,
            hardware=hardware,
            inflight=inflight,
            history=history,
            state=lambda: loop.view,
            config=lambda: service.config,
            clock_ms=service.clock.now_ms,
        )

        def prune_after_snapshot(_seq: int) -> None:
            projections.prune_activity_soon()

        service.add_snapshot_listener(prune_after_snapshot)
        projections.prune_activity_soon()
        return projections

    async def follow_config(self, config: LlamaSwapConfig) -> None:
        """A reload applied `config`: captures, monitoring and activity retention follow it."""
        self.captures.configure(budget_mib=config.capture_buffer, secrets=capture_secrets(config))
        performance = config.performance
        await self.sampler.reconfigure(
            every_s=performance.every / 1e9, disabled=performance.disabled
        )
        self.prune_activity_soon()

    def prune_activity_soon(self) -> asyncio.Task[int] | None:
        """Apply `activityRetentionDays` in the background; the task returns the rows deleted."""
        if self._stopped:
            return None
        task = asyncio.create_task(self._prune_activity(), name="activity retention")
        self._pruning.add(task)
        task.add_done_callback(self._pruning.discard)
        return task

    async def _prune_activity(self) -> int:
        days = self.config().llamaswap_es.activity_retention_days
        try:
            return await prune_activity(self.db, days=days, now_ms=self.clock_ms())
        except Exception:
            log.exception("could not prune the activity table")
            return 0

    async def stop(self) -> None:
        """Call before `service.shutdown()` (the runner reads the still-open log)."""
        self._stopped = True
        for task in self._pruning:  # the next start finishes it
            task.cancel()
        await asyncio.gather(*self._pruning, return_exceptions=True)
        await self.history.stop()
        await self.runner.stop()
        await self.sampler.stop()
        await self.captures.close()  # the last requests' captures, before the file closes
        self.db.close()
