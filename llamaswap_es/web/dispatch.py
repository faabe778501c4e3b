"""Serving one model request: through the scheduler to a local upstream, or straight to a peer.

The handler flow of ARCHITECTURE §6: make a request id, submit `RequestReceived`, wait for the
scheduler's `Dispatch` or `Reject` (showing llama-swap's loading stream meanwhile, when asked
for), forward with streaming, and report `RequestFinished` with what the upstream returned. A
client that leaves before dispatch becomes `RequestCancelled`; one that leaves mid-stream ends the
forward. Nothing here decides anything: the reducer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from llamaswap_es.errors import InputRefusedError, LogUnavailableError, StoreOverloadedError
from llamaswap_es.events.types import (
    Dispatch,
    Event,
    Reject,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
)
from llamaswap_es.projections.captures import CaptureRecorder
from llamaswap_es.projections.inflight import InflightEntry
from llamaswap_es.runtime.loop import LoopStoppedError, RequestTicket, RunLoop
from llamaswap_es.web import request_ids
from llamaswap_es.web.boundary import recordable_event
from llamaswap_es.web.client_address import reported_client_ip
from llamaswap_es.web.context import AppContext
from llamaswap_es.web.errors import error_response, render_error, too_many_requests_response
from llamaswap_es.web.filters import RequestFilters, filters_for
from llamaswap_es.web.forwarder import ForwardResult, forward, forward_headers
from llamaswap_es.web.loading_stream import LoadingStream
from llamaswap_es.web.websocket_tunnel import tunnel

log = logging.getLogger("llamaswap_es.web.dispatch")

PHASE_REFRESH_S = 1.0
"""How often a waiting request's phase (queued / loading) is refreshed for the in-flight view."""


@dataclass
class LocalRequest:
    """A request resolved to a local model, ready to be scheduled."""

    model_id: str
    requested: str
    upstream_path_qs: str
    body: bytes | None
    stream: bool
    loading_allowed: bool
    metadata: dict[str, str] = field(default_factory=dict)
    on_done: Callable[[], None] | None = None
    websocket: bool = False
    """Tunnel a websocket upgrade instead of forwarding an HTTP request."""
    ttl_override_ms: int | None = None
    """The client's own idle TTL for the model (`ttl` / `keep_alive`, see web/keep_alive.py)."""
    priority: int | None = None
    """The client's own queue priority (`X-Request-Priority`, see web/request_priority.py)."""


def local_filters(ctx: AppContext, model_id: str) -> RequestFilters:
    """A local model's filters, built once per loaded config (web/filters.py `filters_for`)."""
    model = ctx.config.models[model_id]
    strip = model.filters.strip_params or model.filters.legacy_strip_params
    return filters_for(
        ctx.config,
        "model:" + model_id,
        lambda: RequestFilters.from_plain(
            use_model_name=model.use_model_name,
            strip_params=strip,
            set_params=model.filters.set_params,
            set_params_by_id=model.filters.set_params_by_id,
        ),
    )


def is_json(request: web.BaseRequest) -> bool:
    return "application/json" in request.headers.get("Content-Type", "")


RETRY_WAIT_S = 5.0
"""How long a retry waits for the scheduler to learn that the dispatched process is gone."""
ALIVE_RETRY_WAIT_S = 0.5
"""The same, when the executor still sees the process running (it may be exiting right now)."""


