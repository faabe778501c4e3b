"""Keeps the projections up to date with the log, live and after a restart.

The run loop calls `ProjectionRunner.on_committed(envelopes)` after each committed batch (register
it with `RunLoop.add_listener`); that only appends to a bounded buffer and wakes the runner's task,
so the loop is never slowed. The task hands what is buffered to the projections: the activity
table (and any other table projection: the local history's decisions) on the projections' write
thread, in-memory projections (metrics) on the event loop. When
it falls behind (the buffer overflowed, or it starts with a checkpoint older than the log's end)
it reads the missing seqs from the store instead, a page at a time, so nothing is ever skipped
and nothing is applied twice (every projection ignores seqs at or below its checkpoint).

After each write the runner waits `WRITE_INTERVAL_S` before the next, so a busy server writes
one activity transaction per interval, taking everything committed meanwhile, instead of one per
committed batch: each write is a hand-off to the write thread, and each hand-off costs the event
loop the GIL. A quiet server's row is written at once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from llamaswap_es.errors import StoreError
from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.activity import ActivityProjection, AppliedRow
from llamaswap_es.projections.database import ProjectionDatabase

log = logging.getLogger("llamaswap_es.projections.runner")

RowListener = Callable[[list[AppliedRow]], None]

WRITE_INTERVAL_S = 0.1
"""After a write the runner waits this long before the next (the lag this adds is at most this)."""
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""Backoff while the projection database cannot be written (the last delay repeats)."""


class LogSource(Protocol):
    """What the runner reads from the event store."""

    async def last_seq(self) -> int: ...

    async def read(self, *, from_seq: int = 1, limit: int | None = None) -> list[Envelope]: ...


class TableProjection(Protocol):
    """A projection into a table of the event log's file besides `activity` (the local
    history's decisions): `load` reads its checkpoint and returns the last seq it applied,
    `apply` writes what `envelopes` add (skipping seqs it already has), on the write thread."""

    name: str

    def load(self, conn: sqlite3.Connection) -> int: ...

    def apply(self, conn: sqlite3.Connection, envelopes: Sequence[Envelope]) -> object: ...


class MemoryProjection(Protocol):
    """A projection held in memory (metrics): `seq` is the last seq it applied."""

    name: str
    seq: int

    def apply(self, envelopes: Sequence[Envelope]) -> None: ...


