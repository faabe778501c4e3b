"""One running server's machinery: the log, the run loop, the executor, timers and recovery.

`SwapService` is what the HTTP layer talks to. It opens the event log, rebuilds the scheduler
state from it, settles what a previous crash left behind, applies the configuration and preloads,
and from then on carries out the reducer's commands (it is the loop's actuator). Reloads and
shutdown go through the log like everything else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llamaswap_es import __version__, core
from llamaswap_es.config import LlamaSwapConfig, build_schedule, config_hash
from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.core.views import SchedulerView
from llamaswap_es.errors import LlamaSwapError
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    CancelTimer,
    ConfigApplied,
    Decision,
    Envelope,
    Event,
    LoadRequested,
    ProcessRecorded,
    ProcessStartFailed,
    SetTimer,
    ShutdownRequested,
    StartProcess,
    StopProcess,
    UnloadRequested,
)
from llamaswap_es.perf.nvml import NvmlGpus, load_nvml
from llamaswap_es.runtime.clock import Clock, SystemClock
from llamaswap_es.runtime.executor import ProcessExecutor
from llamaswap_es.runtime.footprints import FootprintFeed
from llamaswap_es.runtime.gguf_estimator import GgufEstimator
from llamaswap_es.runtime.hang_watch import HangDetection
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.loop import LoopStoppedError, RunLoop
from llamaswap_es.runtime.loop_health import LoopHealth
from llamaswap_es.runtime.process_spec import ProcessSpec
from llamaswap_es.runtime.process_specs import process_spec
from llamaswap_es.runtime.recovery import rebuild, settle
from llamaswap_es.runtime.retention import DAY_MS, live_instances, pack_events, prune_events
from llamaswap_es.runtime.scheduler_door import SchedulerDoor
from llamaswap_es.runtime.timers import Timers

log = logging.getLogger("llamaswap_es.runtime.service")

ViewPredicate = Callable[[SchedulerView], bool]

SNAPSHOT_EVERY_EVENTS = 50_000
"""A reducer snapshot is saved after this many new events, so a restart after a crash replays at
most about this much of the log (a clean shutdown always saves one)."""

SNAPSHOT_EVERY_MS = DAY_MS
"""A snapshot is also saved at the first commit this long after the last one, so retention
(which prunes only up to a snapshot) is about a day precise on a quiet server too."""
SNAPSHOT_RETRY_MS = 3_600_000
"""After a snapshot could not be saved, the time trigger tries again this much later."""

SnapshotListener = Callable[[int], None]


TAG_OVERRIDE_VAR = "LLAMASWAP_ES_ENV_TAG"
"""Sets the children's tag outright (the test suite uses it to find every leftover process).
Recovery finds orphans by this tag, so keep it stable for a given event log."""


def env_tag_for(db_path: Path, environ: Mapping[str, str] = os.environ) -> str:
    """The tag every child carries: it names this server's log, so a restart finds its orphans."""
    digest = hashlib.sha256(str(db_path.resolve()).encode()).hexdigest()[:16]
    return environ.get(TAG_OVERRIDE_VAR) or f"les-{digest}"