async def serve_local(
    request: web.Request, ctx: AppContext, job: LocalRequest
) -> web.StreamResponse:
    """Schedule and forward; retried once when the process died between dispatch and forward.

    A client can send its next request in the few milliseconds between a crash of the upstream
    (its stream breaks) and the executor's report of the exit; the scheduler still thinks the
    model is ready and dispatches to the dead instance. Whether the executor already knows (no
    address for that instance) or the dying process refuses or resets the connection before
    answering, the client has been sent nothing: the attempt is recorded (503) and the request
    goes through the scheduler again, which reloads the model. llama-swap answers 503 "process
    is not ready" or 502 there.
    """
    first = await _serve_once(request, ctx, job, may_retry=True)
    if isinstance(first, _Gone):
        executor = ctx.service.executor
        address = executor.address(job.model_id) if executor is not None else None
        still_serving = address is not None and address[0] == first.instance
        await ctx.service.wait_until(
            lambda view: (
                (v := view.model(job.model_id)) is None
                or v.instance != first.instance
                or v.state != "ready"
            ),
            # A process that still runs broke only this connection (a keep-alive connection it
            # had just closed, say): give its exit a moment to show, not the full wait.
            timeout_s=ALIVE_RETRY_WAIT_S if still_serving else RETRY_WAIT_S,
        )
        retried = await _serve_once(request, ctx, job, may_retry=False)
        assert not isinstance(retried, _Gone)
        return retried
    return first


@dataclass(frozen=True, slots=True)
class _Gone:
    """The dispatched instance was gone before anything was forwarded (retry once)."""

    instance: int


async def _serve_once(
    request: web.Request, ctx: AppContext, job: LocalRequest, *, may_retry: bool
) -> web.StreamResponse | _Gone:
    service = ctx.service
    loop = service.loop
    assert loop is not None
    request_id = ctx.ids.new_id()
    request_ids.assign(request, request_id, job.model_id)
    entry = ctx.inflight.begin(
        request_id=request_id,
        model=job.model_id,
        path=request.path,
        method=request.method,
        headers=request.headers,
        remote_ip=reported_client_ip(request),
        cancel=cancel_callback(asyncio.current_task()),
        metadata=job.metadata,
    )
    received = recordable_event(
        RequestReceived(
            request_id=request_id,
            model=job.model_id,
            requested_model=job.requested,
            path=urlsplit(job.upstream_path_qs).path,
            method=request.method,
            stream=job.stream,
            metadata=dict(job.metadata),
            ttl_override_ms=job.ttl_override_ms,
            priority=job.priority,
        )
    )
    try:
        ticket = loop.submit_request(received)
    except LogUnavailableError as exc:
        _done(ctx, entry, job)
        return log_unavailable_response(request, exc)
    except StoreOverloadedError as exc:
        _done(ctx, entry, job)
        return error_response(request, 503, f"server overloaded: {exc}")
    except LoopStoppedError as exc:
        _done(ctx, entry, job)
        return loop_stopped_response(request, ctx, exc)

    loading: LoadingStream | None = None
    try:
        decision = await _await_admission(ticket)
        if decision is None and job.loading_allowed and _wants_loading(ctx, job, request):
            loading = LoadingStream(web.StreamResponse(), job.model_id)
            await loading.start(request)
        decision = await _await_decision(ctx, ticket, entry, loading)
    except asyncio.CancelledError:
        with contextlib.suppress(LoopStoppedError):  # a dead loop records nothing more
            loop.abandon_ticket(ticket, recordable_event(RequestCancelled(request_id=request_id)))
        if loading is not None:
            await loading.stop()
        _done(ctx, entry, job)
        raise
    except LoopStoppedError as exc:
        if loading is None:
            _done(ctx, entry, job)
            return loop_stopped_response(request, ctx, exc)
        decision = Reject(
            request_id=request_id,
            status=500,
            code="shutting_down",
            message=f"unspecific error: {router_name(ctx)} is shutting down",
        )
    except (InputRefusedError, LogUnavailableError) as exc:
        if loading is not None:  # the 200 SSE already went out: the error goes into it
            await loading.stop()
            _done(ctx, entry, job)
            refused = Reject(
                request_id=request_id, status=exc_status(exc), code="refused", message=str(exc)
            )
            return await _answer_reject(request, refused, loading)
        _done(ctx, entry, job)
        if isinstance(exc, LogUnavailableError):
            return log_unavailable_response(request, exc)
        return error_response(request, exc.status, str(exc))
    if loading is not None:
        await loading.stop()

    if isinstance(decision, Reject):
        _done(ctx, entry, job)
        return await _answer_reject(request, decision, loading, retry_after_s=_retry_after(ctx))
    return await _forward_dispatched(
        request, ctx, job, decision, entry, loading, may_retry=may_retry and loading is None
    )


