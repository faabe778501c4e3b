"""Captures: the request and response of recent requests, as llama-swap keeps them (§15).

A `CaptureRecorder` is fed by the request handler: the request headers and the body the upstream
received (after filters), the response headers, every response chunk (through the forwarder's
`tap`), and then `finish(status)`. What it keeps follows llama-swap's rules: per-path capture
levels, no response body for a failed request, no capture at all for an empty or undecodable
body, the stored body decompressed (so `Content-Encoding` is dropped). Credentials never enter a
capture: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key` become
`[REDACTED]`, and so does any header whose value contains a configured API key.

`CaptureStore` keeps them in the `captures` table as CBOR compressed with zstd, within a byte
budget (`captureBuffer` MiB, oldest evicted first, an item larger than the budget skipped) and
an age limit. Unlike llama-swap's in-memory cache, captures survive a restart (ARCHITECTURE §9.8).
Captures are written in batches: one job on the projections' write thread inflates
(gzip/deflate), encodes and inserts a batch in one transaction, then the writer waits
`WRITE_INTERVAL_S` before the next, so a busy server pays one thread hand-off per batch instead of
two and a transaction per request (each hand-off costs the event loop the GIL). A lone request's
capture is written at once; under load one waits at most that interval.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from llamaswap_es.config import LlamaSwapConfig
from llamaswap_es.projections.database import ProjectionDatabase, write_transaction
from llamaswap_es.projections.inflight import redact_headers

log = logging.getLogger("llamaswap_es.projections.captures")

MIB = 1024 * 1024
ZSTD_LEVEL = 3
"""zstd level of a stored capture, paid by every captured request on the projections' thread.
On this VM a small chat's capture (~750 B of CBOR) takes 7 us at 3 and 15 at 9 for the same
size; 60 KB of text takes 0.44 ms at 3 and 2.1 ms at 9, for 6% more bytes at 3."""
DEFAULT_MAX_AGE_MS = 7 * 24 * 3600 * 1000

# path → (request headers, request body, response headers, response body); default: all four.
CAPTURE_LEVELS: dict[str, tuple[bool, bool, bool, bool]] = {
    "/v1/audio/speech": (True, True, True, False),
    "/v1/audio/voices": (True, False, True, True),
    "/v1/audio/transcriptions": (True, False, True, True),
    "/v1/images/generations": (True, True, True, False),
    "/v1/images/edits": (True, False, True, False),
    "/sdapi/v1/txt2img": (True, True, True, False),
    "/sdapi/v1/img2img": (True, False, True, False),
}
ALL_PARTS = (True, True, True, True)


def capture_level(path: str) -> tuple[bool, bool, bool, bool]:
    return CAPTURE_LEVELS.get(path.split("?", 1)[0], ALL_PARTS)


if TYPE_CHECKING:
    import zstandard


def decode_capture(data: bytes) -> dict[str, Any]:
    import cbor2
    import zstandard

    return cbor2.loads(zstandard.ZstdDecompressor().decompress(data))


def _new_compressor() -> zstandard.ZstdCompressor:
    """Imported at the first capture, not at start: cbor2 and zstandard are ~1 MiB resident
    that an idle server (or one with `captureBuffer: 0`) never uses."""
    import zstandard

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL)


def capture_json(activity_id: int, capture: dict[str, Any]) -> dict[str, Any]:
    """llama-swap's JSON shape: byte fields base64, absent parts null."""

    def b64(value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode()

    return {
        "id": activity_id,
        "req_path": capture.get("req_path", ""),
        "req_headers": capture.get("req_headers"),
        "req_body": b64(capture.get("req_body")),
        "resp_headers": capture.get("resp_headers"),
        "resp_body": b64(capture.get("resp_body")),
    }


WRITE_INTERVAL_S = 0.1
"""After a batch the capture writer waits this long before the next (at most ~10 a second)."""
EXPIRY_EVERY_MS = 60_000
"""How often captures past their age are deleted (they are also counted against the budget)."""


def capture_secrets(config: LlamaSwapConfig) -> list[str]:
    """Every credential of ours a capture must never hold: API keys and peers' keys."""
    return [*config.api_keys, *(p.api_key for p in config.peers.values() if p.api_key)]


class CaptureStore:
    """Captures in the database, within `budget_bytes` (stored size) and `max_age_ms`."""

    def __init__(
        self,
        db: ProjectionDatabase,
        *,
        budget_mib: float,
        max_age_ms: int | None = DEFAULT_MAX_AGE_MS,
        secrets: Sequence[str] = (),
    ) -> None:
        self._db = db
        self.max_age_ms = max_age_ms
        self._stored: int | None = None
        self._expired_at_ms = 0
        self._queue: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None
        self._closing = False
        self._compressor: zstandard.ZstdCompressor | None = None
        """Made at the first capture; used on the write thread only (a compressor is not safe
        across threads at once)."""
        self.configure(budget_mib=budget_mib, secrets=secrets)

    def configure(self, *, budget_mib: float, secrets: Sequence[str]) -> None:
        """Apply `captureBuffer` and the credentials to redact (at start and on every reload).

        A smaller budget evicts the oldest captures at the next insert; 0 stops capturing new
        requests and keeps what is stored."""
        self.budget_bytes = int(budget_mib * MIB) if budget_mib > 0 else 0
        self.secrets = tuple(secrets)

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def recorder(self, request_id: str, path: str) -> CaptureRecorder | None:
        """A recorder for one request, or None when captures are off (`captureBuffer` ≤ 0)."""
        if not self.enabled:
            return None
        return CaptureRecorder(self, request_id, path)

    def store_later(self, recorder: CaptureRecorder, status: int) -> None:
        """Store `recorder`'s capture without waiting: a request's end runs this, also when its
        handler was cancelled (no await there). It joins the next batch at once (no task or
        future of its own: this is on every request's path); `close` writes it before the
        database closes, and a failed batch is logged with what the store said."""
        built = recorder.build(status)
        if built is not None:
            self._enqueue(_Pending(recorder.request_id, built[0], built[1], None))

    async def close(self) -> None:
        """Write every capture already handed over (no pause between batches any more), then
        return: call before the projection database closes, or the captures of the requests
        that ended last before a shutdown are lost."""
        self._closing = True
        while self._drain is not None and not self._drain.done():
            await asyncio.gather(self._drain, return_exceptions=True)

    async def save(self, request_id: str, capture: dict[str, Any], encoding: str = "") -> bool:
        """Store a capture (its response body inflated first when `encoding` is gzip/deflate);
        False when it alone exceeds the budget or its body cannot be inflated. Waits for the
        batch it joined to be committed."""
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(request_id, capture, encoding, stored))
        return await stored

    def _enqueue(self, pending: _Pending) -> None:
        self._queue.append(pending)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_queue(), name="captures-write")

    async def _drain_queue(self) -> None:
        """Write what is queued, one batch per write-thread job and at most one batch per
        `WRITE_INTERVAL_S`, until nothing is left."""
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._db.run(partial(self._write_batch, batch=batch))
                except Exception as exc:  # named by the store (file, cause)
                    results = None
                    _fail(batch, exc)
                for item, stored in zip(batch, results or (), strict=False):
                    if item.stored is not None and not item.stored.done():
                        item.stored.set_result(stored)
                batch = []
                if not self._closing:  # what finishes meanwhile joins one batch
                    await asyncio.sleep(WRITE_INTERVAL_S)
        except asyncio.CancelledError:  # shutting down: nobody waits forever for its capture
            for item in [*batch, *self._queue]:
                if item.stored is not None:
                    item.stored.cancel()
            self._queue = []
            raise

    def _write_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> list[bool]:
        """Inflate, encode and insert a batch in one transaction (on the write thread)."""
        rows: list[tuple[str, bytes] | None] = [self._encoded(item) for item in batch]
        if any(row is not None for row in rows):
            self._insert(conn, [row for row in rows if row is not None])
        return [row is not None for row in rows]

    def _encoded(self, item: _Pending) -> tuple[str, bytes] | None:
        capture = item.capture
        if item.encoding.strip() and capture.get("resp_body") is not None:
            try:
                capture["resp_body"] = _decompress(
                    capture["resp_body"], item.encoding, self.budget_bytes
                )
            except (zlib.error, OverflowError) as exc:
                log.info("capture of %s skipped: response decode failed: %s", item.request_id, exc)
                return None
        import cbor2

        if self._compressor is None:
            self._compressor = _new_compressor()
        data = self._compressor.compress(cbor2.dumps(capture))
        if len(data) > self.budget_bytes:
            log.info(
                "capture of %s skipped: %d bytes exceed the budget", item.request_id, len(data)
            )
            return None
        return item.request_id, data

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
        """Store captures within the budget, in one transaction. Runs on the projections' write
        thread only.

        The stored total is kept in memory (counted once, then adjusted), and expiry by age runs
        at most every `EXPIRY_EVERY_MS`: a SUM over the whole table on every insert made
        throughput fall as the table filled.
        """
        now = time.time_ns() // 1_000_000
        try:
            with write_transaction(conn, self._db.path):
                if self._stored is None:
                    self._stored = self._count(conn)
                for request_id, data in rows:
                    old = conn.execute(
                        "SELECT size_bytes FROM captures WHERE request_id = ?", (request_id,)
                    ).fetchone()
                    conn.execute(
                        "INSERT OR REPLACE INTO captures (request_id, created_ms, size_bytes, "
                        "data) VALUES (?, ?, ?, ?)",
                        (request_id, now, len(data), data),
                    )
                    self._stored += len(data) - (old[0] if old else 0)
                if self.max_age_ms is not None and now - self._expired_at_ms >= EXPIRY_EVERY_MS:
                    conn.execute(
                        "DELETE FROM captures WHERE created_ms < ?", (now - self.max_age_ms,)
                    )
                    self._expired_at_ms = now
                    self._stored = self._count(conn)
                if self._stored > self.budget_bytes:
                    self._stored -= self._evict(conn, self._stored - self.budget_bytes)
        except BaseException:
            self._stored = None  # the transaction rolled back: count again next time
            raise

    @staticmethod
    def _count(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(sum(size_bytes), 0) FROM captures").fetchone()[0]

    @staticmethod
    def _evict(conn: sqlite3.Connection, excess: int) -> int:
        """Delete the oldest captures until `excess` bytes are freed; returns the bytes freed."""
        doomed: list[str] = []
        freed = 0
        for request_id, size in conn.execute(
            "SELECT request_id, size_bytes FROM captures ORDER BY created_ms, rowid"
        ):
            if freed >= excess:
                break
            doomed.append(request_id)
            freed += size
        conn.executemany("DELETE FROM captures WHERE request_id = ?", [(r,) for r in doomed])
        return freed

    async def load(self, activity_id: int) -> dict[str, Any] | None:
        """The capture of an activity row in llama-swap's JSON shape, or None."""
        row = await self._db.query(
            lambda conn: conn.execute(
                "SELECT c.data FROM activity a JOIN captures c ON c.request_id = a.request_id "
                "WHERE a.id = ?",
                (activity_id,),
            ).fetchone()
        )
        if row is None:
            return None
        capture = await asyncio.to_thread(decode_capture, bytes(row[0]))
        return capture_json(activity_id, capture)


class CaptureRecorder:
    """One request's capture while it is served; bounded by the store's budget."""

    def __init__(self, store: CaptureStore, request_id: str, path: str) -> None:
        self._store = store
        self.request_id = request_id
        self.path = path
        self._level = capture_level(path)
        self._limit = store.budget_bytes
        self._req_headers: dict[str, str] | None = None
        self._req_body: bytes | None = None
        self._resp_headers: dict[str, str] | None = None
        self._encoding = ""
        self._chunks: list[bytes] = []
        self._size = 0
        self.too_large = False

    def request(self, headers: Mapping[str, str], body: bytes | None) -> None:
        """The request as the upstream received it (body after filters)."""
        if self._level[0]:
            self._req_headers = redact_headers(headers, self._store.secrets)
        if self._level[1] and body is not None:
            if len(body) > self._limit:
                self.too_large = True
            else:
                self._req_body = bytes(body)

    def response_headers(self, headers: Mapping[str, str]) -> None:
        self._encoding = headers.get("Content-Encoding", headers.get("content-encoding", ""))
        if self._level[2]:
            kept = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
            self._resp_headers = redact_headers(kept, self._store.secrets)

    def tap(self, chunk: bytes) -> None:
        """Every response chunk (the forwarder's `tap`); stops keeping past the budget."""
        if not self._level[3] or self.too_large or not chunk:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self.too_large = True
            self._chunks.clear()
            return
        self._chunks.append(bytes(chunk))

    async def finish(self, status: int) -> bool:
        """Store the capture (llama-swap's rules); True when one was stored."""
        built = self.build(status)
        if built is None:
            return False
        return await self._store.save(self.request_id, *built)

    def build(self, status: int) -> tuple[dict[str, Any], str] | None:
        """The capture to store and its response body's encoding (llama-swap's rules), or None
        when none is kept (too large, an empty successful body)."""
        if self.too_large:
            return None
        raw = b"".join(self._chunks)
        self._chunks.clear()
        encoding = ""
        if status == 200:
            if not raw and self._level[3]:
                return None  # an empty body: no capture
            resp_body = raw if self._level[3] else None
            encoding = self._encoding  # inflated (up to the budget) on the write thread
        else:
            resp_body = None  # failed requests never store the response body
        capture = {
            "req_path": self.path,
            "req_headers": self._req_headers,
            "req_body": self._req_body,
            "resp_headers": self._resp_headers,
            "resp_body": resp_body,
        }
        return capture, encoding

    def finish_later(self, status: int) -> None:
        """`finish` in the background, held by the store until written (`CaptureStore.close`)."""
        self._store.store_later(self, status)


@dataclass(slots=True)
class _Pending:
    """A capture waiting for the next batch write, and the future its recorder awaits."""

    request_id: str
    capture: dict[str, Any]
    encoding: str
    stored: asyncio.Future[bool] | None
    """What `save` awaits; None for a capture handed over by `store_later` (nobody waits)."""


def _fail(batch: list[_Pending], exc: Exception) -> None:
    """A batch could not be written: its waiters get the error, the rest is logged once."""
    unwaited = 0
    for item in batch:
        if item.stored is None:
            unwaited += 1
        elif not item.stored.done():
            item.stored.set_exception(exc)
    if unwaited:
        log.warning("could not store the captures of %d request(s): %s", unwaited, exc)


def _decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """gzip/deflate decoded, at most `limit` bytes out (a larger body raises OverflowError)."""
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return _inflate(raw, 16 + zlib.MAX_WBITS, limit)
    if encoding == "deflate":
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)
        except zlib.error:
            return _inflate(raw, -zlib.MAX_WBITS, limit)
    return raw


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(raw, limit + 1)
    if len(out) > limit:
        raise OverflowError(f"the decoded body exceeds {limit} bytes")
    return out
