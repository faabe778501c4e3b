"""The scheduler's state: plain mutable records that the reducer owns.

Everything that decides anything lives here and is snapshotted (see `core.snapshot`); the
planner, the policy and the caches are derived from the applied config and rebuilt on restore.
Dict iteration order is never relied on for a decision: whatever the reducer walks in order is
either a list kept in an explicit order (queue, waiters) or sorted on the spot (model ids,
swaps by their creation seq), so a restored state decides exactly like the original.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from llamaswap_es.config.schedule import ModelSchedule, SchedulerConfig
from llamaswap_es.core.memory import Footprint, GpuSample, best_footprint
from llamaswap_es.events.types import Decision

if TYPE_CHECKING:
    from llamaswap_es.core.eviction import EvictionPlan, Planner

# Process states (ARCHITECTURE §5). `failed` is `stopped` after a start that did not succeed.
STOPPED = "stopped"
STARTING = "starting"
READY = "ready"
STOPPING = "stopping"
FAILED = "failed"
PROCESS_STATES = (STOPPED, STARTING, READY, STOPPING, FAILED)
RUNNING_STATES = frozenset((STARTING, READY, STOPPING))
"""States that occupy resources: what llama-swap's running set counts (#677)."""

# Request phases.
QUEUED = "queued"
WAITING = "waiting"
"""Joined an active swap; dispatched (or failed) when it completes."""
DISPATCHED = "dispatched"

# Swap phases.
EVICTING = "evicting"
"""Waiting for the evicted models (and the target, if it was stopping) to be stopped."""
LAUNCHING = "launching"
"""The target was started (or was already starting): waiting for ProcessReady/StartFailed."""


@dataclass(frozen=True, slots=True)
class FailedStarts:
    """A model's run of failed starts in a row (ours, see `core.start_backoff`).

    Kept until a start succeeds, the model's config changes, or an operator loads or unloads it.
    """

    count: int
    """Failed starts in a row."""
    detail: str
    """The last failure as the client is told it: llama-swap's text, the exit status and the
    tail of the model's own output."""
    kind: str
    """The last failure's `ProcessStartFailed.kind`."""
    permanent: bool
    """It will not pass by itself: clients are told not to retry."""
    retry_at_ms: int
    """No new start before this time (the end of the backoff window)."""
    instance: int
    """The instance whose start failed last (its waiters get this failure's retry hints)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FailedStarts:
        return cls(**data)


class ModelProc:
    """One model's process as the reducer knows it, with its request accounting."""

    __slots__ = (
        "address",
        "devices",
        "failed_starts",
        "in_flight",
        "instance",
        "last_used_ms",
        "model",
        "ready_at_ms",
        "reserved",
        "retired",
        "schedule",
        "state",
        "stop_reason",
        "suspect_instance",
        "ttl_override_ms",
    )

    def __init__(self, schedule: ModelSchedule) -> None:
        self.model = schedule.model_id
        self.schedule = schedule
        self.state = STOPPED
        self.instance = 0
        """The current (latest) instance; process events for another instance are stale."""
        self.ready_at_ms = 0
        self.last_used_ms = 0
        """When the idle clock (TTL) last restarted: at ready, and at every finished request."""
        self.in_flight = 0
        self.reserved = 0
        """Admitted and not yet ended: queued + swap waiters + in flight (llama-swap's reserved)."""
        self.retired = False
        """Removed from the config by a reload; kept until its process and requests are gone."""
        self.ttl_override_ms: int | None = None
        """The idle TTL the last finished request asked for (None: the configured one; see
        `effects.idle_ttl_ms`). Reset when the process becomes ready."""
        self.stop_reason = ""
        """Why the last stop was issued (StopProcess.reason; an unload overrides a TTL stop
        under way). Read when that stop completes: only a TTL stop loads the idle model."""
        self.failed_starts: FailedStarts | None = None
        """Its failed starts in a row, and the backoff they earned; None after a success."""
        self.devices: tuple[int, ...] = ()
        """The GPUs its current instance was started on (`StartProcess.devices`; () when
        placement did not choose). It holds them while starting, ready or stopping."""
        self.address = ""
        """The current instance's base URL, from its ProcessReady/ProcessAdopted ("" if none was
        reported): every Dispatch carries it."""
        self.suspect_instance = 0
        """The instance a DispatchUnreachable made suspect (0: none). Only meaningful while it is
        the current, ready instance: nothing is dispatched to it until it is cleared (see
        `DispatchUnreachable` for the rule)."""

    @property
    def suspect(self) -> bool:
        """Whether the current, ready instance is suspect: requests for it wait in the queue."""
        return self.suspect_instance == self.instance and self.state == READY

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "schedule": self.schedule.to_dict(),
            "state": self.state,
            "instance": self.instance,
            "ready_at_ms": self.ready_at_ms,
            "last_used_ms": self.last_used_ms,
            "in_flight": self.in_flight,
            "reserved": self.reserved,
            "retired": self.retired,
            "ttl_override_ms": self.ttl_override_ms,
            "stop_reason": self.stop_reason,
            "failed_starts": None if self.failed_starts is None else self.failed_starts.to_dict(),
            "address": self.address,
            "suspect_instance": self.suspect_instance,
            "devices": list(self.devices),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelProc:
        proc = cls(ModelSchedule.from_dict(data["schedule"]))
        for name in ("state", "instance", "ready_at_ms", "last_used_ms", "in_flight", "reserved"):
            setattr(proc, name, data[name])
        proc.retired = data["retired"]
        proc.ttl_override_ms = data["ttl_override_ms"]
        proc.stop_reason = data.get("stop_reason", "")  # absent in snapshots before idleModel
        failed = data.get("failed_starts")
        proc.failed_starts = None if failed is None else FailedStarts.from_dict(failed)
        proc.address = data.get("address", "")  # absent in snapshots before the grant carried it
        proc.suspect_instance = data.get("suspect_instance", 0)
        proc.devices = tuple(data.get("devices", ()))  # absent before placement (core-4)
        return proc


