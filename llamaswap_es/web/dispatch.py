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

from aiohttp import web

from llamaswap_es.errors import InputRefusedError, LogUnavailableError, StoreOverloadedError
from llamaswap_es.events.types import (
    Dispatch,
    DispatchUnreachable,
    Reject,
    RequestCancelled,
    RequestReceived,
)
from llamaswap_es.projections.inflight import InflightEntry
from llamaswap_es.runtime.loop import LoopStoppedError, RequestTicket
from llamaswap_es.web import request_ids
from llamaswap_es.web.boundary import recordable_event
from llamaswap_es.web.client_address import reported_client_ip
from llamaswap_es.web.context import AppContext
from llamaswap_es.web.errors import error_response, render_error, too_many_requests_response
from llamaswap_es.web.filters import RequestFilters
from llamaswap_es.web.forwarder import ForwardResult, forward, forward_headers
from llamaswap_es.web.loading_stream import LoadingStream
from llamaswap_es.web.request_outcome import RequestOutcome, local_record
from llamaswap_es.web.websocket_tunnel import TunnelEnd, TunnelTimeouts, tunnel

log = logging.getLogger("llamaswap_es.web.dispatch")


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
    websocket: bool = False
    """Tunnel a websocket upgrade instead of forwarding an HTTP request."""
    ttl_override_ms: int | None = None
    """The client's own idle TTL for the model (`ttl` / `keep_alive`, see web/keep_alive.py)."""
    priority: int | None = None
    """The client's own queue priority (`X-Request-Priority`, see web/request_priority.py)."""
    request_id: str | None = None
    """The id to schedule it under (None: a new one). A selector's choice was made under this id
    (web/selector_choice.py): the scheduler hands its reservation over to the request."""

    @property
    def upstream_path(self) -> str:
        """`upstream_path_qs` without its query (or fragment): what the log, metering and captures
        name. Not `urlsplit`, which reads a path starting `//` as a host."""
        return self.upstream_path_qs.partition("?")[0].partition("#")[0]