async def _await_admission(ticket: RequestTicket) -> Dispatch | Reject | None:
    """Wait until the scheduler has taken the request in; the decision if it already came."""
    if not ticket.decision.done():
        admitted: asyncio.Future[Any] = asyncio.ensure_future(ticket.admitted.wait())
        try:
            await asyncio.wait({admitted, ticket.decision}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            admitted.cancel()
    return ticket.decision.result() if ticket.decision.done() else None


async def _await_decision(
    ctx: AppContext, ticket: RequestTicket, entry: InflightEntry, loading: LoadingStream | None
) -> Dispatch | Reject:
    while not ticket.decision.done():
        changed: asyncio.Future[Any] = asyncio.ensure_future(ticket.position_changed.wait())
        try:
            await asyncio.wait(
                {changed, ticket.decision},
                timeout=PHASE_REFRESH_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            changed.cancel()
        if ticket.position_changed.is_set():
            ticket.position_changed.clear()
            if loading is not None and ticket.position is not None:
                loading.set_position(ticket.position)
        view = ctx.service.view.request(ticket.request_id)
        if view is not None:
            phase = {"queued": "queued", "waiting": "loading"}.get(view.phase, entry.phase)
            ctx.inflight.set_phase(entry, phase, view.position)
    return ticket.decision.result()


def _wants_loading(ctx: AppContext, job: LocalRequest, request: web.BaseRequest) -> bool:
    """llama-swap's four conditions (spec/api.md §6.11); admission has already passed."""
    if not job.stream or not job.upstream_path_qs.startswith("/v1/chat/completions"):
        return False
    model = ctx.config.models.get(job.model_id)
    if model is None:
        return False
    enabled = model.send_loading_state
    if enabled is None:
        enabled = ctx.config.send_loading_state
    return bool(enabled) and ctx.model_state(job.model_id) != "ready"


async def _answer_reject(
    request: web.Request,
    reject: Reject,
    loading: LoadingStream | None,
    *,
    retry_after_s: int = 1,
) -> web.StreamResponse:
    ours = reject.code if reject.code in OWN_ERROR_CODES else None  # else llama-swap's code
    if loading is not None:  # 200 SSE already went out: append the error raw, as llama-swap does
        accept = request.headers.get("Accept", "")
        body, _ = render_error(accept, reject.status, reject.message, code=ours)
        with contextlib.suppress(ConnectionError):
            await loading.response.write(body)
            await loading.response.write_eof()
        return loading.response
    if reject.status == 429:
        return too_many_requests_response()
    if reject.code == QUEUE_TIMEOUT_CODE:
        headers: dict[str, str] | None = {"Retry-After": str(retry_after_s)}
        return error_response(request, reject.status, reject.message, code=ours, headers=headers)
    headers = retry_headers(reject)
    return error_response(request, reject.status, reject.message, code=ours, headers=headers)


def retry_headers(reject: Reject) -> dict[str, str] | None:
    """What a client (and the openai/anthropic SDKs) should do about a failed start:
    `Retry-After` (whole seconds, rounded up) until the model may be started again, and
    `x-should-retry: false` when the cause will not pass by itself, which both SDKs obey
    instead of retrying a 5xx."""
    headers = {}
    if reject.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, math.ceil(reject.retry_after_ms / 1000)))
    if reject.permanent:
        headers["x-should-retry"] = "false"
    return headers or None


QUEUE_TIMEOUT_CODE = "queue_timeout"
START_BACKOFF_CODE = "start_backoff"
OWN_ERROR_CODES = frozenset({QUEUE_TIMEOUT_CODE, START_BACKOFF_CODE})
"""Reject codes of ours (llama-swap has no such error) that go into the envelope's `code`."""


