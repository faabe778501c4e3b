"""Event-log retention: choosing how far the log may be pruned, and pruning it.

The log may only lose a prefix that a reducer snapshot stands in for: the prune point P is the
seq of a snapshot (of this code's `REDUCER_VERSION`, so recovery and replay can restore it) whose
event is older than the retention period; events up to P and older snapshots go, snapshot P stays
and the log replays from it exactly as before. Two more rules keep recovery whole:

* the newest event is never pruned (the snapshot must lie below the log's end);
* nothing a projection has not applied yet is pruned (P ≤ the lowest seq in
  `projection_checkpoints`): a projection that fell behind, or a server restarted after a long
  stop, would otherwise lose those requests from the activity history for good;
* a process that may still be running keeps its start record: recovery adopts a live upstream
  after a crash from its newest `ProcessSpawned`/`ProcessAdopted`/`ProcessRecorded` row
  (`recovery._spawn_from_log`), so P stays below that row for every model instance that the
  current state, or the snapshot's own state, shows as not stopped. So that a model loaded for
  weeks does not hold pruning back for ever, the service first re-states the start record of
  each running instance whose record lies behind the prune point (`ProcessRecorded`, a copy
  appended now): the old record may then go. When no snapshot is left, nothing is pruned.

Choosing reads the log on a fresh read-only connection (run it in a thread); deleting goes
through the store's writer, in chunks (`EventStore.prune_through`).

Packing (`pack_events`) is the other step that rewrites the log's past: request events that
every projection has applied (the lowest `projection_checkpoints` seq, which includes the
history sink's hold) move into compressed packs, a block per writer transaction
(`EventStore.pack_through`, docs/architecture.md "Packed request events"). Readers see the same
log either way, so the bound is about cost, not correctness: rows a projection still has to
read stay plain, as do the newest block of request rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.core.state import RUNNING_STATES, SchedulerState
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    START_RECORDS,
    ProcessAdopted,
    ProcessRecorded,
    ProcessSpawned,
)

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
    limit_seq: int | None = None,
) -> int | None:
    """The seq to prune through, or None when no snapshot qualifies.

    `cutoff_ms`: only a snapshot whose event is older than this qualifies. `live`: the instances
    the running server has (the current state); their start records must stay. `limit_seq`:
    never beyond this seq (what the projections have applied).
    """
    spawns: dict[Instance, int | None] = {}

    def spawn_seq(instance: Instance) -> int | None:
        if instance not in spawns:
            record = newest_start_record(reader, *instance)
            spawns[instance] = record.seq if record is not None else None
        return spawns[instance]

    for seq, snap_state in _usable_snapshots(reader, cutoff_ms, reducer_version, limit_seq):
        keep = {s for i in {*live, *live_instances(snap_state)} if (s := spawn_seq(i))}
        if not keep or seq < min(keep):
            return seq
    return None


def restatements(
    reader: DatabaseReader,
    *,
    cutoff_ms: int,
    live: Collection[Instance],
    reducer_version: str = core.REDUCER_VERSION,
    limit_seq: int | None = None,
) -> list[ProcessRecorded]:
    """Copies of the start records that would hold the newest usable prune point back.

    For each running instance whose newest start record lies at or below that snapshot, a
    `ProcessRecorded` with the same facts; appended, it lets the old record be pruned.
    """
    newest = next(_usable_snapshots(reader, cutoff_ms, reducer_version, limit_seq), None)
    if newest is None:
        return []
    out = []
    for model, instance in sorted(live):
        record = newest_start_record(reader, model, instance)
        if record is None or record.seq > newest[0]:
            continue
        body = record.body
        out.append(
            ProcessRecorded(
                model=model,
                instance=instance,
                pid=body.pid,
                pgid=body.pgid,
                port=body.port,
                started_at_ms=body.started_at_ms,
            )
        )
    return out


def _usable_snapshots(
    reader: DatabaseReader, cutoff_ms: int, reducer_version: str, limit_seq: int | None = None
) -> Iterator[tuple[int, SchedulerState]]:
    """Snapshots older than the cutoff, newest first, below the log's end (and `limit_seq`),
    that restore."""
    last = reader.last_seq()
    for seq in reader.snapshots_older_than(reducer_version, cutoff_ms):
        if seq >= last or (limit_seq is not None and seq > limit_seq):
            continue
        snap = reader.latest_snapshot(reducer_version, max_seq=seq)
        if snap is None or snap.seq != seq:
            continue
        try:
            yield seq, core.restore(snap.state)
        except core.SnapshotError:
            continue  # recovery could not start from it either


@dataclass(frozen=True, slots=True)
class StartRecord:
    """A row that says where a process runs: its seq and its body, typed."""

    seq: int
    body: ProcessSpawned | ProcessAdopted | ProcessRecorded


def newest_start_record(reader: DatabaseReader, model: str, instance: int) -> StartRecord | None:
    """The newest row that says where `model`'s `instance` runs (see `START_RECORDS`)."""
    rows = reader.read(types=START_RECORDS, key=model)
    for envelope in reversed(rows):
        body = envelope.body
        if (
            isinstance(body, ProcessSpawned | ProcessAdopted | ProcessRecorded)
            and body.instance == instance
        ):
            return StartRecord(envelope.seq, body)
    return None


