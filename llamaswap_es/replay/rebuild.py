"""Rebuild the reducer state as it was just before a seq: from a snapshot, or from the start.

Snapshots are caches of the state after a seq, stored beside the events by the server; only one
written by this code's `REDUCER_VERSION` can be restored. Without one the replay starts from an
empty state, which is exact only when the log begins at seq 1: a log (or bundle) cut out of the
middle lacks what came before, so asking for the state inside it is an error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamaswap_es.core import REDUCER_VERSION, SnapshotError, new_state, reduce, restore
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.errors import StoreError
from llamaswap_es.events.reader import LogReader, Snapshot
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.source import LogFacts, iter_inputs


@dataclass
class Origin:
    """Where a replay begins: a state and the first seq still to reduce into it."""

    state: SchedulerState
    next_seq: int
    snapshot_seq: int | None
    note: str
    """How the state was obtained, in words (for the command's output)."""


def origin_before(reader: LogReader, facts: LogFacts, seq: int) -> Origin:
    """The newest usable starting point for a replay that must reach `seq` unreduced."""
    skipped = ""
    snap = _snapshot(reader, seq - 1)
    while snap is not None and snap.seq >= facts.first_seq - 1:
        try:
            state = restore(snap.state)
            return Origin(state, snap.seq + 1, snap.seq, f"from the snapshot at seq {snap.seq}")
        except SnapshotError as exc:
            skipped += f" (the snapshot at seq {snap.seq} was unusable: {exc})"
        snap = _snapshot(reader, snap.seq - 1)
    if facts.first_seq > 1:
        raise ReplayError(_no_origin_message(reader, facts) + skipped)
    return Origin(new_state(), 1, None, "from the start of the log" + skipped)


def later_origin(reader: LogReader, facts: LogFacts, until_seq: int) -> Origin | None:
    """The oldest usable snapshot in `first_seq..until_seq - 1`, for a log whose start is not
    covered: what follows it can still be replayed (None when there is none)."""
    found: Origin | None = None
    snap = _snapshot(reader, until_seq - 1)
    while snap is not None and snap.seq >= facts.first_seq:
        try:
            found = Origin(
                restore(snap.state), snap.seq + 1, snap.seq, f"from the snapshot at seq {snap.seq}"
            )
        except SnapshotError:
            pass
        snap = _snapshot(reader, snap.seq - 1)
    return found


def _snapshot(reader: LogReader, max_seq: int) -> Snapshot | None:
    if max_seq < 0:
        return None
    try:
        return reader.latest_snapshot(REDUCER_VERSION, max_seq=max_seq)
    except StoreError as exc:
        raise ReplayError(str(exc)) from exc


def _no_origin_message(reader: LogReader, facts: LogFacts) -> str:
    head = (
        f"{facts.path} starts at seq {facts.first_seq}: the reducer state before that is not "
        f"in it and no snapshot of reducer {REDUCER_VERSION} covers it, so its decisions cannot "
        "be recomputed"
    )
    if facts.path.name.endswith(".zst"):
        return head + "; export the log from seq 1 (the default of `replay export`)"
    head += (
        "; the events before it were pruned (eventRetentionDays) or the log was imported from "
        "a bundle cut out of the middle"
    )
    later = later_origin(reader, facts, facts.last_seq)
    if later is not None:
        return head + (
            f"; the first seq that can be replayed is {later.next_seq}, after the snapshot at "
            f"seq {later.snapshot_seq} (`--from {later.next_seq}`)"
        )
    return head


def advance(origin: Origin, reader: LogReader, until_seq: int) -> SchedulerState:
    """Reduce every input from `origin.next_seq` up to `until_seq - 1` (decisions are skipped)."""
    state = origin.state
    if until_seq > origin.next_seq:
        for env in iter_inputs(reader, origin.next_seq, until_seq - 1):
            state, _ = reduce(state, env)
    origin.state = state
    origin.next_seq = max(origin.next_seq, until_seq)
    return state


def state_before(reader: LogReader, facts: LogFacts, seq: int) -> tuple[SchedulerState, Origin]:
    """The reducer state after every input before `seq` (what the reducer saw at `seq`)."""
    origin = origin_before(reader, facts, seq)
    return advance(origin, reader, seq), origin
