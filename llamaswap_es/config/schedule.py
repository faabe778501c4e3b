"""The part of the configuration that the scheduler reducer reads.

The reducer never sees the YAML models: it sees a `SchedulerConfig`, carried inside the
`ConfigApplied` event, so that a recorded log replays with exactly the settings that were in force.
Everything here is plain frozen data with a lossless `to_dict`/`from_dict` (JSON-safe, stable key
order). The config loader builds it with `llamaswap_es.config.build_schedule(config)`.

Times are integer milliseconds. All model ids are real ids (aliases already resolved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class ModelSchedule:
    """One model as the scheduler sees it, with every default already resolved."""

    model_id: str
    concurrency_limit: int = 10
    """Admitted (queued + waiting + serving) requests allowed at once; more get a 429."""
    ttl_ms: int = 0
    """Idle time before an automatic unload; 0 means never (llama-swap's `ttl`/`globalTTL`)."""
    unload_timeout_ms: int = 10_000
    """Grace between the graceful stop and SIGKILL, for unloads, TTL and (ours) evictions."""
    health_check_timeout_ms: int = 120_000
    priority: int = 0
    """fifo queue priority (higher first), looked up by real model id as llama-swap does."""
    fingerprint: str = ""
    """Digest of the model's effective process settings (cmd, env, proxy, checkEndpoint …).
    A reload restarts a running model only when its fingerprint changed."""
    footprint_mb: int = 0
    """Ours (placement): its declared GPU memory need in MiB, all devices together; 0 = none."""
    footprint_devices: int = 1
    """How many devices the declared footprint spans."""
    placement_priority: int = 0
    """Eviction priority under placement by memory: lower is evicted first."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model_id": self.model_id,
            "concurrency_limit": self.concurrency_limit,
            "ttl_ms": self.ttl_ms,
            "unload_timeout_ms": self.unload_timeout_ms,
            "health_check_timeout_ms": self.health_check_timeout_ms,
            "priority": self.priority,
            "fingerprint": self.fingerprint,
        }
        # The placement keys only when set: a config without them logs what it logged before.
        if self.footprint_mb:
            data["footprint_mb"] = self.footprint_mb
            data["footprint_devices"] = self.footprint_devices
        if self.placement_priority:
            data["placement_priority"] = self.placement_priority
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSchedule:
        return cls(**data)


PLACEMENT_OFF = "off"
PLACEMENT_MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class PlacementRules:
    """Ours (issue 18): how the reducer places a starting model by GPU memory."""

    mode: str = PLACEMENT_OFF
    """`off`: groups and the matrix alone decide (llama-swap's behaviour, exactly); `memory`:
    they decide first, then memory (devices chosen, idle models evicted until it fits)."""
    margin_mb: int = 512
    """MiB kept free on every device beyond the footprints."""

    @property
    def active(self) -> bool:
        return self.mode == PLACEMENT_MEMORY

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "margin_mb": self.margin_mb}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlacementRules:
        return cls(mode=data["mode"], margin_mb=int(data["margin_mb"]))


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A llama-swap group: `swap`, `exclusive`, `persistent` and its members (real ids)."""

    name: str
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "swap": self.swap,
            "exclusive": self.exclusive,
            "persistent": self.persistent,
            "members": list(self.members),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupRule:
        return cls(
            name=data["name"],
            swap=data["swap"],
            exclusive=data["exclusive"],
            persistent=data["persistent"],
            members=tuple(data["members"]),
        )


@dataclass(frozen=True, slots=True)
class GroupPlanner:
    """Eviction by groups. The `(default)` group is already present when the loader built it."""

    groups: tuple[GroupRule, ...] = ()
    kind: Literal["groups"] = "groups"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "groups": [g.to_dict() for g in self.groups]}


@dataclass(frozen=True, slots=True)
class MatrixPlanner:
    """Eviction by llama-swap's matrix DSL.

    `sets` is in the order the solver breaks ties by (before the topological walk the core does);
    the loader decides that order (llama-swap's sorted key order, see spec/config.md §10.3).
    """

    sets: tuple[tuple[str, str], ...] = ()
    """(set name, DSL expression) pairs."""
    vars: tuple[tuple[str, str], ...] = ()
    """(var name, real model id) pairs."""
    evict_costs: tuple[tuple[str, int], ...] = ()
    """(var name or model id, positive cost) pairs; unlisted models cost 1."""
    kind: Literal["matrix"] = "matrix"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sets": [list(p) for p in self.sets],
            "vars": [list(p) for p in self.vars],
            "evict_costs": [list(p) for p in self.evict_costs],
        }


