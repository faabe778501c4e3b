"""The history sink: follows this node's committed log into the (shared) history database.

Modelled on the projection runner. The run loop calls `HistorySink.on_committed(envelopes)` after
each committed batch (`RunLoop.add_listener`); that only appends to a bounded buffer and wakes the
sink's task, so the loop is never slowed and never waits for the database. The task folds what is
buffered (`HistoryFold`) and writes the rows with the node's checkpoint in one transaction
(`HistoryWriter`), at most one transaction per `WRITE_INTERVAL_S`, each taking everything
committed since: the request path pays nothing per request, and a busy node writes big batches.

The database's checkpoint is the sink's position: it reads it when it starts and again after any
failure, then reads the log from there (a page at a time from the store when the buffer does not
reach back that far). So after an outage, however long, the history catches up exactly once: no
gaps (the log keeps everything the sink has not written: it holds retention back through a
`history` row in the local `projection_checkpoints`) and no duplicates (the checkpoint moves with
the rows, by compare-and-set, and rows are keyed).

While the database cannot be written the node serves as usual: the sink retries with backoff,
logs the fault once (and again when it changes or heals), and says how far behind it is through
`status()` (`GET /api/history`, `/metrics`). Only a bug (an error that is not about the database
or the log) stops it, loudly, as the projection runner stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from llamaswap_es.errors import StoreError
from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.history.errors import HistoryError, describe
from llamaswap_es.projections.history.fold import HistoryFold
from llamaswap_es.projections.history.status import HistoryStatus
from llamaswap_es.projections.history.writer import HistoryWriter, Row, wall_ms
from llamaswap_es.projections.runner import LogSource

log = logging.getLogger("llamaswap_es.projections.history")

WRITE_INTERVAL_S = 0.1
"""After a write the sink waits this long before the next: at most ~10 transactions a second,
each taking everything committed meanwhile (the lag this adds is at most this)."""
BEHIND_EVENTS = 1_000
"""With this many events still unwritten after a write, the next write starts at once: waiting
only batches what is already a full batch, and a starved or recovering sink catches up sooner."""
RETRY_DELAYS_S = (0.1, 0.2, 0.5, 1.0, 2.0)
"""Backoff while the history database cannot be written (the last delay repeats)."""
IDLE_CHECKPOINT_EVERY = 5_000
"""Batches that add no row are not written; the checkpoint still moves every this many seqs."""
RETENTION_HOLD_EVERY_S = 5.0
"""How often the local `history` checkpoint (which holds event-log retention back) is moved up
while the sink writes without pause; it also moves whenever the sink has caught up."""
CURRENT_WITHIN_S = 1.0
"""A sink whose oldest unwritten event is younger than this is `current`, else `behind`."""

RETRYABLE = (HistoryError, SQLAlchemyError, OSError, TimeoutError, StoreError)
"""Faults of the database (or of reading the log) that the sink waits out."""

RetentionHold = Callable[[int], Awaitable[None]]


class HistorySink:
    def __init__(
        self,
        writer: HistoryWriter,
        store: LogSource,
        *,
        max_buffer: int = 20_000,
        page: int = 2_000,
        write_interval_s: float = WRITE_INTERVAL_S,
        hold_retention: RetentionHold | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.writer = writer
        self._store = store
        self._max_buffer = max_buffer
        self._page = page
        self._interval = write_interval_s
        self._hold_retention = hold_retention
        self._clock_ms = clock_ms
        self._buffer: deque[Envelope] = deque()
        self._overflowed = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fold: HistoryFold | None = None
        """None until positioned from the database's checkpoint (and again after a failure)."""
        self._next = 1
        self._written_seq: int | None = None
        self._log_seq = 0
        self._oldest_unwritten_ms: int | None = None
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._attempt = 0
        self._held_at = 0.0
        self._held_seq = -1
        self.requests_written = 0
        self.decisions_written = 0
        self.write_failures = 0
        self.failure: BaseException | None = None

    # -- the run loop's side --------------------------------------------------------------

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        """The run loop's listener: buffer and wake (never blocks, never raises)."""
        if not envelopes or self.failure is not None:
            return
        self._log_seq = max(self._log_seq, envelopes[-1].seq)
        if self._oldest_unwritten_ms is None:
            self._oldest_unwritten_ms = envelopes[0].ts_ms
        if self._overflowed:
            self._wakeup.set()
            return
        if len(self._buffer) + len(envelopes) > self._max_buffer:
            self._buffer.clear()
            self._overflowed = True  # the sink re-reads the missing seqs from the log
        else:
            self._buffer.extend(envelopes)
        self._wakeup.set()

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start following; connecting (and catching up) happens in the task, so a database
        that is down at start-up never delays the server."""
        self._log_seq = await self._store.last_seq()
        self._task = asyncio.create_task(self._run(), name="history sink")

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Write what is committed if the database answers (briefly), then stop the task."""
        if self._task is None:
            return
        if self.failure is None and self._failing_since is None and not self._task.done():
            try:
                await self.flush(flush_timeout_s)
            except (TimeoutError, RuntimeError):
                log.warning(
                    "history sink: %d events not yet in %s at shutdown; the next start writes them",
                    self.lag_events, self.writer.db.shown,
                )  # fmt: skip
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        await self._hold(force=True)

    @property
    def applied_seq(self) -> int:
        """Every seq up to this one is in the history database (or adds nothing to it)."""
        return self._next - 1 if self._fold is not None else (self._written_seq or 0)

    @property
    def lag_events(self) -> int:
        return max(0, self._log_seq - self.applied_seq)

    async def wait_for(self, seq: int, timeout_s: float = 10.0) -> None:
        """Wait until every seq up to `seq` is written (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            while self.applied_seq < seq:
                if self.failure is not None:
                    raise RuntimeError("the history sink stopped") from self.failure
                await self._progress.wait()

    async def flush(self, timeout_s: float = 10.0) -> None:
        await self.wait_for(await self._store.last_seq(), timeout_s)

    # -- the task -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self._fold is None:
                    await self._position()
                    self._healed()
                batch = await self._next_batch()
                if not batch:
                    self._wakeup.clear()
                    if self._buffer or await self._store.last_seq() >= self._next:
                        continue
                    self._oldest_unwritten_ms = None
                    self._signal_progress()
                    await self._hold(force=True)  # caught up: retention may prune up to here
                    await self._wakeup.wait()
                    continue
                wrote = await self._apply(batch)
                self._healed()
                self._signal_progress()
                if wrote and self._interval > 0 and self.lag_events < BEHIND_EVENTS:
                    await asyncio.sleep(self._interval)  # batch up; but never when behind
            except asyncio.CancelledError:
                raise
            except RETRYABLE as exc:
                await self._wait_after(exc)
            except Exception as exc:  # a bug: stop loudly, the node keeps serving
                self.failure = exc
                self._buffer.clear()
                log.exception("history sink stopped at seq %d: %s", self._next, exc)
                self._signal_progress()
                return

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _position(self) -> None:
        checkpoint = await self.writer.checkpoint()
        self._fold = HistoryFold.from_state(checkpoint.state)
        self._written_seq = checkpoint.seq
        self._next = checkpoint.seq + 1
        last = await self._store.last_seq()
        if checkpoint.seq > last:
            log.warning(
                'history sink: %s has node "%s" up to seq %d but its event log ends at %d (a '
                "log restored from an older copy?); the history continues after seq %d",
                self.writer.db.shown, self.writer.node, checkpoint.seq, last, checkpoint.seq,
            )  # fmt: skip
        await self._hold(force=True)

    async def _next_batch(self) -> list[Envelope]:
        while self._buffer and self._buffer[0].seq < self._next:
            self._buffer.popleft()
        if not self._overflowed and self._buffer and self._buffer[0].seq == self._next:
            batch = list(self._buffer)
            self._buffer.clear()
            return batch
        self._overflowed = False
        if await self._store.last_seq() < self._next:
            return []
        batch = await self._store.read(from_seq=self._next, limit=self._page)
        if batch and batch[0].seq > self._next and self._next > 1:
            log.warning(
                "history sink: events %d..%d were pruned from the log before they reached %s; "
                "their requests are missing from the history",
                self._next, batch[0].seq - 1, self.writer.db.shown,
            )  # fmt: skip
        return batch

    async def _apply(self, batch: list[Envelope]) -> bool:
        """Fold `batch` and write what it adds; False when there was nothing to write."""
        assert self._fold is not None and self._written_seq is not None
        requests: list[Row] = []
        decisions: list[Row] = []
        last = self._next - 1
        for env in batch:
            if env.seq <= last:
                continue
            last = env.seq
            request, decision = self._fold.step(env)
            if request is not None:
                requests.append(request)
            if decision is not None:
                decisions.append(decision)
        if last < self._next:
            return False
        if not requests and not decisions and last - self._written_seq < IDLE_CHECKPOINT_EVERY:
            self._advance(last)  # re-reading these after a restart adds nothing either
            return False
        await self.writer.write(
            requests, decisions, expected_seq=self._written_seq, seq=last,
            state=self._fold.to_state(),
        )  # fmt: skip
        self._written_seq = last
        self._advance(last)
        self.requests_written += len(requests)
        self.decisions_written += len(decisions)
        await self._hold()
        return True

    def _advance(self, last: int) -> None:
        self._next = last + 1
        if self._next > self._log_seq:
            self._oldest_unwritten_ms = None
        elif self._buffer and self._buffer[0].seq == self._next:
            self._oldest_unwritten_ms = self._buffer[0].ts_ms

    async def _hold(self, *, force: bool = False) -> None:
        """Move the local retention hold up to what the database has (every few seconds)."""
        if self._hold_retention is None or not self._written_seq:
            return  # nothing written yet: nothing to hold back
        now = time.monotonic()
        if self._written_seq == self._held_seq or (
            not force and now - self._held_at < RETENTION_HOLD_EVERY_S
        ):
            return
        try:
            await self._hold_retention(self._written_seq)
        except Exception as exc:  # the hold only ever lags: retention prunes less meanwhile
            log.warning("history sink: could not record its position for retention: %s", exc)
            return
        self._held_at, self._held_seq = now, self._written_seq

    async def _wait_after(self, exc: BaseException) -> None:
        """A database (or log) fault: forget the position, report, back off, retry."""
        self._fold = None
        self.write_failures += 1
        message = str(exc) if isinstance(exc, HistoryError) else describe(exc)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error(
                "history sink cannot write to %s: %s; the node serves as usual and the history "
                "catches up when the database is back (retrying)",
                self.writer.db.shown, message,
            )  # fmt: skip
        elif message != self._last_error:
            log.error("history sink still cannot write to %s: %s", self.writer.db.shown, message)
        self._last_error = message
        delay = RETRY_DELAYS_S[min(self._attempt, len(RETRY_DELAYS_S) - 1)]
        self._attempt += 1
        await self.writer.reset()
        await asyncio.sleep(delay)

    def _healed(self) -> None:
        if self._failing_since is None:
            return
        log.warning(
            "history sink writes to %s again after %.1f s; catching up %d events",
            self.writer.db.shown, time.monotonic() - self._failing_since, self.lag_events,
        )  # fmt: skip
        self._failing_since = None
        self._last_error = None
        self._attempt = 0

    # -- what it says ---------------------------------------------------------------------

    def status(self) -> HistoryStatus:
        lag_events = self.lag_events
        oldest = self._oldest_unwritten_ms
        lag_s = max(0.0, (self._clock_ms() - oldest) / 1000) if oldest and lag_events else 0.0
        failing_s = 0.0 if self._failing_since is None else time.monotonic() - self._failing_since
        if self.failure is not None:
            state = "stopped"
        elif self._failing_since is not None:
            state = "failing"
        elif self._written_seq is None:
            state = "starting"
        else:
            state = "current" if lag_s < CURRENT_WITHIN_S else "behind"
        return HistoryStatus(
            enabled=True,
            node=self.writer.node,
            database=self.writer.db.shown,
            shared=self.writer.db.shared,
            state=state,
            written_seq=self._written_seq,
            log_seq=self._log_seq,
            lag_events=lag_events,
            lag_seconds=round(lag_s, 3),
            failing_seconds=round(failing_s, 3),
            last_error=str(self.failure) if self.failure is not None else self._last_error,
            requests_written=self.requests_written,
            decisions_written=self.decisions_written,
            write_failures=self.write_failures,
        )
