"""From events to activity rows: the pure part of the activity projection.

`ActivityFold.step(envelope)` follows each request from `RequestReceived` through `Dispatch` to
`RequestFinished` (or `Reject`) and returns the finished request's row. Its state (requests still
open, models whose swap is under way) is plain JSON, saved with the projection's checkpoint, so a
restart continues exactly where it stopped.

Queue wait is received → dispatched (the last Dispatch: a request taken back by
`DispatchUnreachable` waits on until it is dispatched again). Swap wait is the part of that
wait during which a swap for the request's model was under way: from the model's `SwapPlanned`
(or a `StartProcess` without one) until the model is ready (`ProcessReady`, or its first
`Dispatch`) or its start failed or it went down. Which requests are recorded follows
llama-swap (spec/api.md §14.1): POSTs only, and a scheduler `Reject` is recorded (a 429, a
failed swap) except "model not found".

A request served by a peer is one `PeerRequestFinished` (it never meets the scheduler): its row has
the requested name as `model_id` (llama-swap's §14.2), and no dispatch, queue wait or swap wait.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from llamaswap_es.events.types import (
    Dispatch,
    DispatchUnreachable,
    Envelope,
    PeerRequestFinished,
    ProcessExited,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    StartProcess,
    SwapPlanned,
)

TOKEN_FIELDS = ("cache_tokens", "draft_tokens", "draft_acc_tokens", "input_tokens", "output_tokens")
SPEED_FIELDS = ("prompt_per_second", "tokens_per_second")
UNRECORDED_REJECT_CODES = frozenset({"model_not_found"})

ROW_COLUMNS = (
    "request_id", "seq", "ts_created", "ts_ms", "model_id", "requested_model", "req_path",
    "method", "stream", "resp_content_type", "resp_status_code", *TOKEN_FIELDS, *SPEED_FIELDS,
    "duration_ms", "received_ms", "dispatched_ms", "queue_wait_ms", "swap_wait_ms", "ttfb_ms",
    "bytes_out", "error_msg", "metadata_json", "peer",
)  # fmt: skip
"""The `activity` columns a row fills (everything but the id, which SQLite assigns). `peer`
(migration 0006) names the peer that served a forwarded request, '' for a local one."""


@dataclass(slots=True)
class OpenRequest:
    """A received request not yet finished."""

    model: str
    requested_model: str
    path: str
    method: str
    stream: bool
    metadata: dict[str, str]
    received_ms: int
    dispatched_ms: int | None = None
    swap_wait_ms: int = 0


@dataclass(slots=True)
class ActivityFold:
    """The activity projection's state machine (pure: no I/O, no clock)."""

    requests: dict[str, OpenRequest] = field(default_factory=dict)
    loading: dict[str, int] = field(default_factory=dict)
    """model → when its swap began (ts_ms)."""

    # -- state as JSON, for the checkpoint ----------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "requests": {rid: asdict(req) for rid, req in sorted(self.requests.items())},
            "loading": dict(sorted(self.loading.items())),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ActivityFold:
        requests = {rid: OpenRequest(**data) for rid, data in state.get("requests", {}).items()}
        return cls(requests=requests, loading=dict(state.get("loading", {})))

    # -- the fold -----------------------------------------------------------------------

    def step(self, env: Envelope) -> dict[str, Any] | None:
        """Take one committed envelope; returns the row of a request it ended, if any."""
        body = env.body
        now = env.ts_ms
        if isinstance(body, RequestReceived):
            self.requests[body.request_id] = OpenRequest(
                model=body.model,
                requested_model=body.requested_model,
                path=body.path,
                method=body.method.upper(),
                stream=body.stream,
                metadata=dict(body.metadata),
                received_ms=now,
            )
        elif isinstance(body, SwapPlanned | StartProcess):
            self.loading.setdefault(body.model, now)
        elif isinstance(body, ProcessReady | ProcessStartFailed | ProcessStopped | ProcessExited):
            self._swap_over(body.model, now)
        elif isinstance(body, Dispatch):
            req = self.requests.get(body.request_id)
            if req is not None and req.dispatched_ms is None:
                req.swap_wait_ms += self._overlap(req, now)
                req.dispatched_ms = now
            self._swap_over(body.model, now)
        elif isinstance(body, DispatchUnreachable):
            req = self.requests.get(body.request_id)
            if req is not None:  # back in the queue: it waits on until its next Dispatch
                req.dispatched_ms = None
        elif isinstance(body, RequestFinished):
            return self._finished(env, body)
        elif isinstance(body, PeerRequestFinished):
            return _peer_row(env, body)
        elif isinstance(body, Reject):
            return self._rejected(env, body)
        elif isinstance(body, RequestCancelled | RequestAbandoned):
            self.requests.pop(body.request_id, None)
        return None

    def _overlap(self, req: OpenRequest, now: int) -> int:
        since = self.loading.get(req.model)
        if since is None or req.dispatched_ms is not None:
            return 0
        return max(0, now - max(since, req.received_ms))

    def _swap_over(self, model: str, now: int) -> None:
        if model not in self.loading:
            return
        for req in self.requests.values():
            if req.model == model and req.dispatched_ms is None:
                req.swap_wait_ms += self._overlap(req, now)
        # Waits already counted up to `now`; a request still waiting counts on from here only
        # if another swap begins.
        del self.loading[model]

    def _finished(self, env: Envelope, body: RequestFinished) -> dict[str, Any] | None:
        req = self.requests.pop(body.request_id, None)
        if req is not None and req.method != "POST":
            return None
        metrics = body.metrics or {}
        queue_wait = _queue_wait(req)
        upstream_ms = max(int(metrics.get("duration_ms", 0) or 0), body.duration_ms)
        row = _base_row(env, body.request_id, body.model, req)
        row.update(
            req_path=body.path or (req.path if req else ""),
            resp_content_type=body.content_type,
            resp_status_code=body.status,
            duration_ms=(queue_wait or 0) + upstream_ms,
            queue_wait_ms=queue_wait,
            swap_wait_ms=req.swap_wait_ms if req and req.dispatched_ms is not None else None,
            ttfb_ms=body.ttfb_ms or None,
            bytes_out=body.bytes_out,
            error_msg=body.error or "",
        )
        _copy_usage(row, metrics)
        return row

    def _rejected(self, env: Envelope, body: Reject) -> dict[str, Any] | None:
        req = self.requests.pop(body.request_id, None)
        if req is None or req.method != "POST" or body.code in UNRECORDED_REJECT_CODES:
            return None
        # Time spent waiting for a swap that then failed still counts as swap wait.
        req.swap_wait_ms += self._overlap(req, env.ts_ms)
        row = _base_row(env, body.request_id, req.model, req)
        waited = env.ts_ms - req.received_ms
        row.update(
            req_path=req.path,
            resp_status_code=body.status,
            duration_ms=waited,
            swap_wait_ms=req.swap_wait_ms,
            error_msg=body.message,
        )
        return row