EvictionPlanner = GroupPlanner | MatrixPlanner


def planner_from_dict(data: dict[str, Any]) -> EvictionPlanner:
    if data["kind"] == "groups":
        return GroupPlanner(groups=tuple(GroupRule.from_dict(g) for g in data["groups"]))
    if data["kind"] == "matrix":
        return MatrixPlanner(
            sets=tuple((n, e) for n, e in data["sets"]),
            vars=tuple((n, m) for n, m in data["vars"]),
            evict_costs=tuple((k, int(c)) for k, c in data["evict_costs"]),
        )
    raise ValueError(f"unknown eviction planner kind {data['kind']!r}")


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Everything the pure scheduler needs, and nothing it does not."""

    models: dict[str, ModelSchedule] = field(default_factory=dict)
    """Models that get a process (group members, or every model under the matrix), by id."""
    planner: EvictionPlanner = field(default_factory=GroupPlanner)
    policy: str = "fifo"
    """The scheduling policy's registered name (`config.policy_registry`). The loader always
    sets it (`serial` unless the config names another); this default serves schedules built by
    hand, as the core's scenario tests do."""
    starvation_bound_ms: int = 0
    """Ours (ARCHITECTURE §9.2): a request queued longer than this forces its swap; 0 = off,
    which keeps llama-swap's order exactly."""
    min_resident_ms: int = 0
    """Ours: a model that became ready less than this long ago is not evicted for a swap
    (unloads and TTL still stop it); 0 = off."""
    shutdown_grace_ms: int = 30_000
    queue_timeout_ms: int = 0
    """Ours: a request still in the queue this long after it arrived is rejected (503); 0 = off.
    A request whose swap is already under way is not in the queue any more."""
    idle_model: str = ""
    """Ours (`idleModel`): the model loaded when a TTL unload leaves every process stopped and
    nothing waiting (see `core.reducer`); "" = off. A real id, never an alias."""
    start_backoff_ms: int = 0
    """Ours: after a failed start, the model is not started again for this long (doubling with
    each failure in a row, up to `start_backoff_max_ms`); requests meanwhile are answered at
    once with the failure. 0 = off (llama-swap starts it again for every request)."""
    start_backoff_max_ms: int = 0
    """The longest backoff window (the doubling stops here); at least `start_backoff_ms`."""
    placement: PlacementRules = field(default_factory=PlacementRules)
    """Ours: placement by GPU memory (off by default)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "planner": self.planner.to_dict(),
            "models": {mid: self.models[mid].to_dict() for mid in sorted(self.models)},
            "starvation_bound_ms": self.starvation_bound_ms,
            "min_resident_ms": self.min_resident_ms,
            "shutdown_grace_ms": self.shutdown_grace_ms,
            "queue_timeout_ms": self.queue_timeout_ms,
            "idle_model": self.idle_model,
            "start_backoff_ms": self.start_backoff_ms,
            "start_backoff_max_ms": self.start_backoff_max_ms,
            # only when on: a config without placement logs what it logged before
            **({"placement": self.placement.to_dict()} if self.placement.active else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchedulerConfig:
        return cls(
            policy=data["policy"],
            planner=planner_from_dict(data["planner"]),
            models={mid: ModelSchedule.from_dict(m) for mid, m in data["models"].items()},
            starvation_bound_ms=data["starvation_bound_ms"],
            min_resident_ms=data["min_resident_ms"],
            shutdown_grace_ms=data["shutdown_grace_ms"],
            queue_timeout_ms=data.get("queue_timeout_ms", 0),  # absent in older logs
            idle_model=data.get("idle_model", ""),  # absent in older logs
            # absent in older logs: off, so they replay as they were decided
            start_backoff_ms=data.get("start_backoff_ms", 0),
            start_backoff_max_ms=data.get("start_backoff_max_ms", 0),
            placement=PlacementRules.from_dict(data["placement"])
            if "placement" in data
            else PlacementRules(),  # absent: off (older logs, or placement not on)
        )