class ProjectionRunner:
    def __init__(
        self,
        db: ProjectionDatabase,
        store: LogSource,
        *,
        activity: ActivityProjection,
        tables: Sequence[TableProjection] = (),
        memory: Sequence[MemoryProjection] = (),
        max_buffer: int = 20_000,
        page: int = 2_000,
        write_interval_s: float = WRITE_INTERVAL_S,
    ) -> None:
        self._db = db
        self._store = store
        self.activity = activity
        self.tables = list(tables)
        self.memory = list(memory)
        self._max_buffer = max_buffer
        self._page = page
        self._interval = write_interval_s
        self._buffer: deque[Envelope] = deque()
        self._unpublished: list[AppliedRow] = []
        self._overflowed = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._next = 1
        self._task: asyncio.Task[None] | None = None
        self._row_listeners: list[RowListener] = []
        self.failure: BaseException | None = None
        self.table_failures: dict[str, BaseException] = {}
        """Table projections a bug stopped (by name); the others go on without them."""

    def add_row_listener(self, listener: RowListener) -> None:
        """`listener(rows)` after activity rows are committed (e.g. the `activity` SSE event)."""
        self._row_listeners.append(listener)

    @property
    def applied_seq(self) -> int:
        """Every seq up to this one is in every projection."""
        return self._next - 1

    async def lag(self) -> int:
        """How many committed events the projections have not applied yet."""
        return max(0, await self._store.last_seq() - self.applied_seq)

    async def start(self) -> None:
        """Read the checkpoints and start following (catching up from the oldest one)."""

        def load(conn: sqlite3.Connection) -> list[int]:
            return [self.activity.load(conn), *(t.load(conn) for t in self.tables)]

        table_seqs = await self._db.run(load)
        self._next = min([*table_seqs, *(m.seq for m in self.memory)]) + 1
        self._task = asyncio.create_task(self._run(), name="projections")

    def on_committed(self, envelopes: Sequence[Envelope]) -> None:
        """The run loop's listener: buffer and wake (never blocks, never raises)."""
        if self._overflowed:
            self._wakeup.set()
            return
        if len(self._buffer) + len(envelopes) > self._max_buffer:
            self._buffer.clear()
            self._overflowed = True  # the runner re-reads the missing seqs from the log
        else:
            self._buffer.extend(envelopes)
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                self._wakeup.clear()
                if self._buffer or await self._store.last_seq() >= self._next:
                    continue
                await self._wakeup.wait()
                continue
            try:
                await self._apply_until_written(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a projection must never take the server down
                self.failure = exc
                log.exception("projections stopped at seq %d: %s", self._next, exc)
                self._progress.set()
                return
            self._next = batch[-1].seq + 1
            self._progress.set()
            self._progress = asyncio.Event()
            if self._interval > 0 and len(self._buffer) < self._page:
                await asyncio.sleep(self._interval)  # what commits meanwhile joins one write

    async def _next_batch(self) -> list[Envelope]:
        while self._buffer and self._buffer[0].seq < self._next:
            self._buffer.popleft()
        if not self._overflowed and self._buffer and self._buffer[0].seq == self._next:
            batch = list(self._buffer)
            self._buffer.clear()
            return batch
        if self._overflowed:
            self._overflowed = False
        if await self._store.last_seq() < self._next:
            return []
        batch = await self._store.read(from_seq=self._next, limit=self._page)
        if batch and batch[0].seq > self._next:  # retention never prunes past a checkpoint
            log.warning(
                "events %d..%d were gone from the log before the projections applied them; "
                "their requests are missing from the activity history",
                self._next, batch[0].seq - 1,
            )  # fmt: skip
        return batch

    async def _apply_until_written(self, batch: list[Envelope]) -> None:
        """Apply, waiting out a database that cannot be written (disk full, I/O error): the
        batch is retried with backoff, as the run loop retries its own, and nothing is skipped.
        The lag shows on /metrics (`llamaswap_es_projection_lag_events`) meanwhile."""
        attempt = 0
        failing_since: float | None = None
        while True:
            try:
                await self._apply(batch)
            except StoreError as exc:
                now = asyncio.get_running_loop().time()
                if failing_since is None:
                    failing_since = now
                    log.error("projections wait at seq %d: %s; retrying", batch[0].seq, exc)
                await asyncio.sleep(RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)])
                attempt += 1
                continue
            if failing_since is not None:
                log.warning(
                    "projections written again after %.1f s",
                    asyncio.get_running_loop().time() - failing_since,
                )
            return

    async def _apply(self, batch: list[Envelope]) -> None:
        def write(conn: sqlite3.Connection) -> list[AppliedRow]:
            # Activity and each table commit on their own: rows activity wrote before a table
            # failed are kept here, or the retry (where activity skips them) would never
            # publish them to the live feed and the per-model counts.
            self._unpublished.extend(self.activity.apply(conn, batch))
            for table in self.tables:  # each skips what it has (a retry after a fault)
                if table.name not in self.table_failures:
                    self._apply_table(table, conn, batch)
            rows, self._unpublished = self._unpublished, []
            return rows

        rows = await self._db.run(write)
        for projection in self.memory:
            projection.apply(batch)
        if rows:
            for listener in self._row_listeners:
                try:
                    listener(rows)
                except Exception:
                    log.exception("an activity row listener failed")

    def _apply_table(
        self, table: TableProjection, conn: sqlite3.Connection, batch: list[Envelope]
    ) -> None:
        """A store fault is everyone's (the batch is retried); a bug in one table projection
        stops that table alone, loudly, and the activity history goes on (as the history
        sink's bug stopped only the sink before the local history became a table here)."""
        try:
            table.apply(conn, batch)
        except (StoreError, sqlite3.Error, OSError):
            raise
        except Exception as exc:
            self.table_failures[table.name] = exc
            log.exception(
                "the %s projection stopped at seq %d (a bug: please report it with this "
                "traceback); the other projections go on", table.name, batch[0].seq,
            )  # fmt: skip

    async def wait_for(self, seq: int, timeout_s: float = 10.0) -> None:
        """Wait until every seq up to `seq` is applied (tests, the rebuild command)."""
        async with asyncio.timeout(timeout_s):
            while self.applied_seq < seq:
                if self.failure is not None:
                    raise RuntimeError("the projections stopped") from self.failure
                await self._progress.wait()

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until everything committed so far is applied."""
        await self.wait_for(await self._store.last_seq(), timeout_s)

    async def stop(self) -> None:
        """Apply what is committed, then stop the task (the database is closed by its owner)."""
        if self._task is None:
            return
        if self.failure is None and not self._task.done():
            try:
                await self.flush()
            except TimeoutError:
                log.warning("projections did not catch up before shutdown; they will on restart")
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