def _retry_after(ctx: AppContext) -> int:
    """Retry-After for a queue timeout: the configured timeout in whole seconds (at least 1).
    The queue was too long for that long just now; retrying at once would only queue again."""
    return max(1, math.ceil(ctx.service.schedule.queue_timeout_ms / 1000))


async def _forward_dispatched(
    request: web.Request,
    ctx: AppContext,
    job: LocalRequest,
    dispatch: Dispatch,
    entry: InflightEntry,
    loading: LoadingStream | None,
    *,
    may_retry: bool = False,
) -> web.StreamResponse | _Gone:
    loop = ctx.service.loop
    executor = ctx.service.executor
    assert loop is not None and executor is not None
    address = executor.address(job.model_id)
    path = urlsplit(job.upstream_path_qs).path
    if address is None or address[0] != dispatch.instance:
        message = f"[{job.model_id}] process is not ready"
        record(loop, RequestFinished(
            request_id=dispatch.request_id, model=job.model_id, status=503,
            error=message + ("; retried as a new request" if may_retry else ""), path=path,
        ))  # fmt: skip
        if may_retry:
            ctx.inflight.finish(entry)
            return _Gone(dispatch.instance)
        _done(ctx, entry, job)
        if loading is not None:
            return await _answer_reject(
                request,
                Reject(request_id="", status=503, code="not_ready", message=message),
                loading,
            )
        return error_response(request, 503, message)
    ctx.inflight.set_phase(entry, "running")

    recorder = None
    if ctx.projections is not None and request.method == "POST":
        recorder = ctx.projections.captures.recorder(dispatch.request_id, path)
        if recorder is not None:
            recorder.request(request.headers, job.body)

    reported = False
    # A body already streamed to the upstream cannot be sent again; a buffered one (or none) can.
    resendable = may_retry and (job.body is not None or not request.can_read_body)
    gone = False

    def finished(result: ForwardResult) -> None:
        nonlocal reported, gone
        if reported:
            return
        reported = True
        if resendable and result.unreachable:
            # The instance died in the instant before the forward (its exit not reported yet):
            # it refused or reset the connection, and the client has been sent nothing.
            gone = True
            record(loop, RequestFinished(
                request_id=dispatch.request_id, model=job.model_id, status=503,
                error=f"[{job.model_id}] {result.error}; retried as a new request", path=path,
            ))  # fmt: skip
            ctx.inflight.finish(entry)
            return
        if recorder is not None:
            finish_capture(recorder, result)
        record(
            loop,
            RequestFinished(
                request_id=dispatch.request_id,
                model=job.model_id,
                status=result.status,
                duration_ms=result.duration_ms,
                bytes_out=result.bytes_out,
                error=result.error,
                metrics=result.metrics,
                content_type=result.content_type,
                ttfb_ms=result.ttfb_ms or 0,
                path=path,
            ),
        )
        _done(ctx, entry, job)

    headers = None
    if job.body is not None:
        headers = forward_headers(request.headers, client_ip=None, body_replaced=True)
        if request.method == "POST" and "Accept-Encoding" in headers:
            headers["Accept-Encoding"] = meterable_encodings(headers["Accept-Encoding"])

    if job.websocket:
        started = asyncio.get_running_loop().time()
        try:
            return await tunnel(request, ctx.session, address[1], job.upstream_path_qs)
        finally:
            elapsed_ms = int((asyncio.get_running_loop().time() - started) * 1000)
            finished(
                ForwardResult(
                    status=101, bytes_out=0, duration_ms=elapsed_ms, ttfb_ms=None, error=None
                )
            )

    def tap(chunk: bytes) -> None:
        ctx.inflight.add_bytes(entry, len(chunk))
        if recorder is not None:
            recorder.tap(chunk)

    hung = ctx.hung.watch(job.model_id, dispatch.instance)  # ends it if declared hung
    try:
        forwarded = await forward(
            request,
            ctx.session,
            address[1],
            path_qs=job.upstream_path_qs,
            body=job.body,
            headers=headers,
            response=loading.response if loading is not None else None,
            metered_path=path,
            on_finished=finished,
            tap=tap,
            abort=hung,
        )
    finally:
        ctx.hung.release(job.model_id, dispatch.instance, hung)
        # Every dispatch ends exactly once in the log, whatever happened above: otherwise its
        # in-flight slot would never be released and the model could never be evicted.
        if not reported:
            finished(
                ForwardResult(
                    status=499, bytes_out=0, duration_ms=0, ttfb_ms=None,
                    error="the request ended before its forward reported",
                )
            )  # fmt: skip
    if gone:
        return _Gone(dispatch.instance)
    return forwarded.response


