"""The service's side of retention, on a manual clock: a snapshot a day, a prune at start-up.

No model is ever started here: the inputs are unloads (nothing to stop), so the log and the
snapshots are real while no process runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from pathlib import Path

from llamaswap_es import core
from llamaswap_es.config import load_config
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.reader import DatabaseReader
from llamaswap_es.events.types import (
    LoadRequested,
    OrphanReaped,
    RequestReceived,
    UnloadRequested,
)
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.clock import ManualClock
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.retention import DAY_MS
from llamaswap_es.runtime.service import SwapService
from tests.fixtures.processes import wait_until
from tests.runtime.log_builder import LogBuilder
from tests.runtime.test_service import _serve_one, write_config

HOUR_MS = 3_600_000


def _service(tmp_path: Path, db_path: Path, clock: ManualClock, env_tag: str, days: int = 0):
    # Always written: without it the default retention (7 days) applies; 0 keeps everything.
    extra = f"llamaswap-es:\n  eventRetentionDays: {days}"
    config = load_config(str(write_config(tmp_path, {"a": ""}, extra)), None)
    return SwapService(config, db_path=db_path, logs=UpstreamLogs(), clock=clock, env_tag=env_tag)


async def _commit_something(svc: SwapService) -> int:
    assert svc.loop is not None and svc.store is not None
    svc.loop.submit(UnloadRequested(origin="test"))
    await svc.loop.flush()
    return await svc.store.last_seq()


async def test_a_day_with_new_events_writes_a_snapshot(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    clock = ManualClock()
    svc = _service(tmp_path, db_path, clock, env_tag)
    await svc.start()
    saved: list[int] = []
    written = asyncio.Event()
    svc.add_snapshot_listener(lambda seq: (saved.append(seq), written.set()))
    try:
        clock.advance(23 * HOUR_MS)
        await _commit_something(svc)
        assert saved == [] and await svc.store.latest_snapshot(core.REDUCER_VERSION) is None
        clock.advance(HOUR_MS)
        seq = await _commit_something(svc)
        await asyncio.wait_for(written.wait(), 10)
        assert saved == [seq]
        snap = await svc.store.latest_snapshot(core.REDUCER_VERSION)
        assert snap is not None and snap.seq == seq
        assert core.digest(core.restore(snap.state)) == snap.digest
        clock.advance(HOUR_MS)  # the day starts again from that snapshot
        await _commit_something(svc)
        assert saved == [seq]
    finally:
        await svc.shutdown()


async def test_a_restart_past_the_retention_prunes_up_to_the_last_snapshot(
    tmp_path: Path, db_path: Path, env_tag: str, caplog
) -> None:
    clock = ManualClock()
    first = _service(tmp_path, db_path, clock, env_tag, days=30)
    await first.start()
    for _ in range(3):
        await _commit_something(first)
    await first.shutdown()  # writes the snapshot the prune anchors on
    with DatabaseReader(db_path) as reader:
        anchor = reader.last_seq()
        assert reader.latest_snapshot(core.REDUCER_VERSION).seq == anchor  # type: ignore[union-attr]

    clock.advance(31 * DAY_MS)
    second = _service(tmp_path, db_path, clock, env_tag, days=30)
    with caplog.at_level(logging.INFO, logger="llamaswap_es.runtime.retention"):
        await second.start()
        try:
            # Prunes run one at a time: this one starts after the start-up prune has finished.
            assert await second.prune_soon() == 0
            seq = await _commit_something(second)
        finally:
            await second.shutdown()
    with DatabaseReader(db_path) as reader:
        assert reader.first_seq() == anchor + 1
        assert reader.last_seq() > seq
    assert f"pruned {anchor} events up to seq {anchor} (older than 30 days)" in caplog.text
    assert caplog.text.count("pruned ") == 1  # nothing pruned, nothing said


async def test_without_retention_a_restart_prunes_nothing(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    clock = ManualClock()
    first = _service(tmp_path, db_path, clock, env_tag)
    await first.start()
    await first.shutdown()
    clock.advance(400 * DAY_MS)
    second = _service(tmp_path, db_path, clock, env_tag)
    await second.start()
    try:
        assert await second.prune_soon() == 0
    finally:
        await second.shutdown()
    with DatabaseReader(db_path) as reader:
        assert reader.first_seq() == 1


async def test_a_pruned_log_without_a_usable_snapshot_starts_empty_and_adopts_nothing(
    tmp_path: Path, db_path: Path, env_tag: str, spawn_tagged, caplog
) -> None:
    # The previous run: its log was pruned behind a snapshot of an older reducer (an upgrade
    # since), and model a's upstream is still running, recorded as ready after the snapshot.
    upstream = spawn_tagged([sys.executable, "-c", "import time; time.sleep(120)"], model="a")
    builder = LogBuilder(db_path)
    old_anchor = builder.at(0).snapshot("old", reducer_version="core-0")
    builder.at(1).load("a", pid=upstream.pid)
    builder.serve("done-1", "a")
    builder.input(RequestReceived(request_id="open-1", model="a", path="/v1/chat/completions"))
    builder.close()
    with sqlite3.connect(db_path) as conn:  # what a prune by the older version left behind
        conn.execute("DELETE FROM events WHERE seq <= ?", (old_anchor,))

    svc = _service(tmp_path, db_path, ManualClock(), env_tag)
    with caplog.at_level(logging.WARNING, logger="llamaswap_es.runtime.recovery"):
        await svc.start()
    try:
        assert "holds no usable snapshot of reducer" in caplog.text
        assert "starting from an empty scheduler state" in caplog.text
        assert upstream.wait(timeout=10) is not None  # reaped as an orphan, not adopted
        assert svc.view.model("a").state == "stopped"
        started_seq = await svc.store.last_seq()
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        reaped = [e.body for e in reader.iter_envelopes() if isinstance(e.body, OrphanReaped)]
        types = {e.type for e in reader.iter_envelopes()}
        report = verify(reader)
    assert [r.pid for r in reaped] == [upstream.pid]
    assert "ProcessAdopted" not in types
    with open_log(db_path) as reader:  # the one left open is ended for the activity history
        abandoned = [
            e.body.request_id for e in reader.iter_envelopes() if e.type == "RequestAbandoned"
        ]
    assert abandoned == ["open-1"]
    # The log is anchored again at once: what this run wrote verifies from its first snapshot.
    assert report.ok, report.to_text()
    assert report.from_seq <= started_seq
    assert any("are not verified" in note for note in report.notes)


async def test_a_model_loaded_for_weeks_has_its_start_restated_and_the_log_pruned(
    tmp_path: Path, db_path: Path, env_tag: str, caplog
) -> None:
    clock = ManualClock()
    svc = _service(tmp_path, db_path, clock, env_tag, days=30)
    await svc.start()
    snapshots: list[int] = []
    svc.add_snapshot_listener(snapshots.append)
    try:
        await _serve_one(svc, "r1", "a")  # a real upstream, running from day 0 on
        assert svc.loop is not None and svc.store is not None
        [spawned] = await svc.store.read(types=["ProcessSpawned"], key="a")

        async def commit_keeping_a() -> int:  # an input that changes nothing: a stays loaded
            svc.loop.submit(LoadRequested(model="a", origin="test"))
            await svc.loop.flush()
            return await svc.store.last_seq()

        clock.advance(DAY_MS)
        anchor = await commit_keeping_a()  # a day later: the snapshot the prune anchors on
        await wait_until(lambda: anchor in snapshots, timeout_s=10, what="the day-1 snapshot")
        clock.advance(40 * DAY_MS)
        with caplog.at_level(logging.INFO, logger="llamaswap_es.runtime.retention"):
            await commit_keeping_a()  # another snapshot, then a prune past day 11
            await wait_until(
                lambda: "pruned " in caplog.text, timeout_s=10, what="the prune after it"
            )
        restated = await svc.store.read(types=["ProcessRecorded"], key="a")
        assert [(r.body.pid, r.body.instance) for r in restated] == [
            (spawned.body.pid, spawned.body.instance)
        ]
        assert await svc.store.read(types=["ProcessSpawned"], key="a") == []
        assert "re-stated the start of a (instance 1)" in caplog.text
        assert svc.executor is not None and svc.executor.address("a") is not None  # still up
    finally:
        await svc.shutdown()
    with DatabaseReader(db_path) as reader:
        assert reader.first_seq() == anchor + 1
        report = verify(reader)
    assert report.ok, report.to_text()