def _choose(path: Path, cutoff_ms: int, live: frozenset[Instance]) -> int | None:
    with DatabaseReader(path) as reader:
        limit = reader.projected_through()
        return choose_prune_point(reader, cutoff_ms=cutoff_ms, live=live, limit_seq=limit)


def _restatements(path: Path, cutoff_ms: int, live: frozenset[Instance]) -> list[ProcessRecorded]:
    with DatabaseReader(path) as reader:
        limit = reader.projected_through()
        return restatements(reader, cutoff_ms=cutoff_ms, live=live, limit_seq=limit)


def _packing_bound(path: Path) -> int | None:
    with DatabaseReader(path) as reader:
        return reader.projected_through()


async def pack_events(
    store: EventStore, *, block_rows: int, keep_going: Callable[[], bool] = lambda: True
) -> int:
    """Pack the request events every projection has applied, `block_rows` per pack (0: off);
    returns the rows packed. None are packed before a projection has recorded a position."""
    if block_rows <= 0:
        return 0
    bound = await asyncio.to_thread(_packing_bound, store.path)
    if not bound:
        return 0
    packed = await store.pack_through(bound, block_rows=block_rows, keep_going=keep_going)
    if packed:
        log.debug("packed %d request events at or below seq %d", packed, bound)
    return packed


async def prune_events(
    store: EventStore,
    *,
    days: int,
    now_ms: int,
    live: frozenset[Instance],
    restate: Callable[[list[ProcessRecorded]], Awaitable[None]] | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Prune `store` of what is older than `days` (0: keep all); returns the events deleted.

    `restate`, when given, appends re-stated start records (and returns once they are
    committed), so running processes no longer hold the prune point back. `keep_going` is
    asked between chunks (a reload that turns retention off stops a prune under way).
    """
    if days <= 0:
        return 0
    cutoff_ms = now_ms - days * DAY_MS
    if restate is not None and live:
        records = await asyncio.to_thread(_restatements, store.path, cutoff_ms, live)
        if records:
            await restate(records)
            log.info(
                "re-stated the start of %s so that older history can be pruned",
                ", ".join(f"{r.model} (instance {r.instance})" for r in records),
            )
    point = await asyncio.to_thread(_choose, store.path, cutoff_ms, live)
    if point is None:
        return 0
    deleted = await store.prune_through(point, keep_going=keep_going)
    if deleted:
        log.info("pruned %d events up to seq %d (older than %d days)", deleted, point, days)
    return deleted
