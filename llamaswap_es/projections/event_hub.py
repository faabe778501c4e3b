"""The `/api/events` fan-out: each message encoded once, the same bytes handed to every UI tab.

Messages are framed as llama-swap frames them (spec/api.md §12): `event:message\\ndata:<envelope>
\\n\\n`, where the envelope is `{"type": …, "data": "<payload JSON as a string>"}`.

Why batches: a proxied request publishes about ten messages (its events, in-flight updates, the
access-log line, the activity row). Written one by one, every open tab cost ten task wake-ups and
ten socket writes per request, and 20 tabs raised the server's CPU by a third or more. The hub
therefore collects what is published during `FLUSH_INTERVAL_S`, joins it into one bytes object,
and offers that one object to every connection: one wake-up and one write per tab per batch, a
delay no one watching a page can see.

Why a byte bound: publishing never waits for a reader (the run loop and the log monitors publish).
A tab that stops reading (a suspended laptop, a stalled network) would otherwise hold every message
since it stopped. Each connection may fall `limit_bytes` behind; past that it is dropped (its
connection aborted, one warning logged), and the UI reconnects and gets a fresh initial burst, the
same recovery as after a reload. Nothing is lost silently and the other tabs never wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger("llamaswap_es.projections.event_hub")

FLUSH_INTERVAL_S = 0.05
"""How long published messages wait to be sent together (one batch per tab per interval)."""

BUFFER_LIMIT_BYTES = 4 * 1024 * 1024
"""How far one connection may fall behind before it is dropped, unless the subscriber says
(`llamaswap-es: eventStreamBufferKiB`, the same 4 MiB by default: about 10 s of a busy server's
stream at 100 requests/s)."""


def _payload_json_stdlib(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


try:  # orjson: a frame in ~5 µs instead of ~30 (a busy server publishes ~1,000 a second)
    import orjson

    def _payload_json(payload: Any) -> str:
        try:
            return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson refuses (an int past 64 bits) the stdlib still writes
            return _payload_json_stdlib(payload)

except ImportError:  # pragma: no cover - exercised only where orjson is missing
    _payload_json = _payload_json_stdlib


def frame(message_type: str, payload: Any) -> bytes:
    """One SSE frame in llama-swap's double-encoded shape.

    The envelope is written by hand: `{"type":<json string>,"data":<json string>}` is exactly what
    `json.dumps` of that two-key dict gives, without building the dict.
    """
    data = json.dumps(_payload_json(payload))
    kind = json.dumps(message_type)
    return f'event:message\ndata:{{"type":{kind},"data":{data}}}\n\n'.encode()


class Subscription:
    """One connection's queue of byte batches, bounded in bytes, read by its handler."""

    def __init__(
        self,
        hub: EventHub,
        initial: bytes,
        limit_bytes: int,
        peer: str,
        on_overflow: Callable[[], None] | None,
    ) -> None:
        self._hub = hub
        self._initial = initial
        """The initial burst: sent first and not counted against the limit (it is a bounded
        snapshot, and a tab must be able to start however much log history there is)."""
        self._limit = limit_bytes
        self._peer = peer
        self._on_overflow = on_overflow
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._wake = asyncio.Event()
        self._ended = False
        self.overflowed = False
        """True once this connection fell too far behind and was dropped."""

    @property
    def buffered_bytes(self) -> int:
        """Live bytes offered to this connection and not yet taken by its writer."""
        return self._buffered

    def offer(self, data: bytes) -> None:
        """Queue one batch (the same object every connection gets); never blocks."""
        if self._ended or not data:
            return
        if self._chunks and self._buffered + len(data) > self._limit:
            # a connection that has taken everything always gets the next batch, however big:
            # only one that is behind is dropped (at most the limit plus one batch is held)
            self._overflow(len(data))
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake.set()

    def close(self) -> None:
        """End the stream once what is queued has been read (server shutdown or reload)."""
        self._ended = True
        self._wake.set()

    def _overflow(self, incoming: int) -> None:
        self.overflowed = True
        behind = self._buffered + incoming
        self._chunks.clear()
        self._buffered = 0
        self.close()
        self._hub.unsubscribe(self)
        log.warning(
            "an /api/events client (%s) fell %d bytes behind (limit %d) and was disconnected; "
            "the UI reconnects and reloads its state",
            self._peer,
            behind,
            self._limit,
        )
        if self._on_overflow is not None:
            self._on_overflow()

    async def frames(self) -> AsyncIterator[bytes]:
        """Byte batches (whole frames, one or more each) until the hub closes or the caller
        stops."""
        try:
            if self._initial:
                initial, self._initial = self._initial, b""
                yield initial
            while True:
                if self._chunks:
                    data = self._chunks.popleft() if len(self._chunks) == 1 else self._take_all()
                    self._buffered -= len(data)
                    yield data
                    continue
                if self._ended:
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._hub.unsubscribe(self)

    def _take_all(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class EventHub:
    """Publishers call `publish` (never blocks); each connection reads its `Subscription`."""

    def __init__(self, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._interval = flush_interval_s
        self._subscriptions: dict[Subscription, int] = {}
        """Each connection → how many of `_pending` it must skip (those published before it
        subscribed are already in its initial burst)."""
        self._pending: list[bytes] = []
        self._keyed: dict[str, int] = {}
        """Key of a pending keyed message → its index in `_pending` (see `publish`)."""
        self._joined_at = 0
        """The highest index in `_pending` a connection that subscribed during this batch
        skips from: slots below it are not replaced (that connection would miss the change)."""
        self._flush_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def subscribe(
        self,
        initial: list[bytes] | None = None,
        *,
        limit_bytes: int = BUFFER_LIMIT_BYTES,
        peer: str = "unknown address",
        on_overflow: Callable[[], None] | None = None,
    ) -> Subscription:
        """A new connection: `initial` first, then every message published from now on.

        `on_overflow` is called if the connection falls more than `limit_bytes` behind (the route
        aborts the connection there, which also frees a writer blocked on a client that does not
        read).
        """
        sub = Subscription(self, b"".join(initial or ()), limit_bytes, peer, on_overflow)
        if self._closed:
            sub.close()
        else:
            self._subscriptions[sub] = len(self._pending)
            self._joined_at = len(self._pending)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.pop(sub, None)

    def publish(self, message_type: str, payload: Any, *, key: str | None = None) -> None:
        """Encode once and queue for the next batch (call on the event loop's thread).

        A message with a `key` says the whole current state of one thing (an in-flight
        request's entry, or its removal): a later message with the same key in the same batch
        takes the earlier one's place instead of following it. A request that starts and ends
        within one batch then costs one frame instead of four, and what the UI ends with is
        the same (`bench/run.py uistream`: 4.0 → 2.2 KB of stream per request and tab)."""
        if not self._subscriptions:
            return
        data = frame(message_type, payload)
        if key is not None:
            index = self._keyed.get(key)
            if index is not None and index >= self._joined_at:
                self._pending[index] = data
                return
            self._keyed[key] = len(self._pending)
        self._pending.append(data)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Hand the pending batch to every connection now (the timer calls this)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        pending, self._pending = self._pending, []
        self._keyed.clear()
        self._joined_at = 0
        if not pending:
            return
        batch = b"".join(pending)
        for sub, skip in list(self._subscriptions.items()):
            if skip:
                self._subscriptions[sub] = 0  # before the offer: an overflow removes `sub`
                if skip < len(pending):
                    sub.offer(b"".join(pending[skip:]))
            else:
                sub.offer(batch)

    @property
    def connections(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """Send what is pending, then end every stream (clients reconnect, as after a llama-swap
        reload)."""
        self.flush()
        self._closed = True
        for sub in list(self._subscriptions):
            sub.close()
        self._subscriptions.clear()
