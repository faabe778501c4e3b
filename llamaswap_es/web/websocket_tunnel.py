"""Websocket upgrades through the proxy (spec/api.md §6.9, §6.13): 101, then frames both ways.

A websocket request to a model is scheduled like any request (it can start the model) unless the
model has `compat.ignoreWebsockets`, in which case it bypasses the scheduler and is served only
while the model is ready. Either way the tunnel copies frames until one side closes.

An upstream that hangs must not leave its client waiting, nor close it without a word
(ARCHITECTURE §11.6). So the upgrade must be answered within `handshake_s` (else the client gets
a 504 naming the model), the upstream is pinged while the tunnel is quiet and must answer within
`pong_within_s` (else the client gets close code 1011), an upstream that drops its connection
without a close frame closes the client with 1014, and a model declared hung by its health
probes (`abort`) closes its tunnels with 1011. Each reason names the model; the same error is
logged and recorded (`TunnelEnd`, the request's `RequestFinished`). An upstream's own close code
and reason are passed on to the client as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from yarl import URL

from llamaswap_es.config.models import HangDetectionSettings
from llamaswap_es.redaction import redact_text
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.forwarder import ForwardAbort, ForwardResult

log = logging.getLogger("llamaswap_es.web.websocket_tunnel")

TUNNEL_HEADERS = ("Authorization", "Cookie", "Origin", "User-Agent", "X-Api-Key")
MAX_REASON_BYTES = 123
"""RFC 6455 §5.5: a close frame's payload is at most 125 bytes, 2 of them the code."""
NORMAL_CLOSES = (WSCloseCode.OK, WSCloseCode.GOING_AWAY)
_NOT_SENDABLE = (1005, 1006, 1015)
"""Codes that report a close but may never be sent in a frame (RFC 6455 §7.4.1)."""


def _sendable(code: int) -> bool:
    """A close code a close frame may carry: 1000-4999 but for the reserved ones."""
    return 1000 <= code <= 4999 and code not in _NOT_SENDABLE


@dataclass(frozen=True)
class TunnelTimeouts:
    """How long an upstream may stay silent: its upgrade answer, and a pong while quiet (it is
    pinged every 2 * `pong_within_s` while no frame comes). None: wait for ever."""

    handshake_s: float | None = 30.0
    pong_within_s: float | None = None

    @classmethod
    def from_settings(cls, settings: HangDetectionSettings) -> TunnelTimeouts:
        """`hangDetection`'s silence, for websockets: `probeTimeoutMs` for the upgrade answer
        and each pong (hang detection off: the upgrade still gets 30 s, no pings)."""
        if not settings.enabled:
            return cls()
        silence_s = settings.probe_timeout_ms / 1000
        return cls(handshake_s=silence_s, pong_within_s=silence_s)


@dataclass
class TunnelEnd:
    """How the tunnel ended, for the request's record: 101 (upgraded) or the HTTP error, and
    the error (None when a side closed normally)."""

    status: int = 101
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def result(self) -> ForwardResult:
        duration_ms = int((time.monotonic() - self.started) * 1000)
        return ForwardResult(
            status=self.status, bytes_out=0, duration_ms=duration_ms, ttfb_ms=None, error=self.error
        )


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    """`Connection` has an `upgrade` token and `Upgrade` a `websocket` one (any case, lists)."""

    def tokens(name: str) -> set[str]:
        return {
            t.strip().lower()
            for value in request.headers.getall(name, [])
            for t in value.split(",")
        }

    return "upgrade" in tokens("Connection") and "websocket" in tokens("Upgrade")


async def tunnel(
    request: web.Request,
    session: aiohttp.ClientSession,
    upstream_base: str,
    path_qs: str,
    *,
    model: str,
    timeouts: TunnelTimeouts = TunnelTimeouts(),
    abort: asyncio.Future[ForwardAbort] | None = None,
    end: TunnelEnd | None = None,
) -> web.StreamResponse:
    """Open the upstream websocket first (a refusal becomes a 502, silence a 504), then accept
    the client's and copy frames until a side closes, the upstream goes silent or `abort`
    resolves (the model was declared hung). `end` is filled in with how it ended."""
    end = end if end is not None else TunnelEnd()
    url = URL(upstream_base.rstrip("/").replace("http", "ws", 1) + path_qs, encoded=True)
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    headers = {h: request.headers[h] for h in TUNNEL_HEADERS if h in request.headers}
    pong_s = timeouts.pong_within_s
    try:
        async with asyncio.timeout(timeouts.handshake_s):
            upstream = await session.ws_connect(
                url,
                protocols=protocols,
                headers=headers,
                autoping=True,
                heartbeat=2 * pong_s if pong_s else None,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeouts.handshake_s or 30.0),
            )
    except TimeoutError:
        why = f"did not answer the websocket upgrade within {timeouts.handshake_s:g} s"
        return _refused(request, end, 504, f'model "{model}": upstream {url} {why}')
    except aiohttp.ClientError as exc:
        message = f'model "{model}": upstream websocket {url} failed: {exc}'
        return _refused(request, end, 502, message)
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
    try:
        await client.prepare(request)
        code, reason, error = await _copy_until_closed(client, upstream, model, pong_s, abort)
        if error is not None:
            end.error = error
            log.warning("[%s] %s", model, redact_text(error))
        if not client.closed:
            with contextlib.suppress(Exception):
                await client.close(code=code, message=_reason_bytes(reason))
    finally:
        with contextlib.suppress(Exception):
            await upstream.close()
        with contextlib.suppress(Exception):
            await client.close()
    return client


