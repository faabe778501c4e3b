"""The event log as a running server sees it: committing numbered batches, reads, follow.

One `LogWriter` (raw sqlite3, never SQLAlchemy) lives on a dedicated thread; every write (the run
loop's batches, snapshots, prune chunks) is one job on that thread, so they never interleave.
There is one write pipeline: on a running server the run loop is the only producer. It numbers
its batch itself (from `last_seq()` at start) and hands the encoded rows to `commit_rows`, one
thread job per batch; group commit comes from the loop's own batching, since inputs pile up in
its inbox while a commit is in flight, and back-pressure is the loop's bound on that inbox.
`append_batch` is the plain direct append for tools and tests that write without a run loop: it
numbers from the last committed seq, one call at a time. Opening writes nothing: the server's
`ServerStarted` is the run loop's first input (`server_started()` builds it).

Reads run on a separate thread with a read-only connection; each read is one statement, so no
read transaction is ever held across an await. `follow` is woken after each commit (an
`asyncio.Event` swapped per commit), never by a polling sleep.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import llamaswap_es
from llamaswap_es.events.errors import StoreError
from llamaswap_es.events.pack import EncodedPack
from llamaswap_es.events.reader import DatabaseReader, Snapshot, connect_read_only
from llamaswap_es.events.rows import Row, encode_envelopes
from llamaswap_es.events.types import Envelope, ServerStarted
from llamaswap_es.events.worker_thread import WorkerThread
from llamaswap_es.events.writer import LogWriter, prepare_pack

PRUNE_CHUNK = 5_000
"""Events deleted per transaction by `prune_through` (appends wait at most one chunk)."""

PACK_BLOCK_ROWS = 4_096
"""Rows per pack by default (`eventPackRows`): a request's three rows compress to ~1/7 in a
block this size; bigger blocks gain little and make a read by key decode more."""


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shielded write's outcome as seen: its caller may have left (cancelled)."""
    if not task.cancelled():
        task.exception()


def _prepare_pack(path: Path, seq: int, block_rows: int, keep: int) -> EncodedPack | None:
    """`prepare_pack` on a connection of its own, opened and closed on the calling thread (a
    cancelled caller leaves the thread to finish with it)."""
    conn = connect_read_only(path)
    try:
        return prepare_pack(conn, seq, block_rows, keep)
    finally:
        conn.close()


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_boot_id() -> str:
    """Time-ordered and unique enough to tell server runs apart: `<ms hex>-<random hex>`."""
    return f"{wall_clock_ms():012x}-{uuid.uuid4().hex[:12]}"


