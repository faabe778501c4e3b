"""Read-only views of the scheduler state for the HTTP layer, projections and the UI.

Plain frozen records; they never expose the mutable state itself. Ordering is stable: models by
id, queued requests by queue position. Outside the run loop, everyone reads a `SchedulerView`
that the loop publishes after each commit (ARCHITECTURE §11.5): the live state runs ahead of the
log while a batch is being written, and nobody may see what the log does not yet hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llamaswap_es.core.effects import idle_ttl_ms
from llamaswap_es.core.memory import Footprint, free_now
from llamaswap_es.core.placement import holdings_now, needs_of
from llamaswap_es.core.state import QUEUED, WAITING, Request, SchedulerState, Selection


@dataclass(frozen=True, slots=True)
class ModelView:
    model: str
    state: str
    """stopped, starting, ready, stopping or failed."""
    instance: int
    in_flight: int
    queue_depth: int
    """Requests for this model in the queue."""
    waiting: int
    """Requests waiting on this model's active swap."""
    reserved: int
    ready_at_ms: int | None
    swapping: bool
    """A swap for this model is in flight."""
    retired: bool
    """Removed by a reload, still winding down."""
    idle_ttl_ms: int | None = None
    """How long it may stay idle before it is unloaded (a request's `ttl`/`keep_alive` override
    or the configured ttl); None: never."""
    devices: tuple[int, ...] = ()
    """The GPUs (NVML indexes) placement by memory started it on; () when none were chosen."""
    footprint_mb: int | None = None
    """Its best known GPU footprint in MiB (all devices together), or None."""
    footprint_source: str = ""
    """Where that footprint comes from: measured, declared or estimated."""
    footprint: Footprint | None = None
    """That footprint whole: its device count, a measured split, and how it was found
    (`detail`), for the API and the UI."""


@dataclass(frozen=True, slots=True)
class RequestView:
    request_id: str
    model: str
    phase: str
    """queued, waiting (on a swap) or dispatched."""
    position: int | None
    """1-based queue position while queued."""
    received_ms: int
    is_load: bool


def model_views(st: SchedulerState) -> list[ModelView]:
    """Every model the scheduler knows, sorted by id."""
    depth: dict[str, int] = {}
    for rid in st.queue:
        model = st.requests[rid].model
        depth[model] = depth.get(model, 0) + 1
    return [_model_view(st, m, depth.get(m, 0)) for m in sorted(st.models)]


def model_view(st: SchedulerState, model: str) -> ModelView | None:
    if model not in st.models:
        return None
    depth = sum(1 for rid in st.queue if st.requests[rid].model == model)
    return _model_view(st, model, depth)


def _model_view(st: SchedulerState, model: str, depth: int) -> ModelView:
    proc = st.models[model]
    swap = st.swaps.get(model)
    footprint = st.footprint(model)
    return ModelView(
        model=model,
        state=proc.state,
        instance=proc.instance,
        in_flight=proc.in_flight,
        queue_depth=depth,
        waiting=len(swap.waiters) if swap is not None else 0,
        reserved=proc.reserved,
        ready_at_ms=proc.ready_at_ms if proc.state == "ready" else None,
        swapping=swap is not None,
        retired=proc.retired,
        idle_ttl_ms=idle_ttl_ms(proc),
        devices=proc.devices,
        footprint_mb=footprint.mb if footprint is not None else None,
        footprint_source=footprint.source if footprint is not None else "",
        footprint=footprint,
    )


def request_view(st: SchedulerState, request_id: str) -> RequestView | None:
    req = st.requests.get(request_id)
    if req is None:
        return None
    return _request_view(req, st.queue.index(request_id) + 1 if req.phase == QUEUED else None)


def _request_view(req: Request, position: int | None) -> RequestView:
    return RequestView(
        request_id=req.request_id,
        model=req.model,
        phase=req.phase,
        position=position,
        received_ms=req.received_ms,
        is_load=req.is_load,
    )


def queue_view(st: SchedulerState) -> list[RequestView]:
    """Every request not yet dispatched: the queue in order, then swap waiters by swap age.

    A queued request's position is its place in this walk (asking `request_view` for each would
    search the queue once per request: 21 ms per commit with 2,000 queued, on the event loop)."""
    views: list[RequestView | None] = []
    for position, rid in enumerate(st.queue, start=1):
        req = st.requests.get(rid)
        views.append(
            None if req is None else _request_view(req, position if req.phase == QUEUED else None)
        )
    for swap in st.swaps_in_order():
        views.extend(request_view(st, rid) for rid in swap.waiters)
    return [v for v in views if v is not None and v.phase in (QUEUED, WAITING)]


def running_models(st: SchedulerState) -> tuple[str, ...]:
    """Models whose process is starting, ready or stopping (sorted)."""
    return st.running_models()