_PENDING: set[asyncio.Future[bool]] = set()


def finish_capture(recorder: CaptureRecorder, result: ForwardResult) -> None:
    """Give the recorder the response headers and store the capture in the background: this
    runs in `forward`'s `on_finished`, also when the handler was cancelled (no await there)."""
    recorder.response_headers(result.response_headers)
    _keep(asyncio.ensure_future(recorder.finish(result.status)))


def _keep(future: asyncio.Future[bool]) -> None:
    """Hold a reference to a background capture write until it completes; log a failure."""
    _PENDING.add(future)
    future.add_done_callback(_capture_written)


def _capture_written(future: asyncio.Future[bool]) -> None:
    _PENDING.discard(future)
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("could not store a capture: %s", exc)


def meterable_encodings(accept_encoding: str) -> str:
    """Keep only gzip/deflate (with their q-values) so a metered response stays parseable, as
    llama-swap does on metered POSTs; the result may be empty."""
    kept = [
        item.strip()
        for item in accept_encoding.split(",")
        if item.split(";")[0].strip().lower() in ("gzip", "deflate")
    ]
    return ", ".join(kept)


def _done(ctx: AppContext, entry: InflightEntry, job: LocalRequest) -> None:
    ctx.inflight.finish(entry)
    if job.on_done is not None:
        job.on_done()
        job.on_done = None


def router_name(ctx: AppContext) -> str:
    """The router's name in llama-swap's shutdown message ("group" or "matrix")."""
    return "matrix" if ctx.service.schedule.planner.kind == "matrix" else "group"


def exc_status(exc: InputRefusedError | LogUnavailableError) -> int:
    """The HTTP status of a request refused by the loop (400/500 refused input, 503 log)."""
    return exc.status if isinstance(exc, InputRefusedError) else 503


def record(loop: RunLoop, event: Event) -> None:
    """Submit what a request's end records; once the loop has stopped (the server is exiting
    after a fatal error) nothing more can be recorded, and the handler must still finish."""
    try:
        loop.submit(recordable_event(event))
    except LoopStoppedError:
        log.debug("not recorded, the run loop has stopped: %s", event.type_name)


def log_unavailable_response(request: web.BaseRequest, exc: LogUnavailableError) -> web.Response:
    """503 + Retry-After while the event log cannot be written (the message names the cause)."""
    return error_response(request, 503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


def loop_stopped_response(
    request: web.BaseRequest, ctx: AppContext, exc: LoopStoppedError
) -> web.Response:
    """llama-swap's 500 while shutting down; 503 with the reason once the scheduler has failed
    (the server is exiting for its supervisor to restart it)."""
    loop = ctx.service.loop
    if loop is not None and loop.fatal_error is not None:
        return error_response(
            request,
            503,
            f"{exc}; the server is restarting, retry shortly",
            headers={"Retry-After": "5"},
        )
    return error_response(request, 500, f"unspecific error: {router_name(ctx)} is shutting down")


def cancel_callback(task: asyncio.Task[object] | None) -> Callable[[], object] | None:
    """`POST /api/inflight/{id}/cancel` cancels the handler's task: the request ends as if its
    client had left (RequestCancelled before dispatch, the forward ended after it)."""
    if task is None:
        return None
    return lambda: task.cancel()