class SwapService:
    def __init__(
        self,
        config: LlamaSwapConfig,
        *,
        db_path: Path,
        logs: UpstreamLogs,
        clock: Clock | None = None,
        config_sources: Sequence[str] = (),
        env_tag: str | None = None,
        nvml: Any | None = None,
        estimator: GgufEstimator | None = None,
    ) -> None:
        """`nvml` replaces the pynvml module placement reads GPU memory with (tests' fake);
        `estimator` the GGUF estimator (tests hold its estimates to order them with reloads)."""
        self._config = config
        self._nvml = nvml
        self._estimator = estimator
        self._schedule = build_schedule(config)
        self._sources = tuple(config_sources)
        self.db_path = db_path
        self.logs = logs
        self.clock = clock or SystemClock()
        self.env_tag = env_tag or env_tag_for(db_path)
        settings = config.llamaswap_es
        self._synchronous = settings.synchronous
        self._probe_interval_ms = settings.probe_interval_ms
        self._shutdown_grace_ms = settings.shutdown_timeout_seconds * 1000
        self.store: EventStore | None = None
        self.loop: RunLoop | None = None
        self.executor: ProcessExecutor | None = None
        self.timers: Timers | None = None
        self.footprints: FootprintFeed | None = None
        self._changed = asyncio.Event()
        self._shutdown_started = False
        self._events_since_snapshot = 0
        self._events_since_pack = 0
        self._last_snapshot_ms = 0
        """When the newest snapshot's event was stamped (the clock provider's time)."""
        self._snapshot_due = False
        self._background: set[asyncio.Task[None]] = set()
        self._pruning: set[asyncio.Task[int]] = set()
        self._prune_lock = asyncio.Lock()
        self._snapshot_listeners: list[SnapshotListener] = []
        self.health = LoopHealth()
        self.failed = asyncio.Event()
        """Set when the run loop stopped after a fatal error: the server must exit non-zero."""

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self.store = await EventStore.open(
            self.db_path, synchronous=self._synchronous, version=__version__
        )
        rebuilt = await asyncio.to_thread(rebuild, self.store.path, self.store.boot_id)
        if rebuilt.previous_boot is None and rebuilt.from_snapshot_seq == 0:
            log.info("event log %s: new", self.store.path)  # only this start's own record
        else:
            log.info(
                "event log %s: recovered by replaying %d events after seq %d",
                self.store.path, rebuilt.replayed, rebuilt.from_snapshot_seq,
            )  # fmt: skip
        await self._note_snapshot_age(rebuilt.from_snapshot_seq)
        self._snapshot_due = rebuilt.history_lost
        self.loop = RunLoop(
            self.store,
            reduce=core.reduce,
            state=rebuilt.state,
            clock=self.clock,
            actuator=self,
            rebuild_state=self._replayed_state,
            on_fatal=self._on_loop_fatal,
            health=self.health,
            view=core.ViewPublisher(),
        )
        self.loop.add_listener(self._on_committed)
        self.footprints = FootprintFeed(
            submit=self._report,
            config=lambda: self._config,
            spec_for=self.spec_for,
            open_gpus=self._open_gpus,
            estimator=self._estimator,
        )
        self.loop.add_listener(self.footprints.on_committed)
        self.executor = ProcessExecutor(
            report=self._report,
            logs=self.logs,
            env_tag=self.env_tag,
            probe_interval_ms=self._probe_interval_ms,
            clock_ms=self.clock.now_ms,  # spawn times on the log's clock
            hang_detection=HangDetection.from_settings(self._config.llamaswap_es.hang_detection),
        )
        self.timers = Timers(self.clock, self._report)
        # The boot's first event, an input like any other: recovery above replayed the log up
        # to here, and everything this run records (settling included) comes after it.
        await self.loop.start(first=self.store.server_started())
        await settle(
            rebuilt,
            submit=self.loop.submit,
            executor=self.executor,
            spec_for=self.spec_for,
            fingerprint_for=self._fingerprint_for,
            env_tag=self.env_tag,
        )
        await self.footprints.start()
        self.loop.submit(self._config_applied("startup"))
        self._preload()
        await self.loop.flush()
        self.prune_soon()
        self.pack_soon()

    def _open_gpus(self) -> NvmlGpus | None:
        """NVML for placement by memory (opened on a thread, only once placement is on)."""
        return NvmlGpus.open(self._nvml if self._nvml is not None else load_nvml())

    def _report(self, event: Event) -> None:
        """The executor's and the timers' way in: never raises into their tasks (a stopped loop
        means the process is exiting, and recovery settles whatever this fact would have said)."""
        assert self.loop is not None
        try:
            self.loop.submit(event)
        except LoopStoppedError:
            log.debug("not recorded, the run loop has stopped: %s", event.type_name)

    async def _replayed_state(self) -> SchedulerState:
        """The state a replay of the committed log gives (after a contained reducer failure)."""
        assert self.store is not None
        rebuilt = await asyncio.to_thread(rebuild, self.store.path, self.store.boot_id)
        return rebuilt.state

    def _on_loop_fatal(self, exc: BaseException) -> None:
        self.failed.set()

    async def _note_snapshot_age(self, snapshot_seq: int) -> None:
        """Start the 24-hour snapshot clock from the snapshot recovery used (now if none)."""
        assert self.store is not None
        self._last_snapshot_ms = self.clock.now_ms()
        if snapshot_seq > 0:  # its own event may be pruned: the next one is as good a bound
            following = await self.store.read(from_seq=snapshot_seq, limit=1)
            if following:
                self._last_snapshot_ms = following[0].ts_ms

    async def shutdown(self, reason: str = "signal") -> None:
        """Answer every waiter, stop every process group, flush the log. Idempotent."""
        if self._shutdown_started or self.loop is None:
            return
        self._shutdown_started = True
        loop, store = self.loop, self.store
        assert store is not None and self.executor is not None and self.timers is not None
        loop.stop_accepting()
        if loop.fatal_error is None and self.health.log_writable:
            loop.submit(ShutdownRequested(grace_ms=self._shutdown_grace_ms, reason=reason))
            await self.wait_until(
                lambda view: all(v.state in ("stopped", "failed") for v in view.models.values()),
                timeout_s=self._shutdown_grace_ms / 1000 + 5,
            )
        # Whatever the log or the loop could record, every model's process group is stopped
        # here: a dead loop or a full disk must never leave a model running without its server.
        if self.footprints is not None:
            await self.footprints.stop()
        await self.executor.close(1000)
        self.timers.cancel_all()
        await loop.stop()
        for task in self._pruning:  # a prune resumes at the next start; never hold up shutdown
            task.cancel()
        await asyncio.gather(*self._pruning, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if loop.fatal_error is None and self.health.log_writable:
            try:
                await self._save_snapshot()
            except Exception as exc:  # a cache: the next start replays a little more
                log.warning("could not save the reducer snapshot at shutdown: %s", exc)
        try:
            await store.close()
        except Exception as exc:
            log.error("closing the event log failed: %s", exc)

    async def _save_snapshot(self) -> None:
        assert self.loop is not None and self.store is not None
        state = self.loop.state
        seq = await self.store.last_seq()
        await self.store.save_snapshot(
            reducer_version=core.REDUCER_VERSION,
            seq=seq,
            digest=core.digest(state),
            state=core.snapshot(state),
        )

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> LlamaSwapConfig:
        return self._config

    @property
    def schedule(self) -> SchedulerConfig:
        return self._schedule

    async def reload(self, config: LlamaSwapConfig, sources: Sequence[str] = ()) -> None:
        """Apply a new configuration: only models whose process settings changed restart."""
        schedule = build_schedule(config)  # raises ConfigError before anything changes
        self._config, self._schedule = config, schedule
        self._sources = tuple(sources) or self._sources
        assert self.loop is not None and self.executor is not None
        self.executor.set_hang_detection(
            HangDetection.from_settings(config.llamaswap_es.hang_detection)
        )
        self.loop.submit(self._config_applied("reload"))
        self._preload()
        await self.loop.flush()

    def _config_applied(self, reason: str) -> ConfigApplied:
        return ConfigApplied(
            config_hash=config_hash(self._config),
            schedule=self._schedule.to_dict(),
            sources=self._sources,
            reason=reason,
        )

    def _preload(self) -> None:
        """`hooks.on_startup.preload`: load each listed model (at start and after each reload)."""
        assert self.loop is not None
        for model in self._config.hooks.on_startup.preload:
            if model in self._schedule.models:
                self.loop.submit(LoadRequested(model=model, origin="preload"))

    def spec_for(self, model: str) -> ProcessSpec | None:
        if model not in self._config.models:
            return None
        return process_spec(self._config, model)

    def _fingerprint_for(self, model: str) -> str | None:
        schedule = self._schedule.models.get(model)
        return schedule.fingerprint if schedule else None

    # ------------------------------------------------------------------ the actuator

    def apply(self, decision: Decision) -> None:
        """Carry out a committed process or timer command (called by the run loop)."""
        assert self.executor is not None and self.timers is not None and self.loop is not None
        if isinstance(decision, StartProcess):
            try:
                spec = self.spec_for(decision.model)
                if spec is None:
                    raise LlamaSwapError(f"model {decision.model!r} is no longer configured")
            except LlamaSwapError as exc:
                self.loop.submit(
                    ProcessStartFailed(
                        model=decision.model, instance=decision.instance, error=str(exc)
                    )
                )
                return
            self.executor.start(
                spec.on_devices(decision.devices, decision.device_uuids), decision.instance
            )
        elif isinstance(decision, StopProcess):
            self.executor.stop(decision.model, decision.instance, decision.grace_ms)
        elif isinstance(decision, SetTimer):
            self.timers.set(decision.timer_id, decision.at_ms)
        elif isinstance(decision, CancelTimer):
            self.timers.cancel(decision.timer_id)

    # ------------------------------------------------------------------ operations

    async def unload(
        self, models: Sequence[str] = (), *, wait: bool = True, timeout_s: float | None = None
    ) -> bool:
        """Stop these models (all when empty); with `wait`, return once they are stopped."""
        assert self.loop is not None
        targets = tuple(models)
        self.loop.submit(UnloadRequested(models=targets, origin="api"))
        if not wait:
            return True
        if timeout_s is None:
            longest = max(
                (m.unload_timeout_ms for m in self._schedule.models.values()), default=10_000
            )
            timeout_s = longest / 1000 + 10
        return await self.wait_until(
            lambda view: all(
                v.state in ("stopped", "failed")
                for v in view.models.values()
                if not targets or v.model in targets
            ),
            timeout_s=timeout_s,
        )

    async def wait_until(self, predicate: ViewPredicate, *, timeout_s: float) -> bool:
        """Wait until the committed view satisfies `predicate` (checked after each commit)."""
        assert self.loop is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self.loop.view):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.loop.fatal_error is not None:
                return False
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return predicate(self.loop.view)
        return True

    def _on_committed(self, envelopes: Sequence[Envelope]) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if not envelopes:
            return
        self._events_since_snapshot += len(envelopes)
        self._events_since_pack += len(envelopes)
        pack_rows = self._config.llamaswap_es.event_pack_rows
        if pack_rows > 0 and self._events_since_pack >= pack_rows:  # 0: packing is off
            self._events_since_pack = 0
            self.pack_soon()
        newest = envelopes[-1]
        if (
            self._events_since_snapshot >= SNAPSHOT_EVERY_EVENTS
            or newest.ts_ms - self._last_snapshot_ms >= SNAPSHOT_EVERY_MS
            or self._snapshot_due
        ):
            self._events_since_snapshot = 0
            self._last_snapshot_ms = newest.ts_ms
            self._snapshot_due = False
            self._snapshot_soon(newest.seq)

    def _snapshot_soon(self, seq: int) -> None:
        """Take the snapshot now (between batches, so it is consistent), write it meanwhile."""
        assert self.loop is not None and self.store is not None
        state = self.loop.state
        data, digest = core.snapshot(state), core.digest(state)
        store = self.store

        async def save() -> None:
            try:
                await store.save_snapshot(
                    reducer_version=core.REDUCER_VERSION, seq=seq, digest=digest, state=data
                )
            except Exception:
                log.exception("could not save the reducer snapshot at seq %d", seq)
                # The time trigger already moved on: try again in an hour, not a day.
                self._last_snapshot_ms -= SNAPSHOT_EVERY_MS - SNAPSHOT_RETRY_MS
                return
            if not self._shutdown_started:
                self.prune_soon()
                for listener in self._snapshot_listeners:
                    try:
                        listener(seq)
                    except Exception:
                        log.exception("a snapshot listener failed at seq %d", seq)

        task = asyncio.create_task(save(), name=f"snapshot {seq}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def state(self) -> SchedulerState:
        """The live state (snapshots, retention); handlers read `view`."""
        assert self.loop is not None
        return self.loop.state

    @property
    def door(self) -> SchedulerDoor | None:
        """The run loop as web/ may use it (runtime/scheduler_door.py); None before `start`."""
        return self.loop

    @property
    def view(self) -> SchedulerView:
        """The scheduler as of the last committed batch: what handlers and pages may show."""
        if self.loop is None:
            return core.EMPTY_VIEW
        view: SchedulerView = self.loop.view
        return view

    # ------------------------------------------------------------------ retention

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """`listener(seq)` after each snapshot written while running (activity retention)."""
        self._snapshot_listeners.append(listener)

    def prune_soon(self) -> asyncio.Task[int]:
        """Prune the log per `eventRetentionDays` in the background; the task returns the count.

        Run after start-up and after each snapshot; prunes run one at a time, and shutdown
        cancels one under way between chunks (the next start finishes it).
        """
        task = asyncio.create_task(self._prune(), name="event-log retention")
        self._pruning.add(task)
        task.add_done_callback(self._pruning.discard)
        return task

    def pack_soon(self) -> asyncio.Task[int]:
        """Pack request events every projection has applied (`eventPackRows`) in the background;
        the task returns the rows packed. Run after start-up and every `eventPackRows` events,
        one at a time with pruning; shutdown cancels it between blocks."""
        task = asyncio.create_task(self._pack(), name="event-log packing")
        self._pruning.add(task)
        task.add_done_callback(self._pruning.discard)
        return task

    async def _pack(self) -> int:
        async with self._prune_lock:
            rows = self._config.llamaswap_es.event_pack_rows
            if rows <= 0 or self.store is None or self._shutdown_started:
                return 0
            try:
                return await pack_events(
                    self.store, block_rows=rows,
                    keep_going=lambda: not self._shutdown_started
                    and self._config.llamaswap_es.event_pack_rows > 0,
                )  # fmt: skip
            except Exception:
                log.exception("could not pack the event log's request events")
                return 0

    async def _restate(self, records: Sequence[ProcessRecorded]) -> None:
        """Append re-stated start records through the run loop; returns once the loop has
        written everything submitted so far (`flush`). Should they be lost (the loop stopping),
        the prune point is chosen from the log afterwards, so nothing unsafe is pruned."""
        assert self.loop is not None
        for record in records:
            self.loop.submit(record)
        await self.loop.flush()

    async def _prune(self) -> int:
        async with self._prune_lock:
            days = self._config.llamaswap_es.event_retention_days
            if days <= 0 or self.store is None or self.loop is None or self._shutdown_started:
                return 0
            live = live_instances(self.loop.state)
            try:
                return await prune_events(
                    self.store, days=days, now_ms=self.clock.now_ms(), live=live,
                    restate=self._restate,
                    keep_going=lambda: self._config.llamaswap_es.event_retention_days > 0,
                )  # fmt: skip
            except Exception:
                log.exception("could not prune the event log")
                return 0
