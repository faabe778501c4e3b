"""Every event and decision that goes into the log, and the envelope that carries them.

Facts from outside are *events* (inputs to the reducer); what the reducer concludes are
*decisions* (commands to the executor and answers to waiting requests). Both are frozen
dataclasses, registered by their class name, which is the `type` column of the log. A payload
is the dataclass's fields; `VERSION` is its schema version (old versions are upcast on read by
`llamaswap_es.events.codec`, never rewritten).

Conventions (shared/design/CONVENTIONS.md): times are integer ms since the epoch, durations carry
their unit in the name, ids are strings made in the shell (never in the core). `instance` is the
per-model start counter the reducer assigns in `StartProcess`; every process event carries it,
so a late event from an older instance of the same model can be told apart and ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import Field, dataclass, field
from typing import Any, ClassVar, TypeVar, dataclass_transform


class _Registered:
    """Base of events and decisions: registers each concrete class under its name."""

    __slots__ = ()
    VERSION: ClassVar[int] = 1
    KEY_FIELD: ClassVar[str | None] = None
    """Which field is written to the envelope's indexed `key` column (a model or request id)."""
    IS_DECISION: ClassVar[bool] = False
    DERIVED: ClassVar[bool] = False
    """True for a decision type the reducer no longer makes because its content is derived
    state (read from the committed view instead): the class stays so that old logs decode, and
    `replay verify` skips its recorded rows ("derived, not compared")."""
    REGISTRY: ClassVar[dict[str, type[_Registered]]] = {}
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    """Declared only (every concrete class is a dataclass): tells the type checker that an
    `Event | Decision` works with `dataclasses.fields` and `dataclasses.replace`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and cls.__name__ not in ("Event", "Decision"):
            _Registered.REGISTRY[cls.__name__] = cls

    @property
    def type_name(self) -> str:
        return type(self).__name__

    @property
    def key(self) -> str | None:
        return None if self.KEY_FIELD is None else getattr(self, self.KEY_FIELD)

    def describe(self, elapsed_ms: int | None = None) -> str:
        """This event in one sentence for people: the ONE text of its type, shown by the replay
        timeline, `replay explain` and the UI's Events page (the API sends it as `text`).

        Written next to each type's fields, so a new type brings its own words. `elapsed_ms` is
        what only a reader of the whole log knows (a request's queue wait or run time, a
        process's load or stop time): given, it goes into the sentence; the types it means
        nothing to ignore it. This default names the type and its non-empty fields."""
        parts = [self.type_name]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value not in ("", None, (), [], {}) and value is not False:
                parts.append(f"{f.name}={value}")
        return " ".join(parts)


class Event(_Registered):
    """An input: a fact from outside the reducer."""

    __slots__ = ()


class Decision(_Registered):
    """An output of the reducer: a command or an answer. Logged before it is acted on."""

    __slots__ = ()
    IS_DECISION: ClassVar[bool] = True


def event_class(type_name: str) -> type[_Registered]:
    """The class registered under `type_name`; KeyError names the unknown type."""
    try:
        return _Registered.REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown event type {type_name!r}") from None


def all_event_classes() -> dict[str, type[_Registered]]:
    return dict(_Registered.REGISTRY)


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True)
def _frozen(cls: type[_T]) -> type[_T]:
    """`@dataclass(frozen=True, slots=True, kw_only=True)`, spelled once; `dataclass_transform`
    tells the type checker so, which a plain alias of `dataclass(...)` hides from it."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


CLIENT_REQUEST_ID = "client_request_id"
"""`RequestReceived.metadata` key of the client's own X-Request-ID (when it sent one)."""

# --------------------------------------------------------------------------------------------
# Inputs: the server itself


@_frozen
class ServerStarted(Event):
    """Appended by the store every time a server opens the log."""

    KEY_FIELD = "boot_id"
    boot_id: str
    pid: int
    version: str

    def describe(self, elapsed_ms: int | None = None) -> str:
        return (
            f"the server started (boot {self.boot_id}, pid {self.pid}, llamaswap-es {self.version})"
        )


@_frozen
class ConfigApplied(Event):
    """A configuration came into force (at start-up or by a reload).

    `schedule` is `SchedulerConfig.to_dict()`; the full config is not logged (it may hold keys).
    """

    config_hash: str
    schedule: dict[str, Any]
    sources: tuple[str, ...] = ()
    reason: str = "startup"

    def describe(self, elapsed_ms: int | None = None) -> str:
        policy = self.schedule.get("policy", "?")
        models = len(self.schedule.get("models", {}))
        return f"configuration applied ({self.reason}, policy {policy}, {models} models)"


@_frozen
class ShutdownRequested(Event):
    grace_ms: int | None = None
    reason: str = "signal"

    def describe(self, elapsed_ms: int | None = None) -> str:
        grace = f", grace {self.grace_ms} ms" if self.grace_ms is not None else ""
        return f"shutdown requested ({self.reason}{grace})"


@_frozen
class ProfileActivated(Event):
    """The active profile changed (`PUT /api/profiles/active`): its pins decide which model a
    requested name goes to, so the log says which profile every later request met. None: no
    profile. A new configuration (start-up or reload) ends any profile, as in llama-swap."""

    name: str | None = None
    origin: str = "api"

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"profile {self.name!r} activated" if self.name else "no active profile"


# --------------------------------------------------------------------------------------------
# Inputs: requests


@_frozen
class RequestReceived(Event):
    """A request for a local model (already resolved from alias, selector or profile)."""

    KEY_FIELD = "request_id"
    request_id: str
    model: str
    requested_model: str = ""
    path: str = ""
    method: str = "POST"
    stream: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    """Request metadata the activity history keeps (selector, session id …); never secrets."""
    ttl_override_ms: int | None = None
    """The client's own idle TTL for the model after this request (LM Studio `ttl`, Ollama
    `keep_alive`): None = the configured ttl, `TTL_FOREVER` = never unload, 0 = unload as soon
    as idle. Added after v1 payloads were written; absent means None."""
    priority: int | None = None
    """The client's own queue priority (`X-Request-Priority`), in place of its model's fifo
    priority; None = the model's. Absent in older payloads."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        via = (
            f" (asked for {self.requested_model})"
            if self.requested_model and self.requested_model != self.model
            else ""
        )
        path = f" {self.method} {self.path}" if self.path else ""
        stream = " stream" if self.stream else ""
        client = self.metadata.get(CLIENT_REQUEST_ID)
        theirs = f" (client's X-Request-ID {client})" if client else ""
        return f"request {self.request_id}{theirs} for {self.model}{via} received{path}{stream}"


TTL_FOREVER = -1
"""`RequestReceived.ttl_override_ms` for "keep the model loaded indefinitely"."""


@_frozen
class RequestCancelled(Event):
    """The client left before its request was dispatched."""

    KEY_FIELD = "request_id"
    request_id: str
    reason: str = "client_gone"

    def describe(self, elapsed_ms: int | None = None) -> str:
        wait = f" after waiting {elapsed_ms} ms" if elapsed_ms is not None else ""
        return f"request {self.request_id} cancelled by its client{wait} ({self.reason})"


@_frozen
class RequestFinished(Event):
    """A dispatched request ended (for any reason); frees its in-flight slot.

    `metrics` holds what the upstream reported (tokens, speeds); see projections.activity.
    """

    KEY_FIELD = "request_id"
    request_id: str
    model: str
    status: int
    duration_ms: int = 0
    bytes_out: int = 0
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    content_type: str = ""
    ttfb_ms: int = 0
    """Time from dispatch to the upstream's first response byte."""
    path: str = ""
    """The path forwarded upstream (after `/v` stripping)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        took = self.duration_ms if elapsed_ms is None else elapsed_ms
        error = f", error: {self.error}" if self.error else ""
        return (
            f"request {self.request_id} finished on {self.model}: status {self.status} "
            f"in {took} ms{error}"
        )


@_frozen
class PeerRequestFinished(Event):
    """A request served by a peer (spec/api.md §6.12) ended: a record for the history only.

    Peer requests never pass through the scheduler, so the reducer ignores this event (no state
    change, no decision). One event per request, written when it ends, carries everything the
    activity history, captures and metrics need (llama-swap records peer requests too, §14):
    a crash while a peer request runs leaves nothing open in the log to clean up.
    """

    KEY_FIELD = "request_id"
    request_id: str
    model: str
    """The name the client asked for (after profile pins and selectors): llama-swap's activity
    `model` for a peer request, and the metrics label."""
    peer: str
    """The peer id (`peers.<id>`) that served it."""
    path: str = ""
    """The path forwarded to the peer, below its proxy prefix."""
    method: str = "POST"
    stream: bool = False
    status: int = 0
    received_ms: int = 0
    """When the request arrived (same clock as the envelope's `ts_ms`)."""
    duration_ms: int = 0
    ttfb_ms: int = 0
    bytes_out: int = 0
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    """What the peer's response reported (tokens, speeds), parsed as for local requests."""
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    """Request metadata for the activity history (a selector, a session id); never secrets."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        error = f", error: {self.error}" if self.error else ""
        what = f"{self.method} {self.path}" if self.path else self.method
        return (
            f"peer request {self.request_id} for {self.model} finished on peer {self.peer}: "
            f"{what} status {self.status} in {self.duration_ms} ms{error}"
        )


@_frozen
class DispatchUnreachable(Event):
    """The handler could not reach the instance its request was dispatched to, and the client
    has been sent nothing: the connection was refused or reset before any response byte (or the
    grant carried no address), and the request body can be sent again.

    The reducer takes the request back (same request id: one request from the client's view,
    one `RequestFinished` in the log in the end), releases its in-flight slot on that instance
    and puts it at the head of the queue. The instance itself is *suspect*, not condemned: a
    keep-alive connection the upstream had just closed breaks the same way as a dead process.
    The rule:

    * the first report for the model's current, ready instance marks it suspect and arms a
      timer `suspect:<model>:<instance>` (`SUSPECT_WAIT_MS`); nothing is dispatched to a
      suspect instance;
    * the executor's report decides first if it comes: `ProcessExited` (or a stop, or a hang)
      ends the instance as always, and the re-queued request starts a fresh one;
    * a second report for the same suspect instance (another request) decides it is broken:
      it is stopped (reason "unreachable", its model's unloadTimeout as grace) and the queue
      moves on to a fresh instance once it has stopped;
    * if the timer fires first, the instance is trusted again (it was a connection race) and
      the re-queued request is dispatched to it once more;
    * a report about an instance that is no longer current (or no longer ready) re-queues the
      request and marks nothing; a report whose request is unknown or not dispatched to that
      instance is stale and ignored; while shutting down, or when a reload has removed the
      model, the request is answered 500 as the model's waiters are.

    The handler reports a request at most once: a second failure is answered 503/502 and
    finished as any failed request is.
    """

    KEY_FIELD = "request_id"
    request_id: str
    model: str
    instance: int
    error: str = ""
    """What the forward met, in words ("connection refused" …)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        error = f": {self.error}" if self.error else ""
        return (
            f"request {self.request_id} could not reach {self.model} (instance {self.instance})"
            f"{error}; it goes back to the queue"
        )


@_frozen
class RequestAbandoned(Event):
    """Recovery found a request that was received and never finished (the server died)."""

    KEY_FIELD = "request_id"
    request_id: str
    reason: str = "server_restarted"

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"request {self.request_id} abandoned ({self.reason})"


@_frozen
class SelectorRequested(Event):
    """A client named a selector (spec/api.md §6.5): the reducer picks the target it goes to
    and answers `SelectorChose` (or `Reject`). The request then goes on under the same id as
    one for that target: `RequestReceived` for a local model, a forward for a peer's model."""

    KEY_FIELD = "request_id"
    request_id: str
    selector: str
    path: str = ""
    method: str = "POST"

    def describe(self, elapsed_ms: int | None = None) -> str:
        path = f" {self.method} {self.path}" if self.path else ""
        return f"request {self.request_id} names selector {self.selector}{path}"


@_frozen
class SelectionEnded(Event):
    """The handler is done with a selector's choice that did not become a local request (a
    peer served it, or it was refused before it reached the scheduler): the target's
    reservation ends. A choice that became a `RequestReceived` ends with that request."""

    KEY_FIELD = "request_id"
    request_id: str
    reason: str = "served_by_peer"

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"request {self.request_id} releases its selector reservation ({self.reason})"


# --------------------------------------------------------------------------------------------
# Inputs: processes (reported by the executor)


@_frozen
class ProcessSpawned(Event):
    KEY_FIELD = "model"
    model: str
    instance: int
    pid: int
    pgid: int
    started_at_ms: int
    """The OS's creation time of the process, to tell a live pid from a reused one."""
    port: int | None = None
    argv: tuple[str, ...] = ()
    port_moved_from: int | None = None
    """The port `${PORT}` gave this model, which another program held: it was started on `port`
    instead (runtime/port_choice.py). None when it runs where the config says. Absent in older
    payloads."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        port = f", port {self.port}" if self.port else ""
        if self.port_moved_from is not None:
            port += f" because port {self.port_moved_from} was in use"
        return f"{self.model} spawned (instance {self.instance}, pid {self.pid}{port})"


@_frozen
class ProcessReady(Event):
    KEY_FIELD = "model"
    model: str
    instance: int
    pid: int | None = None
    address: str = ""
    """The base URL requests are forwarded to (`http://127.0.0.1:PORT`, after any port move):
    the reducer keeps it and every `Dispatch` to this instance carries it. "" in older logs."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        took = f" after {elapsed_ms} ms loading" if elapsed_ms is not None else ""
        return f"{self.model} ready (instance {self.instance}){took}"


@_frozen
class ProcessStartFailed(Event):
    """Spawn failed, the process exited while starting, or its health check timed out.

    The executor has already cleaned up the process group when it reports this.
    """

    KEY_FIELD = "model"
    model: str
    instance: int
    error: str
    """llama-swap's text for the failure ("upstream command exited prematurely", "failed to start
    command '…': …", "health check timed out after 2m0s" …)."""
    kind: str = ""
    """What went wrong, one of the `START_*` kinds below; the reducer decides from it whether the
    failure is permanent (the client should not retry). "" in logs written before it existed."""
    exit_code: int | None = None
    signal: int | None = None
    """How the process ended when it exited while starting (`kind` "exited")."""
    output_tail: str = ""
    """The last lines of the model's own output (bounded, see runtime.output_tail): why it
    failed, in its own words ("model file not found")."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        took = f" after {elapsed_ms} ms" if elapsed_ms is not None else ""
        return f"{self.model} failed to start (instance {self.instance}){took}: {self.error}"


START_COMMAND = "command"
"""`ProcessStartFailed.kind`: the command cannot be run as configured (binary not found, not
executable, an unparsable `cmd`, no `proxy`). Permanent: it fails the same way until fixed."""
START_SPAWN = "spawn"
"""The OS refused the spawn for a reason that may pass (out of processes or memory)."""
START_EXITED = "exited"
"""The process exited before it was healthy. Permanent when it happens twice in a row with the
same exit status and output (a missing model file, a bad flag)."""
START_TIMEOUT = "timeout"
"""The health check timed out (a slow load may succeed next time)."""
START_PORT = "port"
"""Its port was held by another process."""
START_INTERNAL = "internal"
"""Our own failure (a bug)."""


@_frozen
class ProcessExited(Event):
    """A ready process exited without being asked to (a crash). Its group is already gone."""

    KEY_FIELD = "model"
    model: str
    instance: int
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    output_tail: str = ""
    """The last lines of its own output before it died (bounded, see runtime.output_tail)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        how = f"code {self.exit_code}, signal {self.signal}"
        return f"{self.model} exited unexpectedly (instance {self.instance}, {how})"


@_frozen
class ProcessStopped(Event):
    """A `StopProcess` finished: the whole process group is gone and reaped."""

    KEY_FIELD = "model"
    model: str
    instance: int
    exit_code: int | None = None
    signal: int | None = None
    forced: bool = False
    """True when the grace ran out and the group was SIGKILLed."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        took = f" after {elapsed_ms} ms" if elapsed_ms is not None else ""
        forced = " (killed: the grace ran out)" if self.forced else ""
        return f"{self.model} stopped (instance {self.instance}){took}{forced}"


@_frozen
class TimerFired(Event):
    KEY_FIELD = "timer_id"
    timer_id: str

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"timer {self.timer_id} fired"


@_frozen
class ProcessHung(Event):
    """A ready process stopped answering: `failures` health probes in a row got no answer.

    Reported once per instance by the executor's hang watch (`runtime.hang_watch`); the process
    is still there, its group untouched. The reducer decides what to do (a stop, reason "hung").
    """

    KEY_FIELD = "model"
    model: str
    instance: int
    failures: int
    error: str
    """What the failed probes met, in words (for the log, the client's error and `explain`)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"{self.model} hung (instance {self.instance}): {self.error}"


# --------------------------------------------------------------------------------------------
# Inputs: GPU memory facts (issue 18: placement by memory)


@_frozen
class GpuMemorySampled(Event):
    """The GPUs' memory as sampled (parallel tuples, one entry per device, by NVML index; MiB).

    Recorded at start-up and then only when a device's free memory moved by more than the
    configured step, to keep the log small. The reducer places models from the newest sample.
    """

    uuids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    total_mb: tuple[int, ...] = ()
    free_mb: tuple[int, ...] = ()

    def describe(self, elapsed_ms: int | None = None) -> str:
        parts = [
            f"GPU{i} {free:,} of {total:,} MiB free"
            for i, (total, free) in enumerate(zip(self.total_mb, self.free_mb, strict=False))
        ]
        return "GPU memory sampled: " + ("; ".join(parts) or "no devices")


FOOTPRINT_SOURCES = ("measured", "declared", "estimated")
"""`FootprintKnown.source`, best first: a later fact of a lower source never replaces a
higher one."""


@_frozen
class FootprintKnown(Event):
    """A model's GPU memory need became known (MiB, all devices together).

    Need per device = ceil(mb / devices) unless `per_device_mb` gives a measured split.
    """

    KEY_FIELD = "model"
    model: str
    source: str
    """"measured" | "declared" | "estimated" (`FOOTPRINT_SOURCES`)."""
    mb: int
    devices: int = 1
    per_device_mb: tuple[int, ...] = ()
    detail: str = ""
    instance: int = 0
    """The instance a measurement was taken of (0 for estimated and declared facts): a
    measurement that arrives once that instance is no longer the model's ready one (a reload
    changed the command meanwhile) is ignored. Absent in older payloads."""
    """How it was found, for people ("weights 3,912 MiB + KV cache 512 MiB at ctx 4096")."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        span = f" on {self.devices} devices" if self.devices != 1 else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.model} needs {self.mb:,} MiB{span} ({self.source}){detail}"


# --------------------------------------------------------------------------------------------
# Inputs: operators (API, UI, hooks)


@_frozen
class UnloadRequested(Event):
    """Stop these models (all of them when `models` is empty)."""

    models: tuple[str, ...] = ()
    grace_ms: int | None = None
    """None means each model's own unloadTimeout."""
    origin: str = "api"

    def describe(self, elapsed_ms: int | None = None) -> str:
        which = ", ".join(self.models) or "all models"
        return f"unload of {which} requested ({self.origin})"


@_frozen
class LoadRequested(Event):
    """Make a model ready without a request (preload hook, UI)."""

    KEY_FIELD = "model"
    model: str
    origin: str = "api"

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"load of {self.model} requested ({self.origin})"


# --------------------------------------------------------------------------------------------
# Inputs: recovery after a crash of the server


@_frozen
class RecoveryStarted(Event):
    previous_boot: str | None = None

    def describe(self, elapsed_ms: int | None = None) -> str:
        previous = self.previous_boot or "none"
        return f"recovery started (previous boot {previous})"


@_frozen
class ProcessAdopted(Event):
    """A process from the previous run is alive, healthy and unchanged: kept as ready."""

    KEY_FIELD = "model"
    model: str
    instance: int
    pid: int
    pgid: int
    port: int | None = None
    started_at_ms: int | None = None
    """The OS's creation time of the process, so a later restart can adopt it again."""
    address: str = ""
    """The base URL requests are forwarded to, as `ProcessReady.address`. "" in older logs."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        return (
            f"{self.model} adopted from the previous run (instance {self.instance}, pid {self.pid})"
        )


@_frozen
class ProcessRecorded(Event):
    """A running process's start facts, stated again so that older history can be pruned.

    Retention (`eventRetentionDays`) may only prune behind the start record of a process that
    is still running, because recovery adopts a live upstream from that record after a crash.
    A model that stays loaded for weeks would hold pruning back for ever; the service appends
    this copy of its newest `ProcessSpawned`/`ProcessAdopted` instead, and the old record may go.
    History only: the reducer ignores it.
    """

    KEY_FIELD = "model"
    model: str
    instance: int
    pid: int
    pgid: int
    port: int | None = None
    started_at_ms: int | None = None

    def describe(self, elapsed_ms: int | None = None) -> str:
        return (
            f"{self.model} still running (instance {self.instance}, pid {self.pid}): its start "
            "re-stated so that older history can be pruned"
        )


START_RECORDS = ("ProcessSpawned", "ProcessAdopted", "ProcessRecorded")
"""The events that record where a running process is (pid, pgid, start time): recovery adopts
from the newest one of an instance, and retention keeps it."""


@_frozen
class OrphanReaped(Event):
    """A process from the previous run was killed instead of adopted."""

    KEY_FIELD = "model"
    model: str | None
    pid: int
    pgid: int | None = None
    reason: str = ""

    def describe(self, elapsed_ms: int | None = None) -> str:
        reason = f": {self.reason}" if self.reason else ""
        model = self.model or "an unknown model"
        return f"orphan process group of {model} reaped (pid {self.pid}){reason}"


@_frozen
class InputRefused(Event):
    """An input the run loop refused alone, recorded in its place (the reducer ignores it).

    `stage` is "encode" (the input could not be written: the request got 400) or "reduce" (the
    scheduler raised on it: a bug; the request got 500). The refused input itself is not in the
    log, so a replay of the log reproduces the state the loop went on from.
    """

    KEY_FIELD = "key"
    input_type: str
    key: str | None = None
    stage: str = "encode"
    error: str = ""

    def describe(self, elapsed_ms: int | None = None) -> str:
        key = f" for {self.key}" if self.key else ""
        return f"input {self.input_type}{key} refused ({self.stage}): {self.error}"


# --------------------------------------------------------------------------------------------
# Decisions


@_frozen
class Dispatch(Decision):
    """Forward this request to this model's current instance, at `address`."""

    KEY_FIELD = "request_id"
    request_id: str
    model: str
    instance: int
    address: str = ""
    """The instance's base URL (from its `ProcessReady`/`ProcessAdopted`): the grant carries the
    way to serve, so the handler asks nobody else where to forward. "" in older logs, and for an
    instance whose ready report carried none (the handler then reports it unreachable)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        wait = f", queue wait {elapsed_ms} ms" if elapsed_ms is not None else ""
        return (
            f"request {self.request_id} dispatched to {self.model} (instance {self.instance}){wait}"
        )


@_frozen
class Reject(Decision):
    """Answer this request with an error (llama-swap's status and message)."""

    KEY_FIELD = "request_id"
    request_id: str
    status: int
    code: str
    """Short machine-readable reason: model_not_found, rate_limited, start_failed, model_unloaded,
    shutting_down, abandoned, queue_timeout, start_backoff …"""
    message: str
    retry_after_ms: int | None = None
    """When trying again may help (ms from now; the HTTP `Retry-After`); None: no hint."""
    permanent: bool = False
    """The cause will not pass by itself (a binary not found, a start that fails the same way
    twice): clients are told not to retry (`x-should-retry: false`)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        wait = f" after {elapsed_ms} ms" if elapsed_ms is not None else ""
        return f"request {self.request_id} rejected {self.status} {self.code}{wait}: {self.message}"


@_frozen
class SwapPlanned(Decision):
    """Why a swap starts: the target, what must stop for it, and what was running.

    The executor ignores it; it is what the timeline and `replay explain` show.
    """

    KEY_FIELD = "model"
    model: str
    evict: tuple[str, ...]
    running: tuple[str, ...] = ()
    request_id: str | None = None
    rule: str = ""

    def describe(self, elapsed_ms: int | None = None) -> str:
        evict = ", ".join(self.evict) or "nothing"
        who = f" for {self.request_id}" if self.request_id else ""
        return f"swap to {self.model} planned{who}: evict {evict} (rule: {self.rule})"


@_frozen
class StartProcess(Decision):
    KEY_FIELD = "model"
    model: str
    instance: int
    reason: str = ""
    devices: tuple[int, ...] = ()
    """The GPUs (NVML indexes) placement chose for it; the executor puts them in the process's
    environment (`CUDA_VISIBLE_DEVICES`) unless the model's own `env` sets it. () = no choice
    (placement off, or the model's footprint is unknown). Absent in older payloads."""
    device_uuids: tuple[str, ...] = ()
    """The same devices' UUIDs from the newest GPU sample (stable across reboots and PCI
    order), when known: what the executor puts in `CUDA_VISIBLE_DEVICES`."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        reason = f", {self.reason}" if self.reason else ""
        gpus = f", on GPU {','.join(map(str, self.devices))}" if self.devices else ""
        return f"{self.model} starting (instance {self.instance}{reason}{gpus})"


@_frozen
class PlacementChosen(Decision):
    """Where a starting model goes by memory, and what had to stop for it to fit.

    `free_mb` is free memory per device as the reducer counted it before evicting (the newest
    sample less the footprints of models still starting); `need_mb` is the need per device.
    The executor ignores it; `replay explain` and the timeline show it.
    """

    KEY_FIELD = "model"
    model: str
    devices: tuple[int, ...]
    need_mb: int
    free_mb: tuple[int, ...] = ()
    evict: tuple[str, ...] = ()
    source: str = ""
    rule: str = ""
    margin_mb: int = 0
    freed_mb: dict[str, int] = field(default_factory=dict)
    """MiB each evicted model gives back on the chosen devices (its footprint there)."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        where = ", ".join(f"GPU{d}" for d in self.devices) or "no device"
        free = ", ".join(
            f"GPU{d} {self.free_mb[d]:,}" for d in self.devices if d < len(self.free_mb)
        )
        text = (
            f"{self.model} placed on {where}: needs {self.need_mb:,} MiB per device "
            f"({self.source or 'unknown'} footprint) + margin {self.margin_mb:,} MiB"
        )
        if free:
            text += f"; free before evicting: {free} MiB"
        if self.evict:
            freed = ", ".join(
                f"{m} (frees {self.freed_mb[m]:,} MiB)" if m in self.freed_mb else m
                for m in self.evict
            )
            text += f"; evict {freed} to fit"
        if self.rule:
            text += f" (rule: {self.rule})"
        return text


@_frozen
class StopProcess(Decision):
    KEY_FIELD = "model"
    model: str
    instance: int
    reason: str
    """evict, unload, ttl, reload, shutdown, hung."""
    grace_ms: int

    def describe(self, elapsed_ms: int | None = None) -> str:
        return (
            f"{self.model} stopping (instance {self.instance}, {self.reason}, "
            f"grace {self.grace_ms} ms)"
        )


@_frozen
class QueuePositions(Decision):
    """The 1-based queue position of every queued request (only the newest value matters).

    Derived, not compared: written by reducers up to core-3 only. Positions are derived state:
    since core-4 the run loop tells waiting requests their position from the committed
    `SchedulerView` (`RequestView.position`), so the log no longer carries ~2 of these per
    queued request. Kept so that old logs decode; timeline and explain still show old rows, and
    `replay verify` skips them (`DERIVED`)."""

    DERIVED: ClassVar[bool] = True
    positions: dict[str, int] = field(default_factory=dict)

    def describe(self, elapsed_ms: int | None = None) -> str:
        order = sorted(self.positions.items(), key=lambda p: p[1])
        return "queue: " + (", ".join(f"{rid} #{n}" for rid, n in order) or "empty")


@_frozen
class SetTimer(Decision):
    KEY_FIELD = "timer_id"
    timer_id: str
    at_ms: int
    purpose: str = ""

    def describe(self, elapsed_ms: int | None = None) -> str:
        purpose = f" ({self.purpose})" if self.purpose else ""
        return f"timer {self.timer_id} set{purpose}"


@_frozen
class CancelTimer(Decision):
    KEY_FIELD = "timer_id"
    timer_id: str

    def describe(self, elapsed_ms: int | None = None) -> str:
        return f"timer {self.timer_id} cancelled"


@_frozen
class SelectorChose(Decision):
    """Which target a selector's request goes to, and by which rule (`core.selectors`).

    `model` is the local model the target runs ("" for a peer's model). The handler rewrites the
    request to `target` (whose filters apply) and serves it as a request for that target; the
    target holds a reservation until the request ends."""

    KEY_FIELD = "request_id"
    request_id: str
    selector: str
    target: str
    model: str = ""
    rule: str = ""
    """Short machine-readable rule: pin, warm-ready, warm-starting, warm-first, spillover-idle,
    spillover-below, spillover-cold, spillover-least-busy."""
    reason: str = ""
    """The rule in words, with the figures it compared."""

    def describe(self, elapsed_ms: int | None = None) -> str:
        where = "" if self.model in ("", self.target) else f" (model {self.model})"
        why = f": {self.reason}" if self.reason else ""
        return (
            f"selector {self.selector} chose {self.target}{where} for request "
            f"{self.request_id}{why}"
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """One row of the log: an event or a decision with its place and time.

    `seq` is 0 until the store assigns it. `cause` is, for a decision, the seq of the input event
    whose reduction produced it (so replay can compare decisions input by input).
    """

    body: Event | Decision
    ts_ms: int
    boot: str = ""
    seq: int = 0
    cause: int | None = None

    @property
    def type(self) -> str:
        return self.body.type_name

    @property
    def key(self) -> str | None:
        return self.body.key

    @property
    def v(self) -> int:
        return self.body.VERSION