def _peer_row(env: Envelope, body: PeerRequestFinished) -> dict[str, Any] | None:
    if body.method.upper() != "POST":
        return None
    req = OpenRequest(
        model=body.model,
        requested_model=body.model,
        path=body.path,
        method="POST",
        stream=body.stream,
        metadata=dict(body.metadata),
        received_ms=body.received_ms,
    )
    row = _base_row(env, body.request_id, body.model, req)
    metrics = body.metrics or {}
    row.update(
        peer=body.peer,
        req_path=body.path,
        resp_content_type=body.content_type,
        resp_status_code=body.status,
        duration_ms=max(int(metrics.get("duration_ms", 0) or 0), body.duration_ms),
        ttfb_ms=body.ttfb_ms or None,
        bytes_out=body.bytes_out,
        error_msg=body.error or "",
    )
    _copy_usage(row, metrics)
    return row


def _copy_usage(row: dict[str, Any], metrics: dict[str, Any]) -> None:
    for name in TOKEN_FIELDS:
        row[name] = int(metrics.get(name, 0) or 0)
    for name in SPEED_FIELDS:
        row[name] = float(metrics.get(name, 0) or 0)


def _queue_wait(req: OpenRequest | None) -> int | None:
    if req is None or req.dispatched_ms is None:
        return None
    return req.dispatched_ms - req.received_ms


def _base_row(
    env: Envelope, request_id: str, model: str, req: OpenRequest | None
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(
        request_id=request_id,
        seq=env.seq,
        ts_created=env.ts_ms // 1000,
        ts_ms=env.ts_ms,
        model_id=model,
        requested_model=req.requested_model if req else "",
        method=req.method if req else "",
        stream=int(req.stream) if req else 0,
        resp_content_type="",
        bytes_out=0,
        received_ms=req.received_ms if req else None,
        dispatched_ms=req.dispatched_ms if req else None,
        metadata_json=json.dumps(req.metadata, sort_keys=True) if req and req.metadata else "",
        peer="",
        **dict.fromkeys(TOKEN_FIELDS, 0),
        **dict.fromkeys(SPEED_FIELDS, 0.0),
    )
    return row