class Request:
    """An admitted request (or a load without a client) until it ends."""

    __slots__ = (
        "arrival",
        "instance",
        "is_load",
        "model",
        "phase",
        "priority",
        "received_ms",
        "request_id",
        "selector",
        "target",
        "ttl_override_ms",
    )

    def __init__(
        self,
        request_id: str,
        model: str,
        arrival: int,
        received_ms: int,
        priority: int,
        is_load: bool = False,
        ttl_override_ms: int | None = None,
    ) -> None:
        self.request_id = request_id
        self.model = model
        self.arrival = arrival
        """The seq of the event that admitted it: arrival order for every tie."""
        self.received_ms = received_ms
        self.priority = priority
        self.is_load = is_load
        self.ttl_override_ms = ttl_override_ms
        """The client's idle TTL for the model once this request finishes (None: configured)."""
        self.phase = QUEUED
        self.instance = 0
        """The model instance it was dispatched to (0 until then). A request taken back into
        the queue (`DispatchUnreachable`) keeps the instance it could not reach."""
        self.selector = ""
        """The selector that chose this request's model ("" if the client named the model): the
        request holds a reservation on `target` of that selector until it ends."""
        self.target = ""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "request_id": self.request_id,
            "model": self.model,
            "arrival": self.arrival,
            "received_ms": self.received_ms,
            "priority": self.priority,
            "is_load": self.is_load,
            "ttl_override_ms": self.ttl_override_ms,
            "phase": self.phase,
            "instance": self.instance,
        }
        if self.selector:  # absent for the others: their snapshots encode as before
            data["selector"] = self.selector
            data["target"] = self.target
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        req = cls(
            data["request_id"],
            data["model"],
            data["arrival"],
            data["received_ms"],
            data["priority"],
            data["is_load"],
            data["ttl_override_ms"],
        )
        req.phase = data["phase"]
        req.instance = data.get("instance", 0)
        req.selector = data.get("selector", "")
        req.target = data.get("target", "")
        return req


@dataclass(frozen=True, slots=True)
class Selection:
    """A selector's choice that is not (yet) a request of the scheduler: chosen, until its
    `RequestReceived` (a local target) or its `SelectionEnded` (a peer's, or refused before it
    was scheduled). It holds a reservation on its target meanwhile."""

    selector: str
    target: str
    model: str
    """The local model the target runs, or "" for a peer's model."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        return cls(**data)


class Swap:
    """A swap in flight for one target: what it evicts and who waits for it (join order)."""

    __slots__ = ("devices", "evict", "model", "phase", "request_id", "seq", "waiters")

    def __init__(
        self,
        model: str,
        evict: tuple[str, ...],
        seq: int,
        request_id: str | None,
        devices: tuple[int, ...] = (),
    ):
        self.model = model
        self.evict = evict
        self.seq = seq
        """The seq of the event that started it: swaps are always walked in this order."""
        self.request_id = request_id
        self.waiters: list[str] = []
        self.phase = EVICTING
        self.devices = devices
        """The GPUs placement chose for the target (its StartProcess gets them); until the
        target starts, their memory counts as promised to it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "evict": list(self.evict),
            "seq": self.seq,
            "request_id": self.request_id,
            "waiters": list(self.waiters),
            "phase": self.phase,
            "devices": list(self.devices),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Swap:
        swap = cls(
            data["model"],
            tuple(data["evict"]),
            data["seq"],
            data["request_id"],
            tuple(data.get("devices", ())),
        )
        swap.waiters = list(data["waiters"])
        swap.phase = data["phase"]
        return swap