class EventStore:
    """The append-only log of one server. Use from one event loop; open with `EventStore.open`."""

    def __init__(
        self,
        writer: LogWriter,
        write_thread: WorkerThread,
        *,
        boot_id: str,
        version: str,
    ):
        self.path: Path = writer.path
        self._writer = writer
        self._write_thread = write_thread
        self._read_thread = WorkerThread("eventlog-read")
        self._db_reader: DatabaseReader | None = None  # opened and used on the read thread only
        self._boot_id = boot_id
        self._version = version
        self._committed_seq = writer.next_seq - 1
        self._commit_event = asyncio.Event()
        self._write_lock = asyncio.Lock()
        """Held for each write; FIFO, so close() comes after every write called before it."""
        self._closing = False
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "normal",
        version: str = llamaswap_es.__version__,
        boot_id: str | None = None,
    ) -> EventStore:
        """Open (creating the directory and file), migrate and lock; appends nothing."""
        write_thread = WorkerThread("eventlog-write")
        try:
            writer = await write_thread.call(lambda: LogWriter.open(path, synchronous=synchronous))
        except BaseException:
            write_thread.close(wait=False)
            raise
        return cls(writer, write_thread, boot_id=boot_id or new_boot_id(), version=version)

    @property
    def boot_id(self) -> str:
        return self._boot_id

    def server_started(self) -> ServerStarted:
        """This run's first event: the run loop records it before anything else of this boot."""
        return ServerStarted(boot_id=self._boot_id, pid=os.getpid(), version=self._version)

    # ----------------------------------------------------------------------------------------
    # Appending

    async def commit_rows(self, rows: Sequence[Row]) -> None:
        """Write the run loop's numbered batch in one transaction; returns once committed.

        A storage fault raises `StoreError` with nothing written (the loop retries the same
        rows); rows that do not continue the log raise `SeqMismatchError`. If the caller is
        cancelled while waiting, the batch may still be committed (the log is the truth).
        """
        if not rows:
            return
        await self._write_lock.acquire()
        await self._write_shielded(rows)

    async def append_batch(self, envelopes: Sequence[Envelope]) -> list[int]:
        """Append in one transaction with contiguous seqs, in order; returns the seqs.

        For tools and tests that write without a run loop (never beside one: the loop's next
        batch would then not continue the log, and it stops). Calls are taken one at a time.
        """
        if not envelopes:
            return []
        if self._closing:
            raise StoreError(f"{self.path}: the event log is closed")
        encoded = encode_envelopes(envelopes, self._boot_id)  # a bad payload fails here alone
        await self._write_lock.acquire()
        first = self._committed_seq + 1
        rows: list[Row] = [(first + i, *row) for i, row in enumerate(encoded)]
        await self._write_shielded(rows)
        return [row[0] for row in rows]

    async def _write_shielded(self, rows: Sequence[Row]) -> None:
        """Write under the lock the caller took, to the end even if the caller is cancelled: the
        thread job cannot be stopped, so the lock stays held and the committed seq stays right
        until it is done (then the lock is released)."""
        task = asyncio.ensure_future(self._write_and_release(rows))
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    async def _write_and_release(self, rows: Sequence[Row]) -> None:
        try:
            if self._closed:
                raise StoreError(f"{self.path}: the event log is closed")
            await self._write_thread.call(self._writer.commit, rows)
            self._committed_seq = rows[-1][0]
            self._commit_event.set()
            self._commit_event = asyncio.Event()
        finally:
            self._write_lock.release()

    async def save_snapshot(
        self, *, reducer_version: str, seq: int, digest: str, state: bytes
    ) -> None:
        """Store a reducer snapshot (a cache; replacing one at the same version and seq)."""
        if self._closed:
            raise StoreError(f"{self.path}: the event log is closed")
        await self._write_thread.call(
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
        if not await self._write_thread.call(self._writer.has_snapshot_at, seq):
            raise StoreError(
                f"{self.path}: cannot prune through seq {seq}: no snapshot is stored there, so "
                "the log would no longer replay"
            )
        deleted = 0
        while not self._closing and keep_going():
            n = await self._write_thread.call(self._writer.prune_chunk, seq, chunk)
            deleted += n
            if n == 0:  # each chunk dropped its packed rows too: nothing is left at or below seq
                await self._write_thread.call(self._writer.prune_snapshots_before, seq)
                break
        return deleted

    async def pack_through(
        self,
        seq: int,
        *,
        block_rows: int = PACK_BLOCK_ROWS,
        keep_plain: int | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> int:
        """Pack request events at or below `seq`, a block of `block_rows` at a time; returns the
        rows packed.

        `seq` must be a position every reader has passed (retention's `pack_events` chooses
        it). The newest `keep_plain` packable rows (default: one block) always stay rows. Each
        block is one job on the writer thread (appends interleave between blocks); stops when
        less than a block is left, the store closes or `keep_going()` turns false.
        """
        if self._closing:
            raise StoreError(f"{self.path}: the event log is closed")
        if block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        keep = block_rows if keep_plain is None else keep_plain
        packed = 0
        # Reading and encoding a block (most of its time) runs on a worker thread with its own
        # read-only connection; only the check-insert-delete transaction is a writer job.
        while not self._closing and keep_going():
            pack = await asyncio.to_thread(_prepare_pack, self.path, seq, block_rows, keep)
            if pack is None or self._closing:
                break
            n = await self._write_thread.call(self._writer.store_pack, pack)
            if n == 0:
                break
            packed += n
        return packed

    # ----------------------------------------------------------------------------------------
    # Reading

    def _reader(self) -> DatabaseReader:
        if self._db_reader is None:
            self._db_reader = DatabaseReader(self.path, connect_read_only(self.path))
        return self._db_reader

    async def _on_read_thread(self, fn: Callable[[DatabaseReader], object]) -> object:
        if self._closed:
            raise StoreError(f"{self.path}: the event log is closed")
        return await self._read_thread.call(lambda: fn(self._reader()))

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
        """Finish the writes called before, then close both connections and release the lock."""
        if self._closing:
            return
        self._closing = True
        async with self._write_lock:
            self._closed = True
        self._commit_event.set()
        await self._read_thread.call(self._close_reader)
        self._read_thread.close()
        await self._write_thread.call(self._writer.close)
        self._write_thread.close()

    def _close_reader(self) -> None:
        if self._db_reader is not None:
            self._db_reader.close()
            self._db_reader = None

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
