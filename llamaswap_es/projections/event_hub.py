"""The `/api/events` fan-out: every UI connection gets its own bounded queue of messages.

Publishing never blocks the publisher (the run loop, the log monitors): a connection whose queue
is full loses the message, and the loss is counted so the UI can be told to resync. Messages are
framed as llama-swap frames them (spec/api.md §12): `event:message\\ndata:<envelope>\\n\\n`, where
the envelope is `{"type": …, "data": "<payload JSON as a string>"}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("llamaswap_es.projections.event_hub")


def frame(message_type: str, payload: Any) -> bytes:
    """One SSE frame in llama-swap's double-encoded shape."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    envelope = json.dumps({"type": message_type, "data": data}, separators=(",", ":"))
    return f"event:message\ndata:{envelope}\n\n".encode()


class Subscription:
    def __init__(self, hub: EventHub, capacity: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=capacity)
        self.dropped = 0

    def offer(self, data: bytes | None) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self) -> None:
        """End the stream even when the queue is full (the end must never be dropped)."""
        while self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[bytes]:
        """Frames until the hub closes (server shutdown or reload) or the caller stops."""
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, capacity_per_connection: int = 1024) -> None:
        self._capacity = capacity_per_connection
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def subscribe(self, initial: list[bytes] | None = None) -> Subscription:
        sub = Subscription(self, self._capacity)
        for item in initial or []:
            sub.offer(item)
        if self._closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        if sub.dropped:
            log.warning("an /api/events client lost %d messages (it read too slowly)", sub.dropped)

    def publish(self, message_type: str, payload: Any) -> None:
        if not self._subscriptions:
            return
        data = frame(message_type, payload)
        for sub in list(self._subscriptions):
            sub.offer(data)

    @property
    def connections(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """End every stream (clients reconnect, as they do after a llama-swap reload)."""
        self._closed = True
        for sub in list(self._subscriptions):
            sub.close()
        self._subscriptions.clear()