class SchedulerState:
    """The whole reducer state. Create it with `new_state()`; mutate it only through `reduce`."""

    __slots__ = (
        "_evict_cache",
        "_planner",
        "_policy",
        "_running_cache",
        "_running_for",
        "active_profile",
        "config",
        "config_error",
        "config_hash",
        "followups",
        "footprints",
        "gpu",
        "in_flight_total",
        "models",
        "now_ms",
        "queue",
        "queue_changes",
        "requests",
        "selections",
        "selector_cursors",
        "seq",
        "shutting_down",
        "swaps",
        "timers",
    )

    def __init__(self) -> None:
        self.config: SchedulerConfig | None = None
        self.config_hash = ""
        self.config_error = ""
        """Why the last ConfigApplied could not be used (the previous config stays), or ""."""
        self.models: dict[str, ModelProc] = {}
        """Every configured model, plus retired ones that still hold a process or requests."""
        self.requests: dict[str, Request] = {}
        self.queue: list[str] = []
        """Queued request ids, in the policy's order (fifo: priority then arrival)."""
        self.swaps: dict[str, Swap] = {}
        self.timers: dict[str, int] = {}
        """Armed timers: id -> at_ms. A TimerFired for an id not here is stale and ignored."""
        self.shutting_down = False
        self.active_profile: str | None = None
        """The profile whose pins apply to requested names (ProfileActivated), or None."""
        self.selections: dict[str, Selection] = {}
        """Selector choices by request id that are not requests of the scheduler (yet)."""
        self.selector_cursors: dict[str, int] = {}
        """Each spillover selector's round-robin cursor (llama-swap's tie breaker)."""
        self.in_flight_total = 0
        self.seq = 0
        self.now_ms = 0
        self.queue_changes = 0
        """Read by nothing since core-4 (queue positions are read from the committed view, no
        QueuePositions decision is made). Kept only so that scheduling-policy plugins written
        against core-3, which were told to add 1 to it, still run; never snapshotted."""
        self.gpu: GpuSample | None = None
        """The newest GPU memory sample (`GpuMemorySampled`), or None: none was recorded."""
        self.footprints: dict[str, dict[str, Footprint]] = {}
        """Footprint facts per model and source (`FootprintKnown`); the declared one comes
        from the model's schedule (`footprint`)."""
        # Derived (not snapshotted): rebuilt from `config` by `core.reducer.install_config`.
        self._planner: Planner | None = None
        self._policy: SchedulingPolicy | None = None
        self._running_cache: tuple[str, ...] | None = None
        self._running_for: dict[str, tuple[str, ...]] = {}
        self._evict_cache: dict[tuple[str, tuple[str, ...]], EvictionPlan] = {}
        # Transient within one reduce step (always empty between steps).
        self.followups: list[FollowUp] = []
        """What an input set off and the reducer handles next, in the same step (a swap that
        ended, a wake of the policy): `core.followups`. Never snapshotted."""

    # ---------------------------------------------------------------- derived helpers

    @property
    def policy(self) -> SchedulingPolicy:
        """The scheduling policy of the applied config (`core.control.install_config`)."""
        policy = self._policy
        if policy is None:
            raise LookupError("no config applied yet: the scheduler has no policy")
        return policy

    @property
    def planner(self) -> Planner:
        """The eviction planner of the applied config (groups or the matrix)."""
        planner = self._planner
        if planner is None:
            raise LookupError("no config applied yet: the scheduler has no eviction planner")
        return planner

    @property
    def configured(self) -> bool:
        """Whether a config was installed (so `policy` and `planner` exist)."""
        return self._policy is not None

    def install(self, config: SchedulerConfig, policy: SchedulingPolicy, planner: Planner) -> None:
        """Use `config` with its policy and planner from now on; cached plans are forgotten."""
        self.config = config
        self._policy = policy
        self._planner = planner
        self.forget_plans()
        self.touch_processes()

    def cached_plan(self, target: str, running: tuple[str, ...]) -> EvictionPlan | None:
        """The planner's answer for (target, running) if asked before under this config."""
        return self._evict_cache.get((target, running))

    def remember_plan(
        self, target: str, running: tuple[str, ...], plan: EvictionPlan, limit: int
    ) -> None:
        """Keep a planner answer (the cache is emptied when it would grow past `limit`)."""
        cache = self._evict_cache
        if len(cache) >= limit:
            cache.clear()
        cache[(target, running)] = plan

    def forget_plans(self) -> None:
        """Drop cached planner answers: the config or the set of models changed."""
        self._evict_cache.clear()

    def cached_running_for(self, target: str) -> tuple[str, ...] | None:
        """`effects.running_for(target)` if computed since the last process or swap change."""
        return self._running_for.get(target)

    def remember_running_for(self, target: str, running: tuple[str, ...]) -> None:
        self._running_for[target] = running

    @property
    def router_name(self) -> str:
        """llama-swap's router name, which appears in its error texts ("group: model unloaded")."""
        if self.config is not None and self.config.planner.kind == "matrix":
            return "matrix"
        return "group"

    def touch_processes(self) -> None:
        """Forget the cached running sets: call after any process-state or swap change."""
        self._running_cache = None
        if self._running_for:
            self._running_for.clear()

    def running_models(self) -> tuple[str, ...]:
        """Sorted ids of models whose process is starting, ready or stopping."""
        cached = self._running_cache
        if cached is None:
            cached = tuple(sorted(m for m, p in self.models.items() if p.state in RUNNING_STATES))
            self._running_cache = cached
        return cached

    def footprint(self, model: str) -> Footprint | None:
        """The model's best known GPU footprint (measured > declared > estimated), or None."""
        proc = self.models.get(model)
        return best_footprint(self.footprints.get(model), proc.schedule if proc else None)

    def swaps_in_order(self) -> list[Swap]:
        """Active swaps by creation order (never dict order)."""
        if len(self.swaps) < 2:
            return list(self.swaps.values())
        return sorted(self.swaps.values(), key=_swap_seq)


