"""Where the event log may be pruned, and that a pruned log recovers and verifies like a whole one.

Logs are written by the real reducer at chosen days (`LogBuilder`); "now" is day 100 and the
retention 30 days, so a snapshot qualifies when its event is older than day 70.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from llamaswap_es import core
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.types import Envelope, LoadRequested, ProcessRecorded
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.recovery import rebuild
from llamaswap_es.runtime.retention import (
    DAY_MS,
    choose_prune_point,
    live_instances,
    prune_events,
    restatements,
)
from tests.fixtures.event_store import open_booted_store
from tests.runtime.log_builder import BASE_MS, LogBuilder

NOW_MS = BASE_MS + 100 * DAY_MS
CUTOFF_MS = NOW_MS - 30 * DAY_MS


def no_snapshot(b: LogBuilder) -> None:
    b.at(10).load("a")
    b.at(50).unload()


def snapshot_too_new(b: LogBuilder) -> None:
    b.at(10).load("a")
    b.at(80).unload()
    b.snapshot("s80")
    b.at(90).load("b")


def two_qualify_newest_wins(b: LogBuilder) -> None:
    b.at(10).snapshot("s10")
    b.at(20).load("a")
    b.unload()
    b.at(50).snapshot("s50")
    b.at(80).load("b")
    b.snapshot("s80")
    b.at(90).unload()


def capped_by_a_running_model(b: LogBuilder) -> None:
    b.at(10).snapshot("s10")
    b.at(40).load("a")  # still running now: its ProcessSpawned must stay
    b.at(50).snapshot("s50")
    b.at(90).input(LoadRequested(model="a"))  # already running: nothing to do


def cap_leaves_no_snapshot(b: LogBuilder) -> None:
    b.at(5).load("a")
    b.at(10).snapshot("s10")
    b.at(50).snapshot("s50")


def capped_by_the_snapshots_own_process(b: LogBuilder) -> None:
    b.at(1).snapshot("s1")
    b.at(40).load("a")
    b.at(50).snapshot("s50")  # a is running in this snapshot's state
    b.at(80).unload()


def a_stopped_model_does_not_cap(b: LogBuilder) -> None:
    b.at(5).load("a")
    b.at(20).unload()
    b.at(50).snapshot("s50")
    b.at(90).load("b")


def never_the_newest_event(b: LogBuilder) -> None:
    b.at(10).load("a")
    b.unload()
    b.snapshot("s10")  # at the last seq of the log


CASES: list[tuple[Callable[[LogBuilder], None], str | None]] = [
    (no_snapshot, None),
    (snapshot_too_new, None),
    (two_qualify_newest_wins, "s50"),
    (capped_by_a_running_model, "s10"),
    (cap_leaves_no_snapshot, None),
    (capped_by_the_snapshots_own_process, "s1"),
    (a_stopped_model_does_not_cap, "s50"),
    (never_the_newest_event, None),
]


@pytest.mark.parametrize(("build", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_the_prune_point_is_the_newest_safe_old_snapshot(
    db_path: Path, build: Callable[[LogBuilder], None], expected: str | None
) -> None:
    builder = LogBuilder(db_path)
    build(builder)
    builder.close()
    live = live_instances(builder.state)
    with DatabaseReader(db_path) as reader:
        point = choose_prune_point(reader, cutoff_ms=CUTOFF_MS, live=live)
    assert point == (builder.snapshots[expected] if expected else None)


def test_another_reducers_snapshot_is_never_a_prune_point(db_path: Path) -> None:
    builder = LogBuilder(db_path)
    builder.at(10).snapshot("old", reducer_version="core-0")
    builder.at(20).load("a")
    builder.unload()
    builder.close()
    with DatabaseReader(db_path) as reader:
        assert choose_prune_point(reader, cutoff_ms=CUTOFF_MS) is None


def _history(builder: LogBuilder) -> None:
    """Sixty days of loads and swaps with a snapshot every ten days; `b` runs at the end."""
    for day in range(0, 60, 10):
        builder.at(day).snapshot(f"s{day}")
        builder.at(day + 1).load("a")
        builder.at(day + 2).load("b")
        builder.at(day + 3).unload()
    builder.at(95).load("b")


async def test_a_pruned_log_recovers_and_verifies_like_the_whole_log(
    db_path: Path, tmp_path: Path
) -> None:
    builder = LogBuilder(db_path)
    _history(builder)
    builder.close()
    whole = tmp_path / "whole.db"
    shutil.copy(db_path, whole)

    store = await open_booted_store(db_path, ts_ms=NOW_MS)
    try:
        live = live_instances(builder.state)
        deleted = await prune_events(store, days=30, now_ms=NOW_MS, live=live)
        boot = store.boot_id
    finally:
        await store.close()
    point = builder.snapshots["s50"]
    assert deleted == point
    with DatabaseReader(db_path) as reader:
        assert reader.first_seq() == point + 1
        report = verify(reader)
    assert report.ok, report.to_text()
    assert report.origin == f"from the snapshot at seq {point}"

    pruned = rebuild(db_path, boot)
    assert pruned.from_snapshot_seq == point and not pruned.history_lost
    assert [p.model for p in pruned.processes] == ["b"]  # its spawn row survived the prune
    assert pruned.processes[0].pid is not None
    full = core.new_state()  # the whole log, plus the ServerStarted the pruned one got since
    with open_log(whole) as reader:
        for env in reader.iter_envelopes():
            full, _ = core.reduce(full, env)
    with open_log(db_path) as reader:
        for env in reader.iter_envelopes(from_seq=reader.last_seq()):
            full, _ = core.reduce(full, env)
    assert core.digest(pruned.state) == core.digest(full)


async def test_nothing_is_pruned_with_retention_off_or_nothing_old_enough(db_path: Path) -> None:
    builder = LogBuilder(db_path)
    _history(builder)
    builder.close()
    store = await open_booted_store(db_path, ts_ms=NOW_MS)
    try:
        live = live_instances(builder.state)
        assert await prune_events(store, days=0, now_ms=NOW_MS, live=live) == 0
        assert await prune_events(store, days=365, now_ms=NOW_MS, live=live) == 0
    finally:
        await store.close()
    with DatabaseReader(db_path) as reader:
        assert reader.first_seq() == 1


async def test_a_model_running_for_weeks_is_restated_and_no_longer_holds_pruning_back(
    db_path: Path,
) -> None:
    builder = LogBuilder(db_path)
    capped_by_a_running_model(builder)  # a loaded on day 40 and running since
    builder.close()
    with DatabaseReader(db_path) as reader:
        spawned = reader.read(types=("ProcessSpawned",), key="a")[-1]
    original = spawned.body
    assert builder.snapshots["s10"] < spawned.seq < builder.snapshots["s50"]

    store = await open_booted_store(db_path, ts_ms=NOW_MS)
    appended: list[ProcessRecorded] = []

    async def restate(records: list[ProcessRecorded]) -> None:  # what the service's loop does
        appended.extend(records)
        await store.append_batch([Envelope(body=r, ts_ms=NOW_MS) for r in records])

    try:
        live = live_instances(builder.state)
        deleted = await prune_events(store, days=30, now_ms=NOW_MS, live=live, restate=restate)
        boot = store.boot_id
    finally:
        await store.close()
    assert [(r.model, r.instance, r.pid, r.pgid) for r in appended] == [
        ("a", 1, original.pid, original.pgid)
    ]
    assert deleted == builder.snapshots["s50"], "pruned through s50, past a's old spawn row"
    with DatabaseReader(db_path) as reader:
        assert reader.read(types=("ProcessSpawned",), key="a") == []
        report = verify(reader)
    assert report.ok, report.to_text()
    recovered = rebuild(db_path, boot)
    assert [(p.model, p.pid) for p in recovered.processes] == [("a", original.pid)]


async def test_nothing_is_restated_when_no_start_record_is_in_the_way(db_path: Path) -> None:
    builder = LogBuilder(db_path)
    a_stopped_model_does_not_cap(builder)  # b loaded on day 90: after the prune point
    builder.close()
    with DatabaseReader(db_path) as reader:
        live = live_instances(builder.state)
        assert live and restatements(reader, cutoff_ms=CUTOFF_MS, live=live) == []


async def test_pruning_never_passes_what_the_projections_have_applied(db_path: Path) -> None:
    builder = LogBuilder(db_path)
    two_qualify_newest_wins(builder)  # s50 would be the prune point
    builder.close()
    behind = builder.snapshots["s50"] - 1  # the activity projection stopped just before it
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "INSERT INTO projection_checkpoints (name, seq, state, updated_ms) "
            "VALUES ('activity', ?, '', 0)",
            (behind,),
        )
    conn.close()
    store = await open_booted_store(db_path, ts_ms=NOW_MS)
    try:
        live = live_instances(builder.state)
        deleted = await prune_events(store, days=30, now_ms=NOW_MS, live=live)
    finally:
        await store.close()
    assert deleted == builder.snapshots["s10"], "only what the projection has already applied"