def local_filters(ctx: AppContext, model_id: str) -> RequestFilters:
    """A local model's filters, built once per loaded config (`AppContext.filters`)."""
    model = ctx.config.models[model_id]
    strip = model.filters.strip_params or model.filters.legacy_strip_params
    return ctx.filters(
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


async def serve_local(
    request: web.Request, ctx: AppContext, job: LocalRequest
) -> web.StreamResponse:
    """Schedule and forward, under one request id from its arrival to its end.

    A client can send its next request in the few milliseconds between a crash of the upstream
    (its stream breaks) and the executor's report of the exit: the scheduler still thinks the
    instance is ready and grants it. When the forward cannot reach the granted instance (the
    grant carries no address, or the connection is refused or reset before any response byte)
    and the body can be sent again, the client has been sent nothing: the handler reports
    `DispatchUnreachable` and waits on the same ticket for the scheduler's next answer, which
    re-queues the same request (one RequestFinished, one activity row). Once: a second failure
    is answered as llama-swap does (503 "process is not ready", or 502).
    """
    loop = ctx.service.door
    assert loop is not None
    request_id = job.request_id or ctx.ids.new_id()
    request_ids.assign(request, request_id, job.model_id)
    path = job.upstream_path
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
    outcome = RequestOutcome(ctx, entry, local_record(request_id, job.model_id, path))
    received = recordable_event(
        RequestReceived(
            request_id=request_id,
            model=job.model_id,
            requested_model=job.requested,
            path=path,
            method=request.method,
            stream=job.stream,
            metadata=dict(job.metadata),
            ttl_override_ms=job.ttl_override_ms,
            priority=job.priority,
        )
    )
    try:
        ticket = loop.submit_request(received)
    except DOOR_REFUSALS as exc:
        outcome.close()
        return refused_response(request, ctx, exc)

    # A body already streamed to the upstream cannot be sent again; a buffered one (or none) can.
    resendable = job.body is not None or not request.can_read_body
    while True:
        granted = await _await_grant(request, ctx, job, ticket, outcome)
        if isinstance(granted, web.StreamResponse):
            return granted
        decision, loading = granted
        if isinstance(decision, Reject):
            outcome.close()
            return await _answer_reject(request, decision, loading, retry_after_s=_retry_after(ctx))
        attempt = await _forward_dispatched(
            request, ctx, job, decision, outcome, loading, may_take_back=resendable and not loading
        )
        if isinstance(attempt, web.StreamResponse):
            return attempt
        resendable = False  # taken back once; a second failure is answered
        ctx.inflight.set_phase(entry, "queued")
        unreachable = DispatchUnreachable(
            request_id=request_id, model=decision.model, instance=decision.instance, error=attempt
        )
        try:
            loop.take_back(ticket, recordable_event(unreachable))
        except LoopStoppedError as exc:
            outcome.close()
            return loop_stopped_response(request, ctx, exc)


async def _await_grant(
    request: web.Request,
    ctx: AppContext,
    job: LocalRequest,
    ticket: RequestTicket,
    outcome: RequestOutcome,
) -> tuple[Dispatch | Reject, LoadingStream | None] | web.StreamResponse:
    """The scheduler's answer on the ticket, with the loading stream it was waited behind (if
    one was started); or the response already due (refused, the loop stopped)."""
    loop = ctx.service.door
    assert loop is not None
    request_id = ticket.request_id
    loading: LoadingStream | None = None
    try:
        decision = await _await_admission(ticket)
        if decision is None and job.loading_allowed and _wants_loading(ctx, job, request):
            loading = LoadingStream(web.StreamResponse(), job.model_id)
            await loading.start(request)
        decision = await _await_decision(ctx, ticket, outcome.entry, loading)
    except asyncio.CancelledError:
        with contextlib.suppress(LoopStoppedError):  # a dead loop records nothing more
            loop.abandon_ticket(ticket, recordable_event(RequestCancelled(request_id=request_id)))
        if loading is not None:
            await loading.stop()
        outcome.close()
        raise
    except LoopStoppedError as exc:
        if loading is None:
            outcome.close()
            return loop_stopped_response(request, ctx, exc)
        decision = Reject(
            request_id=request_id,
            status=500,
            code="shutting_down",
            message=f"unspecific error: {router_name(ctx)} is shutting down",
        )
    except (InputRefusedError, LogUnavailableError) as exc:
        outcome.close()
        if loading is not None:  # the 200 SSE already went out: the error goes into it
            await loading.stop()
            refused = Reject(
                request_id=request_id, status=exc_status(exc), code="refused", message=str(exc)
            )
            return await _answer_reject(request, refused, loading)
        if isinstance(exc, LogUnavailableError):
            return log_unavailable_response(request, exc)
        return error_response(request, exc.status, str(exc))
    if loading is not None:
        await loading.stop()
    return decision, loading


async def _await_admission(ticket: RequestTicket) -> Dispatch | Reject | None:
    """Wait until the scheduler has taken the request in; the decision if it already came."""
    if not ticket.decision.done() and not ticket.admitted.is_set():
        await ticket.admitted.wait()  # also set by the first decision (`RunLoop.submit_request`)
    return ticket.decision.result() if ticket.decision.done() else None


async def _await_decision(
    ctx: AppContext, ticket: RequestTicket, entry: InflightEntry, loading: LoadingStream | None
) -> Dispatch | Reject:
    """The decision; meanwhile the loading stream and the in-flight entry follow the request's
    place in the queue, told by the run loop in the commit that moves it (`on_change`)."""
    if ticket.decision.done():
        return ticket.decision.result()

    def follow(moved: RequestTicket) -> None:
        if loading is not None and moved.position is not None:
            loading.set_position(moved.position)
        phase = {"queued": "queued", "waiting": "loading"}.get(moved.phase or "", entry.phase)
        ctx.inflight.set_phase(entry, phase, moved.position)

    ticket.on_change = follow
    if ticket.phase is not None:  # placed by a commit before this handler got here
        follow(ticket)
    try:  # shielded: a cancelled handler must not cancel the answer the loop may be setting
        return await asyncio.shield(ticket.decision)
    finally:
        ticket.on_change = None


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
OWN_ERROR_CODES = frozenset({QUEUE_TIMEOUT_CODE, START_BACKOFF_CODE, "does_not_fit"})
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
    outcome: RequestOutcome,
    loading: LoadingStream | None,
    *,
    may_take_back: bool,
) -> web.StreamResponse | str:
    """Forward to the address the grant carries; the response, or (when `may_take_back`) why
    the instance could not be reached before anything was sent to the client."""
    address = dispatch.address
    if not address:  # a grant from a log whose ready report carried no address
        message = f"[{job.model_id}] process is not ready"
        if may_take_back:
            return f"{message}: instance {dispatch.instance} reported no address"
        outcome.finish(
            ForwardResult(status=503, bytes_out=0, duration_ms=0, ttfb_ms=None, error=message)
        )
        if loading is not None:
            reject = Reject(request_id="", status=503, code="not_ready", message=message)
            return await _answer_reject(request, reject, loading)
        return error_response(request, 503, message)
    ctx.inflight.set_phase(outcome.entry, "running")
    path = job.upstream_path
    if request.method == "POST":
        outcome.keep_capture(dispatch.request_id, path, request.headers, job.body)

    unreachable: str | None = None

    def finished(result: ForwardResult) -> None:
        nonlocal unreachable
        if outcome.recorded or unreachable is not None:
            return
        if may_take_back and result.unreachable:
            # The instance died in the instant before the forward (its exit not reported yet),
            # or closed the connection: refused or reset, and the client has been sent nothing.
            unreachable = f"[{job.model_id}] {result.error or 'upstream unreachable'}"
            return
        outcome.finish(result)

    headers = None
    if job.body is not None:
        headers = forward_headers(request.headers, client_ip=None, body_replaced=True)
        if request.method == "POST" and "Accept-Encoding" in headers:
            headers["Accept-Encoding"] = meterable_encodings(headers["Accept-Encoding"])

    hung = ctx.hung.watch(job.model_id, dispatch.instance)  # ends it if declared hung
    try:
        if job.websocket:  # ended with an error naming the model if the upstream goes silent
            end = TunnelEnd()
            try:
                return await tunnel(
                    request, ctx.session, address, job.upstream_path_qs, model=job.model_id,
                    timeouts=TunnelTimeouts.from_settings(ctx.config.llamaswap_es.hang_detection),
                    abort=hung, end=end,
                )  # fmt: skip
            finally:
                finished(end.result())
        forwarded = await forward(
            request,
            ctx.session,
            address,
            path_qs=job.upstream_path_qs,
            body=job.body,
            headers=headers,
            response=loading.response if loading is not None else None,
            metered_path=path,
            on_finished=finished,
            tap=outcome.tap,
            abort=hung,
        )
    finally:
        ctx.hung.release(job.model_id, dispatch.instance, hung)
        if unreachable is None:  # every dispatch ends exactly once in the log
            outcome.finish_unreported()
    if unreachable is not None:
        return unreachable
    return forwarded.response


