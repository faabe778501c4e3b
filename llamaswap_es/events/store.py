"""The event log as the run loop sees it: async appends with group commit, reads, follow.

One `LogWriter` (raw sqlite3, never SQLAlchemy) lives on a dedicated thread. `append_batch`
encodes its envelopes at once (a bad payload fails only its own caller), queues them and awaits
their seqs. A writer task drains *everything* queued when the thread is free into one
transaction, so concurrent producers share one commit (group commit: no linger, batches grow by
themselves while a commit is in flight). The queue is bounded by `max_pending` envelopes; beyond
it `append_batch` raises `StoreOverloadedError` at once instead of growing without bound.

Reads run on a separate thread with a read-only connection; each read is one statement, so no
read transaction is ever held across an await. `follow` is woken by the writer after each commit
(an `asyncio.Event` swapped per commit), never by a polling sleep.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import llamaswap_es
from llamaswap_es.events.errors import StoreError, StoreOverloadedError
from llamaswap_es.events.reader import DatabaseReader, Snapshot, connect_read_only
from llamaswap_es.events.rows import UnsequencedRow, encode_envelopes
from llamaswap_es.events.types import Envelope, ServerStarted
from llamaswap_es.events.writer import LogWriter

PRUNE_CHUNK = 5_000
"""Events deleted per transaction by `prune_through` (appends wait at most one chunk)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_boot_id() -> str:
    """Time-ordered and unique enough to tell server runs apart: `<ms hex>-<random hex>`."""
    return f"{wall_clock_ms():012x}-{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class _Pending:
    rows: list[UnsequencedRow]
    future: asyncio.Future[list[int]]


