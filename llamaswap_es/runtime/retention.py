"""Event-log retention: choosing how far the log may be pruned, and pruning it.

The log may only lose a prefix that a reducer snapshot stands in for: the prune point P is the
seq of a snapshot (of this code's `REDUCER_VERSION`, so recovery and replay can restore it) whose
event is older than the retention period; events up to P and older snapshots go, snapshot P stays
and the log replays from it exactly as before. Two more rules keep recovery whole:

* the newest event is never pruned (the snapshot must lie below the log's end);
* a process that may still be running keeps its start record: recovery adopts a live upstream
  after a crash from its `ProcessSpawned`/`ProcessAdopted` row (`recovery._spawn_from_log`), so
  P stays below the newest such row of every model instance that the current state, or the
  snapshot's own state, shows as not stopped. When that leaves no snapshot, nothing is pruned.

Choosing reads the log on a fresh read-only connection (run it in a thread); deleting goes
through the store's writer, in chunks (`EventStore.prune_through`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.core.state import RUNNING_STATES, SchedulerState
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.store import EventStore

log = logging.getLogger("llamaswap_es.runtime.retention")

DAY_MS = 86_400_000

Instance = tuple[str, int]
"""A model process: (model id, instance number)."""


def live_instances(state: SchedulerState) -> frozenset[Instance]:
    """The model instances that may have a process: starting, ready or stopping."""
    return frozenset(
        (view.model, view.instance)
        for view in core.model_views(state)
        if view.state in RUNNING_STATES
    )


def choose_prune_point(
    reader: DatabaseReader,
    *,
    cutoff_ms: int,
    live: Collection[Instance] = (),
    reducer_version: str = core.REDUCER_VERSION,
) -> int | None:
    """The seq to prune through, or None when no snapshot qualifies.

    `cutoff_ms`: only a snapshot whose event is older than this qualifies. `live`: the instances
    the running server has (the current state); their start records must stay.
    """
    last = reader.last_seq()
    spawns: dict[Instance, int | None] = {}

    def spawn_seq(instance: Instance) -> int | None:
        if instance not in spawns:
            spawns[instance] = _newest_spawn(reader, *instance)
        return spawns[instance]

    for seq in reader.snapshots_older_than(reducer_version, cutoff_ms):
        if seq >= last:
            continue
        snap = reader.latest_snapshot(reducer_version, max_seq=seq)
        if snap is None or snap.seq != seq:
            continue
        try:
            snap_state = core.restore(snap.state)
        except core.SnapshotError:
            continue  # recovery could not start from it either
        keep = {s for i in {*live, *live_instances(snap_state)} if (s := spawn_seq(i))}
        if not keep or seq < min(keep):
            return seq
    return None


def _newest_spawn(reader: DatabaseReader, model: str, instance: int) -> int | None:
    rows = reader.read(types=("ProcessSpawned", "ProcessAdopted"), key=model)
    for envelope in reversed(rows):
        if getattr(envelope.body, "instance", None) == instance:
            return envelope.seq
    return None


def _choose(path: Path, cutoff_ms: int, live: frozenset[Instance]) -> int | None:
    with DatabaseReader(path) as reader:
        return choose_prune_point(reader, cutoff_ms=cutoff_ms, live=live)


async def prune_events(
    store: EventStore, *, days: int, now_ms: int, live: frozenset[Instance]
) -> int:
    """Prune `store` of what is older than `days` (0: keep all); returns the events deleted."""
    if days <= 0:
        return 0
    point = await asyncio.to_thread(_choose, store.path, now_ms - days * DAY_MS, live)
    if point is None:
        return 0
    deleted = await store.prune_through(point)
    if deleted:
        log.info("pruned %d events up to seq %d (older than %d days)", deleted, point, days)
    return deleted
