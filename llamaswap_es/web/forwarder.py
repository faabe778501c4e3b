"""Stream a client request to an upstream and its response back, chunk by chunk.

The reverse proxy of spec/api.md §6.9 with our fixes: every upstream chunk is written to the client
as it arrives (no buffering), a client that leaves ends the upstream request at once (freeing the
model for the next request), and an upstream that dies mid-answer ends the client's response with
an error it can see instead of a hang: an SSE `error` event (raised by the OpenAI and Anthropic
SDKs) or, for other bodies, a cut connection (an incomplete chunked body). A forward can also be
ended from outside (`abort`, an upstream declared hung): the client then gets that error as a
response of its own if nothing was sent yet, else as the same kind of SSE `error` event.

`forward()` returns the response for the handler to return and a `ForwardResult` for the
`RequestFinished` event. The `aiohttp.ClientSession` is shared and owned by the caller; see
`upstream_session()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from llamaswap_es.redaction import redact_text
from llamaswap_es.web.errors import envelope_json, error_response
from llamaswap_es.web.response_meter import ResponseMeter

log = logging.getLogger("llamaswap_es.web.forwarder")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True)
class ForwardTimeouts:
    """Connect bounded (30 s), response headers unbounded: llama-swap's local-model defaults.

    A model may think for minutes before its first byte; peers use `response_header_s=60`.
    """

    connect_s: float | None = 30.0
    response_header_s: float | None = None


@dataclass(frozen=True)
class ForwardAbort:
    """Why a forward is ended from outside, and the error its client gets (status, envelope
    code, message)."""

    status: int
    message: str
    code: str


@dataclass(frozen=True)
class ForwardResult:
    """What happened, for `RequestFinished` and the activity record."""

    status: int
    bytes_out: int
    duration_ms: int
    ttfb_ms: int | None
    """Time from the start of forwarding to the first response body byte; None if none came."""
    error: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    content_type: str = ""
    client_disconnected: bool = False
    response_headers: dict[str, str] = field(default_factory=dict)
    """The headers sent to the client (for captures); empty when no response started."""
    unreachable: bool = False
    """The upstream failed before sending response headers (refused, reset, not HTTP) and
    nothing has been sent to the client yet: the request may be sent again elsewhere."""


@dataclass
class Forwarded:
    """The handler returns `response`; the caller logs `result`."""

    response: web.StreamResponse
    result: ForwardResult


def upstream_session(*, limit_per_host: int = 100) -> aiohttp.ClientSession:
    """A client session fit for forwarding: raw bodies (no decompression), no cookie jar."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=limit_per_host)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def forward_headers(
    headers: Mapping[str, str],
    *,
    client_ip: str | None,
    keep_host: bool = True,
    body_replaced: bool = False,
) -> CIMultiDict[str]:
    """The request headers to send upstream: hop-by-hop dropped, X-Forwarded-For appended."""
    connection_tokens = {
        token.strip().lower()
        for value in _getall(headers, "Connection")
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in connection_tokens:
            continue
        if lowered == "host" and not keep_host:
            continue
        if lowered == "content-length" and body_replaced:
            continue
        out.add(name, value)
    if client_ip:
        previous = out.popall("X-Forwarded-For", [])
        out["X-Forwarded-For"] = ", ".join([*previous, client_ip])
    return out


def _getall(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [value] if value is not None else []


def response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop, plus `X-Accel-Buffering: no` for SSE."""
    connection_tokens = {
        t.strip().lower() for v in upstream.headers.getall("Connection", []) for t in v.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in connection_tokens:
            continue
        out.add(name, value)
    if "text/event-stream" in upstream.headers.get("Content-Type", ""):
        out["X-Accel-Buffering"] = "no"
    return out


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    upstream_url: str,
    *,
    path_qs: str | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    response: web.StreamResponse | None = None,
    timeouts: ForwardTimeouts = ForwardTimeouts(),
    metered_path: str = "",
    keep_host: bool = True,
    add_forwarded_for: bool = True,
    on_finished: Callable[[ForwardResult], None] | None = None,
    tap: Callable[[bytes], None] | None = None,
    abort: asyncio.Future[ForwardAbort] | None = None,
) -> Forwarded:
    """Forward `request` to `upstream_url` (a base such as `http://127.0.0.1:5800`).

    `path_qs` is the raw path and query to request (default: the client's, encoding kept).
    `body` replaces the client body (after filters); None streams the client's body through.
    `headers` replaces the client's headers as the starting point (e.g. keys stripped).
    `response`, when given, is already prepared (a loading stream sent 200 SSE): the upstream
    body is appended to it and its status and headers are lost, as in llama-swap.
    `metered_path` is the path used for `/infill` metric parsing.
    `on_finished` is called once with the result on every way out, including the handler being
    cancelled because the client left, where no value can be returned; use it to submit
    `RequestFinished`. The server must run with `handler_cancellation=True` (web/server.py
    does): that cancellation is how a client that left while the upstream is silent ends the
    upstream request; nothing polls the client's socket.
    `tap`, when given, sees every response body chunk as it is sent (captures); it must not
    block, and if it raises it is logged and not called again (forwarding goes on).
    `abort`, when it resolves first, ends the forward: the upstream request is dropped and the
    client gets the `ForwardAbort`'s error (see the module doc).
    """
    proxy = _Proxy(
        request, session, upstream_url.rstrip("/") + (path_qs or request.raw_path), body,
        headers, response, timeouts, metered_path, keep_host, add_forwarded_for, tap, abort,
    )  # fmt: skip
    return await proxy.run(on_finished)


class _Proxy:
    """One forwarding; split from `forward()` so its steps read top to bottom."""

    def __init__(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        response: web.StreamResponse | None,
        timeouts: ForwardTimeouts,
        metered_path: str,
        keep_host: bool,
        add_forwarded_for: bool,
        tap: Callable[[bytes], None] | None = None,
        abort: asyncio.Future[ForwardAbort] | None = None,
    ):
        self.request = request
        self.session = session
        self.url = url
        self.body = body
        self.headers = forward_headers(
            headers if headers is not None else request.headers,
            client_ip=_client_ip(request) if add_forwarded_for else None,
            keep_host=keep_host,
            body_replaced=body is not None,
        )
        self.response = response
        self.preamble = response is not None
        self.timeouts = timeouts
        self.metered_path = metered_path
        self.started = time.monotonic()
        self.status = 0
        self.bytes_out = 0
        self.first_byte_at: float | None = None
        self.error: str | None = None
        self.complete = False
        self.meter: ResponseMeter | None = None
        self.content_type = ""
        self.tap = tap
        self.unreachable = False
        self.abort = abort
        self.error_code: str | None = None

    async def run(self, on_finished: Callable[[ForwardResult], None] | None) -> Forwarded:
        """Pump until done. A client that leaves is noticed by the server itself: it cancels
        the handler (`handler_cancellation=True`), and with it the pump; no polling task."""
        pump = asyncio.create_task(self._pump())
        stop_pump = _cancel_pump(pump)
        if self.abort is not None:
            self.abort.add_done_callback(stop_pump)
        result: ForwardResult | None = None
        try:
            try:
                await pump
            except asyncio.CancelledError:
                if not self._aborted(pump):
                    raise  # the handler itself was cancelled: the client left
            if self._aborted(pump):
                await self._end_from_outside(self.abort.result())  # type: ignore[union-attr]
            result = self._result(False)
            return Forwarded(self._final_response(), result)
        except Exception as failure:
            self.error = self.error or f"forwarding failed: {failure!r}"
            raise
        finally:
            # Reached on every way out, including the handler being cancelled (the server
            # cancels handlers when the client leaves) at any await above. A client that closes
            # right after the last byte, or after an upstream failure was recorded, did not cut
            # anything short: keep what happened. `on_finished` runs exactly once.
            pump.cancel()
            if self.abort is not None:
                self.abort.remove_done_callback(stop_pump)
            if result is None:
                client_left = not self.complete
                if client_left and self.error is None:
                    self.error = f"client disconnected after {self.bytes_out} bytes"
                result = self._result(client_left)
            if on_finished is not None:
                on_finished(result)

    def _aborted(self, pump: asyncio.Task[None]) -> bool:
        """Whether the forward was ended from outside (`abort` resolved before the pump ended)
        rather than by its own handler being cancelled."""
        current = asyncio.current_task()
        return (
            pump.cancelled()
            and self.abort is not None
            and self.abort.done()
            and not self.abort.cancelled()
            and (current is None or current.cancelling() == 0)
        )

    async def _pump(self) -> None:
        try:
            async with asyncio.timeout(self.timeouts.response_header_s):
                upstream = await self._send()
        except TimeoutError:
            await self._fail_before_response(504, "upstream sent no response headers in time")
            return
        except aiohttp.ClientError as err:
            self.unreachable = self.response is None
            # The URL carries the client's query (it may hold a key): redacted, as it is both
            # answered and recorded in the event log.
            message = redact_text(f"upstream {self.url} unreachable: {err}")
            await self._fail_before_response(502, message)
            return
        async with upstream:
            try:
                await self._relay(upstream)
            except BaseException:
                upstream.close()  # cancelled (client left): stop the generation now
                raise

    async def _send(self) -> aiohttp.ClientResponse:
        data: Any = self.body
        if data is None and self.request.can_read_body:
            data = self.request.content.iter_any()
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.timeouts.connect_s,
            sock_connect=self.timeouts.connect_s,
            sock_read=None,
        )
        return await self.session.request(
            self.request.method,
            URL(self.url, encoded=True),  # the client's percent-encoding goes out untouched
            data=data,
            headers=self.headers,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )

    async def _relay(self, upstream: aiohttp.ClientResponse) -> None:
        self.status = upstream.status
        self.content_type = upstream.headers.get("Content-Type", "")
        self.meter = ResponseMeter(
            upstream.status,
            self.content_type,
            upstream.headers.get("Content-Encoding", ""),
            path=self.metered_path,
        )
        if self.response is None:
            self.response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            self.response.headers.extend(response_headers(upstream))
            await self.response.prepare(self.request)
        response = self.response
        try:
            async for chunk in upstream.content.iter_any():
                if self.first_byte_at is None:
                    self.first_byte_at = time.monotonic()
                await response.write(chunk)
                self.bytes_out += len(chunk)
                self.meter.feed(chunk)
                if self.tap is not None:
                    self._tap(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as err:
            await self._upstream_died(err)
            return
        except ConnectionError:
            self.error = f"client disconnected after {self.bytes_out} bytes"
            upstream.close()
            return
        self.complete = True  # every upstream byte reached the client's socket
        await response.write_eof()

    def _tap(self, chunk: bytes) -> None:
        try:
            self.tap(chunk)  # type: ignore[misc]
        except Exception:
            log.exception(
                "a response tap failed for %s; it is not called again", redact_text(self.url)
            )
            self.tap = None

    async def _upstream_died(self, err: BaseException) -> None:
        self.error = f"upstream connection lost after {self.bytes_out} bytes: {err}"
        assert self.response is not None
        if "text/event-stream" in self.response.headers.get("Content-Type", "") or self.preamble:
            event = sse_error_event(self.error)
            with contextlib.suppress(ConnectionError):
                await self.response.write(event)
                await self.response.write_eof()
            return
        # Not an event stream: cut the connection so the client sees an incomplete body.
        transport = self.request.transport
        if transport is not None:
            transport.close()

    async def _end_from_outside(self, abort: ForwardAbort) -> None:
        """The upstream request is already dropped; tell the client why, as it can read it."""
        self.error = abort.message
        self.error_code = abort.code
        if self.response is None:  # nothing sent yet: an error response of its own
            self.status = abort.status
            return
        if "text/event-stream" in self.response.headers.get("Content-Type", "") or self.preamble:
            event = sse_error_event(abort.message, status=abort.status, code=abort.code)
            with contextlib.suppress(ConnectionError):
                await self.response.write(event)
                await self.response.write_eof()
            return
        transport = self.request.transport  # a plain body half sent: cut it (incomplete body)
        if transport is not None:
            transport.close()

    async def _fail_before_response(self, status: int, message: str) -> None:
        self.status = status
        self.error = message
        if self.response is not None:  # a loading stream already sent 200: append raw
            with contextlib.suppress(ConnectionError):
                await self.response.write(envelope_json(status, message))
                await self.response.write_eof()

    def _final_response(self) -> web.StreamResponse:
        if self.response is not None:
            return self.response
        if self.status:
            return error_response(self.request, self.status, self.error or "", code=self.error_code)
        # The client left before anything was sent: nobody will read this.
        return web.Response(status=499)

    def _result(self, client_left: bool) -> ForwardResult:
        now = time.monotonic()
        wall_ms = int((now - self.started) * 1000)
        metrics: dict[str, Any] = {}
        error = self.error
        if self.meter is not None:
            metrics, meter_error = self.meter.finish(wall_ms)
            error = error or meter_error
        return ForwardResult(
            status=self.status or 499,
            bytes_out=self.bytes_out,
            duration_ms=wall_ms,
            ttfb_ms=None
            if self.first_byte_at is None
            else int((self.first_byte_at - self.started) * 1000),
            error=error,
            metrics=metrics,
            response_headers=dict(self.response.headers) if self.response is not None else {},
            content_type=self.content_type,
            client_disconnected=client_left or (error or "").startswith("client disconnected"),
            unreachable=self.unreachable and not client_left,
        )


def _cancel_pump(pump: asyncio.Task[None]) -> Callable[[asyncio.Future[ForwardAbort]], None]:
    """`abort`'s done-callback: a forward ended from outside stops its pump (an `abort` that
    is cancelled, released after the forward, does nothing)."""

    def cancel(abort: asyncio.Future[ForwardAbort]) -> None:
        if not abort.cancelled():
            pump.cancel()

    return cancel


def sse_error_event(
    message: str, *, status: int = 502, code: str = "upstream_disconnected"
) -> bytes:
    """A last SSE event both SDKs raise as an error (`event: error` with an `error` object)."""
    payload = envelope_json(status, message, code=code)
    return b"event: error\ndata: " + payload + b"\n\n"


def _client_ip(request: web.BaseRequest) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return request.remote