def _refused(request: web.Request, end: TunnelEnd, status: int, message: str) -> web.Response:
    message = redact_text(message)  # the URL carries the client's query (it may hold a key)
    end.status, end.error = status, message
    log.warning("%s", message)
    return error_response(request, status, message)


async def _copy_until_closed(
    client: web.WebSocketResponse,
    upstream: aiohttp.ClientWebSocketResponse,
    model: str,
    pong_s: float | None,
    abort: asyncio.Future[ForwardAbort] | None,
) -> tuple[int, str, str | None]:
    """Copy frames both ways until one side ends; (close code, reason) for the client, and the
    error to record (None for a normal close)."""
    from_upstream = asyncio.create_task(_pump(upstream, client))
    from_client = asyncio.create_task(_pump(client, upstream))
    waiting: set[asyncio.Future[Any]] = {from_upstream, from_client}
    if abort is not None:
        waiting.add(abort)
    try:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (from_upstream, from_client):
            task.cancel()
        await asyncio.gather(from_upstream, from_client, return_exceptions=True)
    if abort is not None and abort in done and not abort.cancelled():
        reason = f'model "{model}" stopped responding and was declared hung'
        return WSCloseCode.INTERNAL_ERROR, reason, abort.result().message
    if from_upstream in done and (last := from_upstream.result()) is not None:
        return _upstream_ended(last, upstream, model, pong_s)
    if from_client in done and from_client.result() is None:  # the upstream took no frame
        return _upstream_ended(None, upstream, model, pong_s)
    # The client closed (or left): the upstream is closed in turn, nothing went wrong here.
    return WSCloseCode.OK, "", None


def _upstream_ended(
    last: aiohttp.WSMessage | None,
    upstream: aiohttp.ClientWebSocketResponse,
    model: str,
    pong_s: float | None,
) -> tuple[int, str, str | None]:
    """How the upstream's end is told to the client: its own close passed on as it is, a
    missed pong as 1011, a connection lost without a close frame as 1014."""
    if last is not None and last.type == WSMsgType.CLOSE:
        sent = last.data
        # An empty close frame reads as code 0; 1005/1006/1015 may not be sent (RFC 6455 §7.4)
        code = sent if isinstance(sent, int) and _sendable(sent) else WSCloseCode.OK
        reason = str(last.extra or "")
        error = None
        if code not in NORMAL_CLOSES:
            error = f"the upstream closed the websocket with code {code}: {reason}".rstrip(": ")
        return code, reason, error
    if isinstance(upstream.exception(), aiohttp.ServerTimeoutError):
        reason = f'model "{model}": the upstream stopped answering (no pong within {pong_s:g} s)'
        return WSCloseCode.INTERNAL_ERROR, reason, f"websocket tunnel ended: {reason}"
    reason = f'model "{model}": the upstream closed the connection without a close frame'
    return WSCloseCode.BAD_GATEWAY, reason, f"websocket tunnel ended: {reason}"


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    target: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> aiohttp.WSMessage | None:
    """Copy data frames from `source` to `target`; returns the message that ended `source`
    (None when sending to `target` failed: that side is gone)."""
    while True:
        try:
            message = await source.receive()
        except (aiohttp.ClientError, RuntimeError, ConnectionError) as exc:
            return aiohttp.WSMessage(WSMsgType.ERROR, exc, None)
        try:
            if message.type == WSMsgType.TEXT:
                await target.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await target.send_bytes(message.data)
            else:
                return message
        except ConnectionError:
            return None


def _reason_bytes(reason: str) -> bytes:
    """`reason` in UTF-8, cut (on a character) to what a close frame can carry."""
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return data
    return data[: MAX_REASON_BYTES - 3].decode(errors="ignore").encode() + "…".encode()