def _swap_seq(swap: Swap) -> int:
    return swap.seq


def new_state() -> SchedulerState:
    """An empty state: no config yet (every request is a 404 until `ConfigApplied`)."""
    return SchedulerState()


# ------------------------------------------------------------------ what the state holds
# The policy's contract and the follow-up records live beside the state that holds them, so
# the state names no module that imports it (core.policies and core.followups re-export them).

Out = list[Decision]


class SchedulingPolicy(Protocol):
    name: ClassVar[str]

    def planner(self, st: SchedulerState) -> Planner:
        """What "cannot run beside" means under this policy."""
        ...

    def queue_key(self, req: Request) -> tuple[int, ...]:
        """Sort key of the queue order this policy keeps (used to re-sort after a reload)."""
        ...

    def place(self, st: SchedulerState, req: Request, out: Out) -> None:
        """An admitted request (or load) arrives; its slot is already reserved.

        A request for a model whose instance is `ModelProc.suspect` must not be granted: it
        stays queued until `wake` (the rule is `DispatchUnreachable`'s)."""
        ...

    def on_swap_done(self, st: SchedulerState, swap: Swap, error: str | None, out: Out) -> None:
        """A swap ended (its entry is already removed): answer its waiters, then move on.

        Called by the reducer for a `SwapEnded` follow-up, never from inside another policy
        call: a swap that `start_swap` ends at once (its target was ready, nothing to evict)
        is handed over here after the call that started it has returned."""
        ...

    def on_request_ended(self, st: SchedulerState, proc: ModelProc, out: Out) -> None:
        """A dispatched request finished (its in-flight slot is already released)."""
        ...

    def wake(self, st: SchedulerState, out: Out) -> None:
        """Something that may unblock waiting requests happened (a stop completed, a timer,
        a reload, a cancel): re-examine them."""
        ...


@dataclass(frozen=True, slots=True)
class SwapEnded:
    """A swap is over (its entry is already removed from the state): its waiters are answered
    with `error`'s failure, or granted when it is None, by the policy's `on_swap_done`."""

    swap: Swap
    error: str | None


@dataclass(frozen=True, slots=True)
class WakePolicy:
    """Re-examine the waiting requests (`SchedulingPolicy.wake`)."""


WAKE_POLICY = WakePolicy()

FollowUp = SwapEnded | WakePolicy