def meterable_encodings(accept_encoding: str) -> str:
    """Keep only gzip/deflate (with their q-values) so a metered response stays parseable, as
    llama-swap does on metered POSTs; the result may be empty."""
    kept = [
        item.strip()
        for item in accept_encoding.split(",")
        if item.split(";")[0].strip().lower() in ("gzip", "deflate")
    ]
    return ", ".join(kept)


def router_name(ctx: AppContext) -> str:
    """The router's name in llama-swap's shutdown message ("group" or "matrix")."""
    return "matrix" if ctx.service.schedule.planner.kind == "matrix" else "group"


def exc_status(exc: InputRefusedError | LogUnavailableError) -> int:
    """The HTTP status of a request refused by the loop (400/500 refused input, 503 log)."""
    return exc.status if isinstance(exc, InputRefusedError) else 503


DOOR_REFUSALS = (LogUnavailableError, StoreOverloadedError, LoopStoppedError)
"""What the scheduler's door raises while it takes no new client work (see `refused_response`)."""


def refused_response(
    request: web.BaseRequest,
    ctx: AppContext,
    exc: LogUnavailableError | StoreOverloadedError | LoopStoppedError,
) -> web.Response:
    """The answer to new work the door refused: the log unwritable, the inbox full, the loop
    stopped (one place for local, selector and peer requests)."""
    if isinstance(exc, LogUnavailableError):
        return log_unavailable_response(request, exc)
    if isinstance(exc, StoreOverloadedError):
        return error_response(request, 503, f"server overloaded: {exc}")
    return loop_stopped_response(request, ctx, exc)


def log_unavailable_response(request: web.BaseRequest, exc: LogUnavailableError) -> web.Response:
    """503 + Retry-After while the event log cannot be written (the message names the cause)."""
    return error_response(request, 503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


def loop_stopped_response(
    request: web.BaseRequest, ctx: AppContext, exc: LoopStoppedError
) -> web.Response:
    """llama-swap's 500 while shutting down; 503 with the reason once the scheduler has failed
    (the server is exiting for its supervisor to restart it)."""
    loop = ctx.service.door
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