class EventStore:
    """The append-only log of one server. Use from one event loop; open with `EventStore.open`."""

    def __init__(
        self,
        writer: LogWriter,
        write_thread: ThreadPoolExecutor,
        *,
        boot_id: str,
        clock_ms: Callable[[], int],
        max_pending: int,
    ):
        self.path: Path = writer.path
        self._writer = writer
        self._write_thread = write_thread
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="eventlog-read")
        self._db_reader: DatabaseReader | None = None  # opened and used on the read thread only
        self._boot_id = boot_id
        self._clock_ms = clock_ms
        self._max_pending = max_pending
        self._queue: deque[_Pending] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._committed_seq = writer.next_seq - 1
        self._commit_event = asyncio.Event()
        self._closing = False
        self._closed = False
        self._writer_task = asyncio.get_running_loop().create_task(
            self._run_writer(), name=f"eventlog-writer:{self.path.name}"
        )

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "normal",
        version: str = llamaswap_es.__version__,
        clock_ms: Callable[[], int] = wall_clock_ms,
        boot_id: str | None = None,
        max_pending: int = 10_000,
    ) -> EventStore:
        """Open (creating the directory and file), migrate, lock, then append `ServerStarted`."""
        loop = asyncio.get_running_loop()
        write_thread = ThreadPoolExecutor(1, thread_name_prefix="eventlog-write")
        try:
            writer = await loop.run_in_executor(
                write_thread, lambda: LogWriter.open(path, synchronous=synchronous)
            )
        except BaseException:
            write_thread.shutdown(wait=False)
            raise
        store = cls(
            writer,
            write_thread,
            boot_id=boot_id or new_boot_id(),
            clock_ms=clock_ms,
            max_pending=max_pending,
        )
        try:
            started = ServerStarted(boot_id=store.boot_id, pid=os.getpid(), version=version)
            await store.append_batch([Envelope(body=started, ts_ms=clock_ms())])
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def boot_id(self) -> str:
        return self._boot_id

    # ----------------------------------------------------------------------------------------
    # Appending

    async def append_batch(self, envelopes: Sequence[Envelope]) -> list[int]:
        """Append in one transaction with contiguous seqs, in order; returns the seqs.

        Returns once the batch is committed. If the caller is cancelled while waiting, the batch
        may still be committed (the log, not the caller, is the truth).
        """
        if not envelopes:
            return []
        self._check_room(len(envelopes))
        return await self.append_rows(encode_envelopes(envelopes, self._boot_id))

    async def append_rows(self, rows: list[UnsequencedRow]) -> list[int]:
        """`append_batch` for rows the caller already encoded (the run loop encodes each input
        on its own, so that one that cannot be encoded is refused alone)."""
        if not rows:
            return []
        self._check_room(len(rows))
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, future))
        self._pending += len(rows)
        self._wakeup.set()
        return await future

    def _check_room(self, count: int) -> None:
        if self._closing:
            raise StoreError(f"{self.path}: the event log is closed")
        # One batch of any size is taken when nothing else waits (the run loop's batch after a
        # reload that rejects thousands of waiters must not be refused for ever); beyond that
        # the queue is bounded.
        if self._pending and self._pending + count > self._max_pending:
            raise StoreOverloadedError(
                f"{self.path}: {self._pending} events are waiting to be written and "
                f"{count} more would exceed the limit of {self._max_pending}; "
                "the disk is not keeping up, retry later"
            )

    async def _run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                group = list(self._queue)
                self._queue.clear()
                rows = [row for item in group for row in item.rows]
                try:
                    first = await loop.run_in_executor(
                        self._write_thread, self._writer.append, rows
                    )
                except Exception as exc:
                    for item in group:
                        if not item.future.done():
                            item.future.set_exception(exc)
                else:
                    seq = first
                    for item in group:
                        n = len(item.rows)
                        if not item.future.done():
                            item.future.set_result(list(range(seq, seq + n)))
                        seq += n
                    self._committed_seq = seq - 1
                    self._commit_event.set()
                    self._commit_event = asyncio.Event()
                finally:
                    self._pending -= len(rows)
            if self._closing:  # everything queued before close() is written: done
                return

    async def save_snapshot(
        self, *, reducer_version: str, seq: int, digest: str, state: bytes
    ) -> None:
        """Store a reducer snapshot (a cache; replacing one at the same version and seq)."""
        if self._closed:
            raise StoreError(f"{self.path}: the event log is closed")
        await asyncio.get_running_loop().run_in_executor(
            self._write_thread,
            lambda: self._writer.save_snapshot(
                reducer_version=reducer_version, seq=seq, digest=digest, state=bytes(state)
            ),
        )

    async def prune_through(
        self,
        seq: int,
        *,
        chunk: int = PRUNE_CHUNK,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> int:
        """Delete every event up to `seq` and the snapshots below it; returns events deleted.

        `seq` must be the seq of a stored snapshot (the log then still replays from it) and
        below the newest committed event (the newest row is never deleted). Each chunk of
        `chunk` rows is its own job on the writer thread, so appends interleave between chunks
        instead of waiting for the whole prune. Events go oldest first: if the server stops
        half-way, the next prune finishes the job. Stops early, keeping what is done, when the
        store closes or `keep_going()` turns false (checked between chunks).
        """
        if self._closing:
            raise StoreError(f"{self.path}: the event log is closed")
        if seq >= self._committed_seq:
            raise StoreError(
                f"{self.path}: cannot prune through seq {seq}: the newest event "
                f"({self._committed_seq}) is never pruned"
            )
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self._write_thread, self._writer.has_snapshot_at, seq):
            raise StoreError(
                f"{self.path}: cannot prune through seq {seq}: no snapshot is stored there, so "
                "the log would no longer replay"
            )
        deleted = 0
        while not self._closing and keep_going():
            n = await loop.run_in_executor(self._write_thread, self._writer.prune_chunk, seq, chunk)
            deleted += n
            if n == 0:
                await loop.run_in_executor(
                    self._write_thread, self._writer.prune_snapshots_before, seq
                )
                break
        return deleted

    # ----------------------------------------------------------------------------------------
    # Reading

    def _reader(self) -> DatabaseReader:
        if self._db_reader is None:
            self._db_reader = DatabaseReader(self.path, connect_read_only(self.path))
        return self._db_reader

    async def _on_read_thread(self, fn: Callable[[DatabaseReader], object]) -> object:
        if self._closed:
            raise StoreError(f"{self.path}: the event log is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_thread, lambda: fn(self._reader()))

    async def last_seq(self) -> int:
        """The highest committed seq (0 for an empty log)."""
        return self._committed_seq

    async def read(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        types: Collection[str] | None = None,
        key: str | None = None,
        limit: int | None = None,
        validate: bool = False,
        newest: bool = False,
    ) -> list[Envelope]:
        """Committed envelopes matching every given filter, in seq order (`limit` keeps the
        oldest matches, or with `newest` the newest ones)."""
        type_list = None if types is None else list(types)
        result = await self._on_read_thread(
            lambda r: r.read(
                from_seq=from_seq,
                to_seq=to_seq,
                types=type_list,
                key=key,
                limit=limit,
                validate=validate,
                newest=newest,
            )
        )
        return result  # type: ignore[return-value]

    async def follow(self, from_seq: int = 1, *, batch: int = 1000) -> AsyncIterator[Envelope]:
        """Every committed envelope from `from_seq` on, then each new one as it commits.

        Ends when the store closes; cancel the consuming task to stop earlier.
        """
        next_seq = from_seq
        while not self._closed:
            if next_seq > self._committed_seq:
                event = self._commit_event
                await event.wait()
                continue
            try:
                page = await self.read(from_seq=next_seq, limit=batch)
            except StoreError:
                if self._closed:
                    return
                raise
            for env in page:
                yield env
            if page:
                next_seq = page[-1].seq + 1

    async def latest_snapshot(
        self, reducer_version: str, *, max_seq: int | None = None
    ) -> Snapshot | None:
        result = await self._on_read_thread(
            lambda r: r.latest_snapshot(reducer_version, max_seq=max_seq)
        )
        return result  # type: ignore[return-value]

    # ----------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is queued, then close both connections and release the lock."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        if not self._writer_task.done():
            await asyncio.shield(self._writer_task)  # it drains the queue, then ends itself
        for pending in self._queue:  # only if the writer task died (cancelled from outside)
            if not pending.future.done():
                pending.future.set_exception(
                    StoreError(f"{self.path}: the event log closed before this batch was written")
                )
        self._queue.clear()
        self._closed = True
        self._commit_event.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._read_thread, self._close_reader)
        self._read_thread.shutdown(wait=True)
        await loop.run_in_executor(self._write_thread, self._writer.close)
        self._write_thread.shutdown(wait=True)

    def _close_reader(self) -> None:
        if self._db_reader is not None:
            self._db_reader.close()
            self._db_reader = None

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
