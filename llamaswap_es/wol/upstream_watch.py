"""Whether the llama-swap server is up, learned from its `/api/events` stream, not a ticker.

The watch holds one `GET /api/events` (SSE) open: the server is *ready* exactly while that stream
is open, and it is known to be gone the moment the stream ends, with no polling of a live server.
While it is down the watch reconnects with a backoff from 0.1 s to 10 s; after a wake-up it
retries at least every second, so a held request is answered about as soon as the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

log = logging.getLogger("llamaswap_es.wol")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 10.0
BACKOFF_MAX_WAKING_S = 1.0
"""The longest pause between reconnects while a wake-up is recent (a server is booting)."""
CONNECT_TIMEOUT_S = 5.0


class UpstreamWatch:
    """Follows `<upstream>/api/events`; owns its task (`start`, `stop`)."""

    def __init__(
        self,
        upstream: str,
        session: aiohttp.ClientSession,
        *,
        api_key: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events_url = upstream.rstrip("/") + "/api/events"
        self._session = session
        self._headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._monotonic = monotonic
        self._ready = asyncio.Event()
        self._hurry = asyncio.Event()
        self._waking_until = 0.0
        self._stream: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        """Connection attempts that failed, and streams that ended, since it was last ready
        (llama-swap's count: it goes back to 0 when the server is reached)."""
        self.last_failure = ""

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="wol-upstream-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_ready(self, timeout_s: float) -> bool:
        """True once the server is ready, False when `timeout_s` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def hurry(self, for_s: float) -> None:
        """A wake-up was sent: reconnect now, and at least every second for `for_s`."""
        self._waking_until = max(self._waking_until, self._monotonic() + for_s)
        self._hurry.set()

    def lost(self, reason: str) -> None:
        """Forwarding found the server unreachable although its stream looked open (a machine
        that suspended without closing it): not ready from now; reconnect at once."""
        self._not_ready(reason)
        if self._stream is not None:
            self._stream.close()
        self._hurry.set()

    async def _follow(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            if await self._hold_stream():
                backoff = BACKOFF_MIN_S
            waking = self._monotonic() < self._waking_until
            pause = min(backoff, BACKOFF_MAX_WAKING_S if waking else BACKOFF_MAX_S)
            if await self._hurried_within(pause):
                backoff = BACKOFF_MIN_S
            else:
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _hurried_within(self, pause_s: float) -> bool:
        try:
            async with asyncio.timeout(pause_s):
                await self._hurry.wait()
        except TimeoutError:
            return False
        self._hurry.clear()
        return True

    async def _hold_stream(self) -> bool:
        """Connect and read the stream until it ends; True if it was open (the server was up)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S, sock_read=None
        )
        try:
            async with self._session.get(
                self.events_url, headers=self._headers, timeout=timeout
            ) as stream:
                if stream.status != 200:
                    self._not_ready(self._refusal(stream.status))
                    return False
                self._stream = stream
                self._now_ready()
                try:
                    async for _ in stream.content.iter_any():
                        pass  # the content does not matter: that it flows does
                    reason = "the event stream ended"
                except (aiohttp.ClientError, OSError) as exc:
                    reason = f"the event stream broke: {exc or type(exc).__name__}"
                if self.ready:  # else `lost()` has said why already
                    self._not_ready(f"{self.events_url}: {reason}")
                return True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._not_ready(f"{self.events_url}: {exc or type(exc).__name__}")
            return False
        finally:
            self._stream = None

    def _refusal(self, status: int) -> str:
        if status in (401, 403):
            return (
                f"{self.events_url} answered {status}: the server has apiKeys; "
                "give wol-proxy one with --api-key or LLAMA_SWAP_API_KEY"
            )
        return f"{self.events_url} answered {status}, not an event stream"

    def _now_ready(self) -> None:
        self.failures = 0
        self.last_failure = ""
        self._ready.set()
        log.info("upstream ready: %s is open", self.events_url)

    def _not_ready(self, reason: str) -> None:
        if self._ready.is_set():
            log.info("upstream not ready: %s", reason)
        else:
            log.debug("upstream still not ready: %s", reason)
        self._ready.clear()
        self.failures += 1
        self.last_failure = reason
