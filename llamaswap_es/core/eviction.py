"""Eviction planners: which running models must stop before a target may start.

A planner is pure (llama-swap's `Swapper.EvictionFor`): `plan(target, running)` with `running`
sorted, returning the evict list in running-set order and a short human rule for `SwapPlanned`.
It may be asked many times per request (on arrival and on every drain); the reducer caches its
answers per (target, running) until the config changes.

* `GroupEviction`: llama-swap's groups (swap, exclusive, persistent), including the one-way
  non-exclusive behaviour kept for compatibility (spec/config.md §10.2).
* `MatrixEviction`: the matrix DSL and solver (spec/core.md §4.2-4.3).
* `EveryOtherEviction`: "every other running model" (the serial policy's rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from llamaswap_es.config.matrix_dsl import compile_matrix
from llamaswap_es.config.schedule import EvictionPlanner, GroupPlanner, GroupRule
from llamaswap_es.core.matrix_solver import solve


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Where a starting model goes by GPU memory (`core.placement`), and why."""

    devices: tuple[int, ...]
    need_mb: int
    """Its need per device."""
    free_mb: tuple[int, ...]
    """Free MiB per device as counted before evicting (starting models included)."""
    evict: tuple[str, ...]
    """The models evicted to make room (beyond what groups or the matrix evict)."""
    freed_mb: tuple[tuple[str, int], ...]
    """(model, MiB it gives back on the chosen devices), for every model the swap evicts."""
    source: str
    margin_mb: int
    rule: str


@dataclass(frozen=True, slots=True)
class DoesNotFit:
    """The model cannot be placed: never (too big for any device), or not now (the memory it
    needs is held by what placement may not evict)."""

    message: str
    permanent: bool


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    evict: tuple[str, ...]
    rule: str
    memory: MemoryPlan | None = None
    """Set when placement by memory chose the devices (`core.placement`)."""
    does_not_fit: DoesNotFit | None = None
    """Set when placement by memory refuses the start: the request is answered at once."""
    wait: str = ""
    """Non-empty when it fits only once memory promised to another swap is free: queue."""


class Planner(Protocol):
    def plan(self, target: str, running: tuple[str, ...]) -> EvictionPlan: ...


class GroupEviction:
    """For target T in group G, a running M != T is evicted when M is in G and G.swap, or M is
    in another group H, G.exclusive and not H.persistent. Nothing else is evicted."""

    def __init__(self, groups: Iterable[GroupRule]) -> None:
        self._group_of: dict[str, GroupRule] = {}
        for group in groups:
            for member in group.members:
                self._group_of.setdefault(member, group)

    def plan(self, target: str, running: tuple[str, ...]) -> EvictionPlan:
        group = self._group_of.get(target)
        if group is None:  # not a member of any group: it can only run alone
            evict = tuple(m for m in running if m != target)
            return EvictionPlan(evict, f"{target} is in no group: evicts every other model")
        same: list[str] = []
        other: list[str] = []
        for model in running:
            if model == target:
                continue
            theirs = self._group_of.get(model)
            if theirs is group:
                if group.swap:
                    same.append(model)
            elif group.exclusive and (theirs is None or not theirs.persistent):
                other.append(model)
        if not same and not other:
            return EvictionPlan((), f"group {group.name}: nothing to evict")
        evict = tuple(m for m in running if m in same or m in other)
        parts = []
        if same:
            parts.append(f"swap=true evicts {', '.join(same)}")
        if other:
            parts.append(f"exclusive evicts {', '.join(other)}")
        return EvictionPlan(evict, f"group {group.name}: {'; '.join(parts)}")


class MatrixEviction:
    """Evict the running models outside the cheapest set that allows the target."""

    def __init__(
        self,
        sets: tuple[tuple[str, str], ...],
        vars_: tuple[tuple[str, str], ...],
        evict_costs: tuple[tuple[str, int], ...],
        model_ids: Iterable[str],
    ) -> None:
        self.program = compile_matrix(sets, vars_, evict_costs, model_ids)

    def plan(self, target: str, running: tuple[str, ...]) -> EvictionPlan:
        solution = solve(self.program, target, running)
        if target in running:
            return EvictionPlan((), f"matrix: {target} is already running")
        if solution.set_name is None:
            rule = f"matrix: {target} is in no set, evicts every running model"
        elif solution.evict:
            rule = (
                f"matrix set {solution.set_name} (cost {solution.cost}) "
                f"evicts {', '.join(solution.evict)}"
            )
        else:
            rule = f"matrix set {solution.set_name}: nothing to evict"
        return EvictionPlan(solution.evict, rule)


class EveryOtherEviction:
    """One model at a time, whatever the groups or the matrix say (serial policy, §5)."""

    def plan(self, target: str, running: tuple[str, ...]) -> EvictionPlan:
        evict = tuple(m for m in running if m != target)
        if not evict:
            return EvictionPlan((), "serial: nothing else running")
        return EvictionPlan(evict, f"serial: one model at a time, evicts {', '.join(evict)}")


def build_planner(planner: EvictionPlanner, model_ids: Iterable[str]) -> Planner:
    """The planner object for a config's planner description (raises ValueError if invalid)."""
    if isinstance(planner, GroupPlanner):
        return GroupEviction(planner.groups)
    return MatrixEviction(planner.sets, planner.vars, planner.evict_costs, model_ids)
