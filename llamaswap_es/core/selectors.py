"""Which target a selector's request goes to (spec/api.md §6.5), decided inside the reducer.

A selector is a virtual model id with targets and a strategy. Choosing a target reads the
scheduler's own state (model states, the selector's reservations, its round-robin cursor), so it
belongs here and not in the handler: the choice is a logged decision (`SelectorChose`) that
replay reproduces and what-if re-decides.

llama-swap's rules, kept exactly:
* pin: always the first target.
* warm: the first target whose model is ready, else the first starting, else the first target.
* spillover: a target's reservations are the selector's requests chosen for it and not ended
  (queued, waiting on a swap or in flight; for a peer's model, until the handler is done).
  Targets whose model is stopping are skipped; ready or starting ones, and any with
  reservations, are active; the rest (stopped, failed, a peer's model without reservations)
  are cold. No active target: the first cold one. Else the least reserved active target while
  its count is below `spillover` (ties round-robin), else the first cold one, else the least
  reserved active target again (ties round-robin).
"""

from __future__ import annotations

from llamaswap_es.config.schedule import SelectorSchedule, SelectorTarget
from llamaswap_es.core.state import READY, STARTING, STOPPING, Out, SchedulerState, Selection
from llamaswap_es.events.types import Reject, SelectorChose, SelectorRequested

UNAVAILABLE = "selector_unavailable"
"""Reject code when a selector has no target to choose."""


def select(st: SchedulerState, ev: SelectorRequested, out: Out) -> None:
    """Choose a target for the request and hold its reservation (or reject it)."""
    rid = ev.request_id
    if rid in st.requests or rid in st.selections:  # ids are unique; a repeat changes nothing
        return
    if st.shutting_down:
        message = f"unspecific error: {st.router_name} is shutting down"
        out.append(Reject(request_id=rid, status=500, code="shutting_down", message=message))
        return
    selector = st.config.selectors.get(ev.selector) if st.config is not None else None
    if selector is None:  # a reload removed it after the handler looked
        message = f'selector "{ev.selector}" is not configured'
        out.append(Reject(request_id=rid, status=404, code="model_not_found", message=message))
        return
    if not selector.targets:
        out.append(
            Reject(request_id=rid, status=503, code=UNAVAILABLE, message="selector has no targets")
        )
        return
    choice = _choose(st, selector)
    if choice is None:
        message = f'selector "{selector.selector_id}" has no available spillover targets'
        out.append(Reject(request_id=rid, status=503, code=UNAVAILABLE, message=message))
        return
    target, rule, reason = choice
    st.selections[rid] = Selection(selector.selector_id, target.name, target.model)
    out.append(
        SelectorChose(
            request_id=rid,
            selector=selector.selector_id,
            target=target.name,
            model=target.model,
            rule=rule,
            reason=reason,
        )
    )


def forget_selections(st: SchedulerState) -> None:
    """A new boot: the handlers that held choices are gone, and llama-swap's selector state
    (reservations, cursors) lives in memory only."""
    st.selections.clear()
    st.selector_cursors.clear()


def reservations(st: SchedulerState, selector_id: str) -> dict[str, int]:
    """Per target name: the selector's choices not ended (pending choices and live requests)."""
    counts: dict[str, int] = {}
    for selection in st.selections.values():
        if selection.selector == selector_id:
            counts[selection.target] = counts.get(selection.target, 0) + 1
    for req in st.requests.values():
        if req.selector == selector_id:
            counts[req.target] = counts.get(req.target, 0) + 1
    return counts


_Choice = tuple[SelectorTarget, str, str]
"""(target, rule, reason in words)."""


def _choose(st: SchedulerState, selector: SelectorSchedule) -> _Choice | None:
    if selector.strategy == "warm":
        return _warm(st, selector.targets)
    if selector.strategy == "spillover":
        return _spillover(st, selector)
    return selector.targets[0], "pin", "pin: always the first target"


def _state(st: SchedulerState, target: SelectorTarget) -> str:
    """The target's process state; "" for a peer's model (the scheduler knows nothing of it)."""
    if not target.model:
        return ""
    proc = st.models.get(target.model)
    return proc.state if proc is not None else "stopped"


def _warm(st: SchedulerState, targets: tuple[SelectorTarget, ...]) -> _Choice:
    for wanted, rule in ((READY, "warm-ready"), (STARTING, "warm-starting")):
        for target in targets:
            if _state(st, target) == wanted:
                none_ready = ", none is ready" if wanted == STARTING else ""
                return target, rule, f"warm: {target.name} is {wanted}{none_ready}"
    first = targets[0]
    return first, "warm-first", f"warm: no target is ready or starting, {first.name} is first"


def _spillover(st: SchedulerState, selector: SelectorSchedule) -> _Choice | None:
    reserved = reservations(st, selector.selector_id)
    active: list[SelectorTarget] = []
    cold: list[SelectorTarget] = []
    for target in selector.targets:
        state = _state(st, target)
        if state == STOPPING:
            continue
        if state in (READY, STARTING) or reserved.get(target.name, 0) > 0:
            active.append(target)
        else:
            cold.append(target)
    if not active:
        if not cold:
            return None
        return cold[0], "spillover-idle", f"spillover: no target is active, {cold[0].name} is cold"
    limit = selector.spillover
    least = min(reserved.get(t.name, 0) for t in active)
    if least < limit or not cold:
        candidates = [t for t in active if reserved.get(t.name, 0) == least]
        cursor = st.selector_cursors.get(selector.selector_id, 0) + 1
        st.selector_cursors[selector.selector_id] = cursor
        pick = candidates[cursor % len(candidates)]
        ties = f" (round-robin among {len(candidates)})" if len(candidates) > 1 else ""
        if least < limit:
            reason = f"spillover: {pick.name} has {least} reserved < spillover {limit}{ties}"
            return pick, "spillover-below", reason
        busy = _busy(active, reserved)
        reason = f"spillover: {busy} ≥ spillover {limit}, none cold; {pick.name} least busy{ties}"
        return pick, "spillover-least-busy", reason
    busy = _busy(active, reserved)
    return cold[0], "spillover-cold", f"spillover: {busy} ≥ spillover {limit}, {cold[0].name} cold"


def _busy(active: list[SelectorTarget], reserved: dict[str, int]) -> str:
    return ", ".join(f"{t.name} has {reserved.get(t.name, 0)} reserved" for t in active)
