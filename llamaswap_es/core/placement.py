"""Placement by GPU memory (issue 18): the devices a starting model gets and what must stop.

With `placement.mode: memory`, when a model must start (it is not starting or ready) and both
its footprint (`core.memory`: measured > declared > estimated) and a GPU sample are known:

1. Groups and the matrix decide first (`EvictionPlan` from the planner): what they evict is
   stopped anyway, so its memory counts as free.
2. A model that could never fit (it spans more devices than there are, or its need per device
   plus the margin is more than the total of the largest devices) is refused at once:
   `does_not_fit`, permanent, with the numbers.
3. Otherwise every choice of devices (as many as it spans) is tried. On each, free memory is
   counted by the rule of `core.memory` (starting models and swaps that have not started their
   target yet count with their footprints), and models are evicted, in this order, until every
   chosen device has the need plus the margin free: models already stopping, then idle models
   by placement priority (lower first) then least recently used, then busy ones, then ones still
   starting, then ones another swap is stopping. Evictions that turn out unnecessary are taken
   back, the most valuable first. Never evicted: the target, a persistent group's member, a
   model with no known footprint or no known devices (what it frees is unknown).
4. The choice that evicts the least valuable models wins (compared from the most valuable one
   evicted down, so evicting nothing beats everything, and three idle models of priority 0 go
   before one of priority 5); then the one that leaves the least memory over on the chosen
   devices (best fit, so a large device stays whole for a large model); then the lowest indexes.
5. A busy model in the eviction makes the request wait until its requests are done (the
   policies already never evict a busy model); a starting one, or one another swap stops,
   collides with that swap and waits for it. Where the only room is memory promised to another
   swap's target, the request waits too (`EvictionPlan.wait`). Where even evicting everything
   allowed would not make room (persistent members, models of unknown footprint or other
   programs hold it), the request is refused now, not permanently: 503 `does_not_fit`.

A model with no known footprint, or no GPU sample at all, is placed exactly as groups and the
matrix say (no devices chosen). The planner's answer is cached per (target, running set); the
memory part is worked out afresh on every call, because it depends on facts (samples,
footprints, who is busy, recency) that change far more often than the running set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

from llamaswap_es.config.schedule import GroupPlanner
from llamaswap_es.core.eviction import DoesNotFit, EvictionPlan, MemoryPlan
from llamaswap_es.core.memory import GpuSample, Holding, free_now
from llamaswap_es.core.state import READY, RUNNING_STATES, STARTING, STOPPING, SchedulerState

DOES_NOT_FIT = "does_not_fit"
"""`Reject.code` for a model that placement by memory cannot place."""

_STOPPING, _IDLE, _BUSY, _STARTING, _ANOTHER_SWAPS, _PROMISED = range(6)
_CLASS_WORDS = {
    _STOPPING: "already stopping",
    _IDLE: "idle",
    _BUSY: "busy",
    _STARTING: "starting",
    _ANOTHER_SWAPS: "being stopped by another swap",
    _PROMISED: "promised to another swap",
}


@dataclass(frozen=True, slots=True)
class _Candidate:
    kind: int
    priority: int
    last_used_ms: int
    model: str
    devices: tuple[int, ...]
    need_mb: int


def plan_with_memory(
    st: SchedulerState, target: str, running: tuple[str, ...], base: EvictionPlan
) -> EvictionPlan:
    """`base` (the planner's answer) with placement by memory on top, when it applies."""
    config = st.config
    if config is None or not config.placement.active:
        return base
    proc = st.models.get(target)
    gpu = st.gpu
    if proc is None or proc.state == READY or proc.state == STARTING or gpu is None:
        return base
    footprint = st.footprint(target)
    if footprint is None or gpu.count == 0:
        return base
    margin = config.placement.margin_mb
    need, span = footprint.need_mb, footprint.span
    never = _never_fits(target, gpu, need, span, margin)
    if never is not None:
        return replace(base, does_not_fit=DoesNotFit(never, permanent=True))
    holdings = holdings_now(st, exclude=target)
    needs = needs_of(st, holdings, gpu)
    free = free_now(gpu, holdings, needs)
    evicted = set(base.evict)
    avail = list(free)
    for model in base.evict:  # groups or the matrix stop these anyway
        victim = st.models.get(model)
        if victim is not None and victim.state in RUNNING_STATES:
            for d in victim.devices:
                if d < gpu.count:
                    avail[d] = min(gpu.total_mb[d], avail[d] + needs.get(model, 0))
    candidates = _candidates(st, target, running, evicted, needs)
    best = _best_choice(gpu, avail, candidates, need + margin, span)
    if best is None:
        return replace(
            base,
            does_not_fit=DoesNotFit(
                _not_now(target, gpu, avail, candidates, need, span, margin), permanent=False
            ),
        )
    devices, chosen = best
    picked = [candidates[i] for i in chosen]
    promised = [c.model for c in picked if c.kind == _PROMISED]
    if promised:
        return replace(
            base,
            wait=f"memory on GPU{','.join(map(str, devices))} is promised to "
            f"{', '.join(promised)}, which has not started yet",
        )
    memory_evict = tuple(c.model for c in picked)
    evict_set = evicted | set(memory_evict)
    evict = tuple(m for m in running if m in evict_set)
    freed = []
    for model in evict:
        victim = st.models.get(model)
        held = [d for d in (victim.devices if victim else ()) if d in devices]
        if held and needs.get(model, 0):
            freed.append((model, needs[model] * len(held)))
    where = ", ".join(f"GPU{d}" for d in devices)
    rule = (
        f"memory: {target} needs {need:,} MiB per device ({footprint.source}) + margin "
        f"{margin:,} MiB, placed on {where}"
    )
    if memory_evict:
        reasons = ", ".join(
            f"{c.model} ({_CLASS_WORDS[c.kind]}, priority {c.priority})" for c in picked
        )
        rule += f"; evicts {reasons} to make room"
    memory = MemoryPlan(
        devices=devices,
        need_mb=need,
        free_mb=free,
        evict=memory_evict,
        freed_mb=tuple(freed),
        source=footprint.source,
        margin_mb=margin,
        rule=rule,
    )
    return EvictionPlan(evict, f"{base.rule}; {rule}", memory=memory)


def holdings_now(st: SchedulerState, exclude: str = "") -> list[Holding]:
    """The instances occupying devices now: every starting, ready or stopping process started
    on chosen devices, and the target of every swap that has not started it yet (promised).
    `exclude` (the model being placed) is left out: its own old instance, if still stopping,
    is gone before it starts again."""
    held: list[Holding] = []
    for model in sorted(st.models):
        proc = st.models[model]
        if model != exclude and proc.devices and proc.state in RUNNING_STATES:
            held.append((model, proc.instance, proc.devices))
    for swap in st.swaps_in_order():
        target = st.models.get(swap.model)
        if swap.model == exclude or not swap.devices or target is None:
            continue
        if target.state != STARTING and target.state != READY:
            held.append((swap.model, target.instance + 1, swap.devices))
    return held


def needs_of(st: SchedulerState, holdings: list[Holding], gpu: GpuSample) -> dict[str, int]:
    """Each model's need per device, for the models that hold or held devices."""
    needs: dict[str, int] = {}
    for model, _, _ in (*holdings, *gpu.ready):
        if model not in needs:
            footprint = st.footprint(model)
            needs[model] = 0 if footprint is None else footprint.need_mb
    return needs


def _candidates(
    st: SchedulerState,
    target: str,
    running: tuple[str, ...],
    evicted: set[str],
    needs: dict[str, int],
) -> list[_Candidate]:
    """What may be evicted for memory, most expendable first."""
    persistent = _persistent(st)
    others = {m for swap in st.swaps.values() if swap.model != target for m in swap.evict}
    found: list[_Candidate] = []
    for model in running:
        proc = st.models.get(model)
        if model == target or model in evicted or model in persistent or proc is None:
            continue
        need = needs.get(model)
        if need is None:
            footprint = st.footprint(model)
            need = 0 if footprint is None else footprint.need_mb
        if not proc.devices or need <= 0:
            continue
        if proc.state in RUNNING_STATES:
            if model in others:
                kind = _ANOTHER_SWAPS
            elif proc.state == STOPPING:
                kind = _STOPPING
            elif proc.state == STARTING:
                kind = _STARTING
            else:
                kind = _BUSY if proc.in_flight else _IDLE
            found.append(
                _Candidate(
                    kind,
                    proc.schedule.placement_priority,
                    proc.last_used_ms,
                    model,
                    proc.devices,
                    need,
                )
            )
    for swap in st.swaps_in_order():  # promised memory: only waiting frees it
        if swap.model == target or not swap.devices:
            continue
        proc = st.models.get(swap.model)
        need = needs.get(swap.model, 0)
        if proc is not None and proc.state != STARTING and proc.state != READY and need > 0:
            found.append(_Candidate(_PROMISED, 0, 0, swap.model, swap.devices, need))
    found.sort(key=lambda c: (c.kind, c.priority, c.last_used_ms, c.model))
    return found


def _persistent(st: SchedulerState) -> set[str]:
    """Members of persistent groups: never evicted for memory."""
    config = st.config
    if config is None or not isinstance(config.planner, GroupPlanner):
        return set()
    return {m for group in config.planner.groups if group.persistent for m in group.members}


def _best_choice(
    gpu: GpuSample, avail: list[int], candidates: list[_Candidate], want: int, span: int
) -> tuple[tuple[int, ...], list[int]] | None:
    """The best devices and the candidate indexes to evict for them (module docstring, 4)."""
    subsets = [
        devices
        for devices in combinations(range(gpu.count), span)
        if all(gpu.total_mb[d] >= want for d in devices)
    ]
    roomy = [devices for devices in subsets if all(avail[d] >= want for d in devices)]
    if roomy:  # something fits without evicting: the best fit of those (the usual case)
        return min(roomy, key=lambda ds: (sum(avail[d] - want for d in ds), ds)), []
    best: tuple[tuple[tuple[int, ...], int, tuple[int, ...]], list[int]] | None = None
    for devices in subsets:
        chosen = _evictions_for(devices, avail, candidates, want)
        if chosen is None:
            continue
        after = _avail_after(devices, avail, candidates, chosen)
        key = (
            tuple(sorted(chosen, reverse=True)),
            sum(after[d] - want for d in devices),
            devices,
        )
        if best is None or key < best[0]:
            best = (key, chosen)
    if best is None:
        return None
    return best[0][2], best[1]


def _avail_after(
    devices: tuple[int, ...], avail: list[int], candidates: list[_Candidate], chosen: list[int]
) -> dict[int, int]:
    after = {d: avail[d] for d in devices}
    for i in chosen:
        for d in candidates[i].devices:
            if d in after:
                after[d] += candidates[i].need_mb
    return after


def _evictions_for(
    devices: tuple[int, ...], avail: list[int], candidates: list[_Candidate], want: int
) -> list[int] | None:
    """Evict in order until every chosen device has `want` free, then take back what was not
    needed (most valuable first); None when even all of them would not do."""
    short = {d: want - avail[d] for d in devices if avail[d] < want}
    chosen: list[int] = []
    for i, candidate in enumerate(candidates):
        if not short:
            break
        if not any(d in short for d in candidate.devices):
            continue
        chosen.append(i)
        for d in candidate.devices:
            if d in short:
                short[d] -= candidate.need_mb
                if short[d] <= 0:
                    del short[d]
    if short:
        return None
    for i in sorted(chosen, reverse=True):
        trial = [j for j in chosen if j != i]
        after = _avail_after(devices, avail, candidates, trial)
        if all(after[d] >= want for d in devices):
            chosen = trial
    return chosen


def _never_fits(target: str, gpu: GpuSample, need: int, span: int, margin: int) -> str | None:
    """Why the model can never fit on these devices, or None when it could."""
    plural = "device" if span == 1 else "devices"
    if span > gpu.count:
        return (
            f"{target} needs {span} {plural} ({need:,} MiB on each); there are only "
            f"{gpu.count} GPUs"
        )
    largest = sorted(gpu.total_mb, reverse=True)
    if largest[span - 1] >= need + margin:
        return None
    each = "" if span == 1 else " each"
    which = "the largest device has" if span == 1 else f"the {span} largest devices have"
    return (
        f"{target} needs {need:,} MiB on {span} {plural}{each}; {which} "
        f"{largest[span - 1]:,} MiB total{each}, margin {margin:,} MiB"
    )


def _not_now(
    target: str,
    gpu: GpuSample,
    avail: list[int],
    candidates: list[_Candidate],
    need: int,
    span: int,
    margin: int,
) -> str:
    """The numbers of a start that does not fit now, even evicting all placement may evict."""
    most = list(avail)
    for candidate in candidates:
        for d in candidate.devices:
            if d < len(most):
                most[d] += candidate.need_mb
    shown = ", ".join(f"GPU{d} {min(m, gpu.total_mb[d]):,} MiB" for d, m in enumerate(most))
    plural = "device" if span == 1 else "devices"
    return (
        f"{target} needs {need:,} MiB + margin {margin:,} MiB on {span} {plural}; at most "
        f"{shown} can be made free: the rest is held by persistent models, models of unknown "
        "footprint or other programs"
    )