def is_shutting_down(st: SchedulerState) -> bool:
    return st.shutting_down


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the scheduler counts it (MiB)."""

    index: int
    uuid: str
    name: str
    total_mb: int
    sampled_free_mb: int
    """Free in the newest `GpuMemorySampled`."""
    free_mb: int
    """Free now as placement counts it (`core.memory`): the sample, less models started since,
    plus models stopped since."""


def gpu_views(st: SchedulerState) -> tuple[GpuView, ...]:
    gpu = st.gpu
    if gpu is None:
        return ()
    holdings = holdings_now(st)
    free = free_now(gpu, holdings, needs_of(st, holdings, gpu))
    return tuple(
        GpuView(
            index=i,
            uuid=gpu.uuids[i] if i < len(gpu.uuids) else "",
            name=gpu.names[i] if i < len(gpu.names) else "",
            total_mb=gpu.total_mb[i],
            sampled_free_mb=gpu.free_mb[i],
            free_mb=free[i],
        )
        for i in range(gpu.count)
    )


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """The scheduler as of the last committed batch (published by the run loop)."""

    seq: int
    """The state's last reduced input when the view was taken."""
    models: Mapping[str, ModelView]
    """Every model the scheduler knows, by id (in id order)."""
    queue: tuple[RequestView, ...]
    """Requests not yet dispatched: the queue in order, then swap waiters by swap age."""
    running: tuple[str, ...]
    shutting_down: bool
    active_profile: str | None = None
    """The profile whose pins apply to requested names (ProfileActivated), or None."""
    gpus: tuple[GpuView, ...] = ()
    """Each GPU of the newest memory sample, with free memory as placement counts it now."""
    selections: Mapping[str, Selection] = field(default_factory=dict)
    """Selector choices by request id not (yet) requests of the scheduler (`core.selectors`)."""

    def model(self, model_id: str) -> ModelView | None:
        return self.models.get(model_id)

    def request(self, request_id: str) -> RequestView | None:
        """A request while it waits for its dispatch (None once dispatched or ended)."""
        for view in self.queue:  # for tools and tests: handlers are told (`RequestTicket`)
            if view.request_id == request_id:
                return view
        return None


EMPTY_VIEW = SchedulerView(seq=0, models={}, queue=(), running=(), shutting_down=False)


def scheduler_view(st: SchedulerState) -> SchedulerView:
    return _view_with(st, {v.model: v for v in model_views(st)})


def _view_with(st: SchedulerState, models: Mapping[str, ModelView]) -> SchedulerView:
    queue = tuple(queue_view(st))
    return SchedulerView(
        seq=st.seq,
        models=models,
        queue=queue,
        running=st.running_models(),
        shutting_down=st.shutting_down,
        active_profile=st.active_profile,
        gpus=gpu_views(st),
        selections=dict(st.selections),
    )


_ModelKey = tuple[object, ...]


class ViewPublisher:
    """`scheduler_view` for the run loop, which takes one after every commit: a model whose
    view would come out the same as last time keeps last time's `ModelView`.

    Building every model's view on every commit made a proxied request's CPU grow with the
    number of configured models (31 models at concurrency 1: 17% of the event loop's time,
    py-spy); most of them did not change. A model's view is a function of the values in its
    key (`_model_key`), compared by value, so the result is always what `scheduler_view`
    gives for the same state (tests/core/test_properties.py checks it after every step)."""

    def __init__(self) -> None:
        self._models: dict[str, tuple[_ModelKey, ModelView]] = {}

    def __call__(self, st: SchedulerState) -> SchedulerView:
        depth: dict[str, int] = {}
        for rid in st.queue:
            model = st.requests[rid].model
            depth[model] = depth.get(model, 0) + 1
        previous = self._models
        kept: dict[str, tuple[_ModelKey, ModelView]] = {}
        models: dict[str, ModelView] = {}
        for model in sorted(st.models):
            key = _model_key(st, model, depth.get(model, 0))
            known = previous.get(model)
            if known is not None and known[0] == key:
                view = known[1]
            else:
                view = _model_view(st, model, depth.get(model, 0))
            kept[model] = (key, view)
            models[model] = view
        self._models = kept
        return _view_with(st, models)


def _model_key(st: SchedulerState, model: str, depth: int) -> _ModelKey:
    """Everything `_model_view` reads for `model`, as values (the schedule is frozen and
    replaced by a reload; the footprint facts are frozen records)."""
    proc = st.models[model]
    swap = st.swaps.get(model)
    facts = st.footprints.get(model)
    return (
        proc.state,
        proc.instance,
        proc.in_flight,
        depth,
        len(swap.waiters) if swap is not None else -1,
        proc.reserved,
        proc.ready_at_ms,
        proc.retired,
        proc.ttl_override_ms,
        proc.devices,
        proc.schedule,
        tuple(facts.items()) if facts else (),
    )
