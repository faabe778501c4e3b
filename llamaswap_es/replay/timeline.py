"""`replay timeline`: requests, decisions and process transitions of a window, one line each.

Each line carries the local time, the seq and a sentence; the waits a user looks for are computed
from the log itself: queue wait at dispatch (dispatch - arrival), load time at ready (ready -
start), stop time at stopped (stopped - stop), request duration at finished (finished -
dispatch). The scan starts at the beginning of the log even for a late window, so a request that
arrived before the window still gets its wait.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from llamaswap_es.events.reader import LogReader
from llamaswap_es.events.types import (
    CancelTimer,
    ConfigApplied,
    Dispatch,
    Envelope,
    InputRefused,
    LoadRequested,
    PeerRequestFinished,
    ProcessAdopted,
    ProcessExited,
    ProcessHung,
    ProcessReady,
    ProcessRecorded,
    ProcessSpawned,
    ProcessStartFailed,
    ProcessStopped,
    QueuePositions,
    Reject,
    RequestAbandoned,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SetTimer,
    StartProcess,
    StopProcess,
    SwapPlanned,
    TimerFired,
    UnloadRequested,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.process_times import ProcessTimes
from llamaswap_es.replay.render import local_time, summary
from llamaswap_es.replay.source import iter_all, log_facts, read_one

CLIENT_REQUEST_ID = "client_request_id"
"""Where the client's own `X-Request-ID` is kept in a request's metadata (web/request_ids.py)."""
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
TIMER_TYPES = (SetTimer, CancelTimer, TimerFired)


def parse_since(text: str) -> int:
    """`90s`, `10m`, `2h`, `1d`, `500ms` → milliseconds; `ReplayError` otherwise."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ReplayError(
            f"--since {text!r}: expected a positive duration such as 90s, 10m, 2h, 1d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class _Context:
    """What earlier rows tell about later ones: arrivals, dispatches, starts and stops."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[int, str]] = {}
        self.dispatched: dict[str, int] = {}
        self.process_times = ProcessTimes()
        self.wanted: set[str] = set()

    def note_request(self, body: RequestReceived, wanted: str) -> None:
        """Remember our id of the request `--request` names (ours or the client's own)."""
        if wanted in (body.request_id, body.metadata.get(CLIENT_REQUEST_ID)):
            self.wanted.add(body.request_id)

    def model_of(self, request_id: str) -> str | None:
        seen = self.received.get(request_id)
        return seen[1] if seen else None


def timeline(
    reader: LogReader,
    *,
    from_seq: int | None = None,
    to_seq: int | None = None,
    since_ms: int | None = None,
    model: str | None = None,
    timers: bool = False,
    request: str | None = None,
) -> Iterator[str]:
    """The lines of the window `from_seq..to_seq`, or of the last `since_ms` of the log.

    `since_ms` counts back from the log's last event (not from now), so an exported log shows
    its own last minutes on any machine. `request` keeps the rows of one request, named by our
    id or by the client's own `X-Request-ID`.
    """
    facts = log_facts(reader)
    if facts.empty:
        return
    lo, hi = facts.window(from_seq, to_seq)
    cutoff = None
    if since_ms is not None:
        last = read_one(reader, facts.last_seq)
        cutoff = (last.ts_ms if last else 0) - since_ms
    ctx = _Context()
    for env in iter_all(reader, facts.first_seq, hi):
        if request is not None and isinstance(env.body, RequestReceived):
            ctx.note_request(env.body, request)
        text = _line(env, ctx)
        shown = env.seq >= lo and (cutoff is None or env.ts_ms >= cutoff)
        if not shown or text is None:
            continue
        if not timers and isinstance(env.body, TIMER_TYPES):
            continue
        if model is not None and not _concerns(env, model, ctx):
            continue
        if request is not None and not _concerns_request(env, ctx):
            continue
        yield f"{local_time(env.ts_ms)}  {env.seq:>8}  {text}"


def _concerns(env: Envelope, model: str, ctx: _Context) -> bool:
    b = env.body
    if isinstance(b, SwapPlanned):
        return b.model == model or model in b.evict
    if isinstance(b, QueuePositions):
        return any(ctx.model_of(rid) == model for rid in b.positions)
    if isinstance(b, UnloadRequested):
        return not b.models or model in b.models
    if isinstance(b, TIMER_TYPES):
        kind, _, rest = b.timer_id.partition(":")
        if kind == "queue":  # a request's queue timeout: queue:<request id>
            return ctx.model_of(rest) == model
        return f":{model}:" in b.timer_id
    own = getattr(b, "model", None)
    if own is not None:
        return own == model
    rid = getattr(b, "request_id", None)
    if rid is not None:
        return ctx.model_of(rid) == model
    return True  # server-wide: boots, configs, shutdowns


def _concerns_request(env: Envelope, ctx: _Context) -> bool:
    b = env.body
    if isinstance(b, QueuePositions):
        return any(rid in ctx.wanted for rid in b.positions)
    if isinstance(b, TIMER_TYPES):
        kind, _, rest = b.timer_id.partition(":")
        return kind == "queue" and rest in ctx.wanted
    rid = getattr(b, "request_id", None)
    if rid is None and isinstance(b, InputRefused):
        rid = b.key
    return rid is not None and rid in ctx.wanted


def _line(env: Envelope, ctx: _Context) -> str | None:
    """The sentence for one row, updating the context (None: not a timeline row)."""
    b = env.body
    ts = env.ts_ms
    if isinstance(b, RequestReceived):
        ctx.received[b.request_id] = (ts, b.model)
        via = (
            f" (asked for {b.requested_model})"
            if b.requested_model and b.requested_model != b.model
            else ""
        )
        path = f" {b.method} {b.path}" if b.path else ""
        stream = " stream" if b.stream else ""
        client = b.metadata.get(CLIENT_REQUEST_ID)
        theirs = f" (client's X-Request-ID {client})" if client else ""
        return f"request {b.request_id}{theirs} for {b.model}{via} received{path}{stream}"
    if isinstance(b, Dispatch):
        ctx.dispatched[b.request_id] = ts
        arrived = ctx.received.get(b.request_id)
        wait = f", queue wait {ts - arrived[0]} ms" if arrived else ""
        return f"request {b.request_id} dispatched to {b.model} (instance {b.instance}){wait}"
    if isinstance(b, Reject):
        arrived = ctx.received.pop(b.request_id, None)
        wait = f" after {ts - arrived[0]} ms" if arrived else ""
        return f"request {b.request_id} rejected {b.status} {b.code}{wait}: {b.message}"
    if isinstance(b, RequestCancelled):
        arrived = ctx.received.get(b.request_id)
        wait = f" after waiting {ts - arrived[0]} ms" if arrived else ""
        return f"request {b.request_id} cancelled by its client{wait} ({b.reason})"
    if isinstance(b, RequestFinished):
        began = ctx.dispatched.pop(b.request_id, None)
        ctx.received.pop(b.request_id, None)
        took = ts - began if began is not None else b.duration_ms
        error = f", error: {b.error}" if b.error else ""
        return (
            f"request {b.request_id} finished on {b.model}: status {b.status} in {took} ms{error}"
        )
    if isinstance(b, PeerRequestFinished):
        error = f", error: {b.error}" if b.error else ""
        what = f"{b.method} {b.path}" if b.path else b.method
        return (
            f"peer request {b.request_id} for {b.model} finished on peer {b.peer}: "
            f"{what} status {b.status} in {b.duration_ms} ms{error}"
        )
    if isinstance(b, RequestAbandoned):
        ctx.dispatched.pop(b.request_id, None)
        ctx.received.pop(b.request_id, None)
        return f"request {b.request_id} abandoned ({b.reason})"
    if isinstance(b, SwapPlanned):
        evict = ", ".join(b.evict) or "nothing"
        who = f" for {b.request_id}" if b.request_id else ""
        return f"swap to {b.model} planned{who}: evict {evict} (rule: {b.rule})"
    took_ms = ctx.process_times.elapsed(b, ts)
    if isinstance(b, StartProcess):
        return f"{b.model} starting (instance {b.instance}{', ' + b.reason if b.reason else ''})"
    if isinstance(b, ProcessSpawned):
        port = f", port {b.port}" if b.port else ""
        if b.port_moved_from is not None:
            port += f" because port {b.port_moved_from} was in use"
        return f"{b.model} spawned (instance {b.instance}, pid {b.pid}{port})"
    if isinstance(b, ProcessReady):
        loading = f" after {took_ms} ms loading" if took_ms is not None else ""
        return f"{b.model} ready (instance {b.instance}){loading}"
    if isinstance(b, ProcessStartFailed):
        after = f" after {took_ms} ms" if took_ms is not None else ""
        return f"{b.model} failed to start (instance {b.instance}){after}: {b.error}"
    if isinstance(b, StopProcess):
        return f"{b.model} stopping (instance {b.instance}, {b.reason}, grace {b.grace_ms} ms)"
    if isinstance(b, ProcessStopped):
        after = f" after {took_ms} ms" if took_ms is not None else ""
        forced = " (killed: the grace ran out)" if b.forced else ""
        return f"{b.model} stopped (instance {b.instance}){after}{forced}"
    if isinstance(b, ProcessExited):
        how = f"code {b.exit_code}, signal {b.signal}"
        return f"{b.model} exited unexpectedly (instance {b.instance}, {how})"
    if isinstance(b, ProcessHung):
        return f"{b.model} hung (instance {b.instance}): {b.error}"
    if isinstance(b, ProcessAdopted):
        return f"{b.model} adopted from the previous run (instance {b.instance}, pid {b.pid})"
    if isinstance(b, ProcessRecorded):
        return (
            f"{b.model} still running (instance {b.instance}, pid {b.pid}): its start re-stated "
            "so that older history can be pruned"
        )
    if isinstance(b, QueuePositions):
        order = sorted(b.positions.items(), key=lambda p: p[1])
        return "queue: " + (", ".join(f"{rid} #{n}" for rid, n in order) or "empty")
    if isinstance(b, ConfigApplied):
        policy = b.schedule.get("policy", "?")
        models = len(b.schedule.get("models", {}))
        return f"configuration applied ({b.reason}, policy {policy}, {models} models)"
    if isinstance(b, LoadRequested):
        return f"load of {b.model} requested ({b.origin})"
    if isinstance(b, SetTimer):
        return f"timer {b.timer_id} set for {local_time(b.at_ms)} ({b.purpose})"
    return summary(env)
