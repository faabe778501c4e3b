"""The run loop contains faults (ARCHITECTURE §11): one bad input is refused alone, a reducer bug
either is contained (the state rebuilt from the committed log) or stops the loop loudly, and a log
that cannot be written degrades the loop until a write succeeds again.

The reducer is a tiny deterministic stand-in, so each test is about the loop; the real scheduler
runs through the same loop in the end-to-end fault tests (tests/e2e/test_faults.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llamaswap_es.errors import InputRefusedError, LogUnavailableError
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    Envelope,
    InputRefused,
    RequestFinished,
    RequestReceived,
)
from llamaswap_es.runtime.clock import ManualClock
from llamaswap_es.runtime.loop import MAX_REDUCER_FAILURES, LoopStoppedError, RunLoop
from llamaswap_es.runtime.loop_health import LoopHealth
from tests.fixtures.disk import SmallDisk
from tests.fixtures.processes import wait_until


class _Actuator:
    def apply(self, decision: Decision) -> None:
        pass


def _reducer(state: dict[str, Any], envelope: Envelope) -> tuple[dict[str, Any], list[Decision]]:
    """Dispatch every request at once and count it; model 'boom' makes the reducer raise after
    it has already changed the state (as a real bug could), 'hold' waits for ever."""
    body = envelope.body
    if isinstance(body, RequestReceived):
        state["received"] = state.get("received", 0) + 1
        if body.model == "boom":
            raise ZeroDivisionError("a bug in the scheduler")
        if body.model == "hold":
            return state, []
        return state, [Dispatch(request_id=body.request_id, model=body.model, instance=1)]
    if isinstance(body, RequestFinished):
        if body.model == "boom":
            raise ZeroDivisionError("a bug on a finished request")
        state["finished"] = state.get("finished", 0) + 1
    return state, []


def _replay(db_path: Path, through_seq: int | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    with open_log(db_path) as reader:
        for envelope in reader.iter_inputs():
            if through_seq is not None and envelope.seq > through_seq:
                break
            state, _ = _reducer(state, envelope)
    return state


class _Harness:
    def __init__(self, loop: RunLoop, store: EventStore, fatal: list[BaseException]) -> None:
        self.loop, self.store, self.fatal = loop, store, fatal

    async def close(self) -> None:
        await self.loop.stop()
        await self.store.close()


async def _start(db_path: Path, *, rebuild: bool = True, **kwargs: Any) -> _Harness:
    store = await EventStore.open(db_path)
    fatal: list[BaseException] = []

    async def rebuild_state() -> dict[str, Any]:
        return await asyncio.to_thread(_replay, db_path)

    loop = RunLoop(
        store,
        reduce=_reducer,
        state={},
        clock=ManualClock(),
        actuator=_Actuator(),
        rebuild_state=rebuild_state if rebuild else None,
        on_fatal=fatal.append,
        **kwargs,
    )
    await loop.start(first=store.server_started())
    return _Harness(loop, store, fatal)


async def test_a_request_that_cannot_be_encoded_is_refused_alone_with_400(db_path: Path) -> None:
    h = await _start(db_path)
    before = h.loop.submit_request(RequestReceived(request_id="r1", model="a"))
    bad = h.loop.submit_request(
        RequestReceived(request_id="r2", model="a", metadata={"session_id": "\udcff"})
    )
    after = h.loop.submit_request(RequestReceived(request_id="r3", model="a"))
    assert isinstance(await asyncio.wait_for(before.decision, 5), Dispatch)
    assert isinstance(await asyncio.wait_for(after.decision, 5), Dispatch)
    with pytest.raises(InputRefusedError) as refused:
        await asyncio.wait_for(bad.decision, 5)
    assert refused.value.status == 400
    assert "r2" in str(refused.value) and "RequestReceived.metadata" in str(refused.value)
    await h.loop.flush()
    rows = await h.store.read(from_seq=1)
    refusals = [r.body for r in rows if isinstance(r.body, InputRefused)]
    assert refusals == [
        InputRefused(
            input_type="RequestReceived",
            key="r2",
            stage="encode",
            error="RequestReceived.metadata: str is not valid UTF-8: surrogates not allowed",
        )
    ]
    assert h.loop.health.report().ok and h.fatal == []
    again = h.loop.submit_request(RequestReceived(request_id="r4", model="a"))
    assert isinstance(await asyncio.wait_for(again.decision, 5), Dispatch)
    await h.close()


async def test_an_internal_fact_that_cannot_be_encoded_is_repaired_and_recorded(
    db_path: Path,
) -> None:
    h = await _start(db_path)
    h.loop.submit(
        RequestFinished(
            request_id="r1", model="a", status=200, metrics={"tokens": 2**70}, error="\udcff!"
        )
    )
    await h.loop.flush()
    finished = [r.body for r in await h.store.read(from_seq=1) if r.type == "RequestFinished"]
    assert len(finished) == 1
    assert finished[0].metrics == {"tokens": 2**63 - 1} and finished[0].error == "\ufffd!"
    assert h.loop.state["finished"] == 1 == _replay(db_path)["finished"]
    await h.close()


async def test_a_reducer_failure_on_a_request_is_contained_and_the_state_equals_a_replay(
    db_path: Path,
) -> None:
    h = await _start(db_path)
    seen: list[tuple[int, dict[str, Any]]] = []  # what each listener call could read
    h.loop.add_listener(lambda envs: seen.append((envs[-1].seq, dict(h.loop.state))))
    tickets = [
        h.loop.submit_request(RequestReceived(request_id=f"r{i}", model=m))
        for i, m in enumerate(["a", "boom", "a", "a"])
    ]
    answers = await asyncio.wait_for(
        asyncio.gather(*(t.decision for t in tickets), return_exceptions=True), 10
    )
    assert [type(a).__name__ for a in answers] == [
        "Dispatch",
        "InputRefusedError",
        "Dispatch",
        "Dispatch",
    ]
    refused = answers[1]
    assert isinstance(refused, InputRefusedError) and refused.status == 500
    assert "r1" in str(refused) and "ZeroDivisionError" in str(refused)
    await h.loop.flush()
    # The bug had already counted the request before raising: the state was rebuilt from the
    # log, where the refused request is not, so live and replayed state agree.
    assert h.loop.state == _replay(db_path) == {"received": 3}
    # No listener (the snapshot trigger is one) ever saw the half-changed state.
    assert seen and all(state == _replay(db_path, seq) for seq, state in seen)
    rows = await h.store.read(from_seq=1)
    assert [r.type for r in rows if r.type in ("RequestReceived", "InputRefused")] == [
        "RequestReceived",
        "InputRefused",
        "RequestReceived",
        "RequestReceived",
    ]
    assert h.loop.health.report().ok and h.fatal == []
    await h.close()


async def test_a_reducer_failure_on_an_internal_fact_stops_the_loop_loudly(db_path: Path) -> None:
    h = await _start(db_path)
    waiting = h.loop.submit_request(RequestReceived(request_id="r1", model="hold"))
    await h.loop.flush()
    h.loop.submit(RequestFinished(request_id="x", model="boom", status=200))
    await wait_until(lambda: bool(h.fatal), 5, "the fatal handler")
    assert "RequestFinished" in str(h.fatal[0])
    report = h.loop.health.report()
    assert not report.ok and "the scheduler stopped" in report.text()
    with pytest.raises(LoopStoppedError):
        await asyncio.wait_for(waiting.decision, 5)
    with pytest.raises(LoopStoppedError):
        h.loop.submit_request(RequestReceived(request_id="r2", model="a"))
    await h.close()


async def test_without_a_way_to_rebuild_any_reducer_failure_is_fatal(db_path: Path) -> None:
    h = await _start(db_path, rebuild=False)
    ticket = h.loop.submit_request(RequestReceived(request_id="r1", model="boom"))
    with pytest.raises(LoopStoppedError):
        await asyncio.wait_for(ticket.decision, 5)
    assert h.fatal and not h.loop.health.report().ok
    await h.close()


async def test_reducer_failures_that_repeat_stop_the_loop(db_path: Path) -> None:
    h = await _start(db_path)
    for i in range(MAX_REDUCER_FAILURES + 1):
        ticket = h.loop.submit_request(RequestReceived(request_id=f"r{i}", model="boom"))
        with pytest.raises((InputRefusedError, LoopStoppedError)):
            await asyncio.wait_for(ticket.decision, 10)
    await wait_until(lambda: bool(h.fatal), 5, "the fatal handler")
    assert "times within" in str(h.fatal[0])
    await h.close()


async def test_an_idle_loop_keeps_beating(db_path: Path) -> None:
    beats: list[float] = []
    clock = [0.0]

    def monotonic() -> float:
        beats.append(clock[0])
        return clock[0]

    h = await _start(db_path, health=LoopHealth(monotonic=monotonic, stale_after_s=10))
    await wait_until(lambda: len(beats) >= 4, 10, "heartbeats of an idle loop")
    assert h.loop.health.turning()
    await h.close()
    assert not h.loop.health.turning()


def test_health_names_a_stale_heartbeat() -> None:
    now = [100.0]
    health = LoopHealth(monotonic=lambda: now[0], stale_after_s=10)
    health.beat()
    now[0] += 9
    assert health.report().ok
    now[0] += 3
    report = health.report()
    assert not report.ok and report.text() == "the scheduler loop has not turned for 12 s"
    assert not health.turning()


# ------------------------------------------------------------------------ a full disk


async def test_a_full_disk_degrades_the_loop_and_it_heals_when_space_returns(
    small_disk: SmallDisk,
) -> None:
    db_path = small_disk.path / "events.db"
    h = await _start(db_path)
    served = h.loop.submit_request(RequestReceived(request_id="r1", model="a"))
    assert isinstance(await asyncio.wait_for(served.decision, 5), Dispatch)

    small_disk.fill()
    waiting = h.loop.submit_request(RequestReceived(request_id="r2", model="a"))
    # Held a second, then answered 503 with the cause; the loop itself stays alive.
    with pytest.raises(LogUnavailableError) as refused:
        await asyncio.wait_for(waiting.decision, 10)
    assert "disk holding the event log is full" in str(refused.value)
    assert refused.value.retry_after_s > 0
    report = h.loop.health.report()
    assert not report.ok and "cannot be written" in report.text()
    with pytest.raises(LogUnavailableError):
        h.loop.submit_request(RequestReceived(request_id="r3", model="a"))
    # Facts from work already admitted are kept (in memory, bounded by that work).
    h.loop.submit(RequestFinished(request_id="r1", model="a", status=200))
    assert h.fatal == []

    small_disk.free()
    await wait_until(lambda: h.loop.health.report().ok, 10, "the loop to heal")
    await h.loop.flush()
    after = h.loop.submit_request(RequestReceived(request_id="r4", model="a"))
    assert isinstance(await asyncio.wait_for(after.decision, 5), Dispatch)
    await h.loop.flush()
    rows = await h.store.read(from_seq=1)
    seqs = [r.seq for r in rows]
    assert seqs == list(range(1, len(rows) + 1))
    finished = {r.body.request_id: r.body for r in rows if isinstance(r.body, RequestFinished)}
    # r1 was answered before the fault and finished during it: recorded. r2 was dispatched in
    # the batch that could not be written; its client got 503, and the log says so.
    assert finished["r1"].status == 200
    assert finished["r2"].status == 503 and "cannot be written" in (finished["r2"].error or "")
    assert h.loop.state == _replay(db_path)
    await h.close()


async def test_stopping_while_the_disk_is_full_drops_only_what_was_never_acted_on(
    small_disk: SmallDisk,
) -> None:
    db_path = small_disk.path / "events.db"
    h = await _start(db_path)
    await asyncio.wait_for(
        h.loop.submit_request(RequestReceived(request_id="r1", model="a")).decision, 5
    )
    await h.loop.flush()
    small_disk.fill()
    waiting = h.loop.submit_request(RequestReceived(request_id="r2", model="a"))
    await wait_until(lambda: not h.loop.health.log_writable, 5, "the loop to degrade")
    await asyncio.wait_for(h.loop.stop(), 10)
    with pytest.raises((LogUnavailableError, LoopStoppedError)):
        await waiting.decision
    small_disk.free()
    await h.store.close()
    with open_log(db_path) as reader:
        types = [e.type for e in reader.iter_envelopes()]
    assert types.count("Dispatch") == 1  # r1's; r2's dispatch was never written nor acted on


async def test_a_full_disk_during_the_first_batch_degrades_and_heals(
    small_disk: SmallDisk,
) -> None:
    """The boot's ServerStarted is the loop's first batch: a disk that is full from the start
    degrades the loop as any later batch would (requests 503 naming the cause), and once space
    returns the log starts with that ServerStarted and serving resumes."""
    db_path = small_disk.path / "events.db"
    store = await EventStore.open(db_path)  # the file exists; nothing is written yet
    small_disk.fill()
    fatal: list[BaseException] = []
    loop = RunLoop(
        store,
        reduce=_reducer,
        state={},
        clock=ManualClock(),
        actuator=_Actuator(),
        on_fatal=fatal.append,
    )
    h = _Harness(loop, store, fatal)
    await loop.start(first=store.server_started())
    await wait_until(lambda: not loop.health.log_writable, 10, "the loop to degrade")
    with pytest.raises(LogUnavailableError, match="disk holding the event log is full"):
        loop.submit_request(RequestReceived(request_id="r1", model="a"))
    assert "cannot be written" in loop.health.report().text()

    small_disk.free()
    await wait_until(lambda: loop.health.report().ok, 10, "the loop to heal")
    served = loop.submit_request(RequestReceived(request_id="r2", model="a"))
    assert isinstance(await asyncio.wait_for(served.decision, 5), Dispatch)
    await loop.flush()
    rows = await store.read(from_seq=1)
    assert [(r.seq, r.type) for r in rows] == [
        (1, "ServerStarted"),
        (2, "RequestReceived"),
        (3, "Dispatch"),
    ]
    assert rows[0].body == store.server_started() and fatal == []
    await h.close()
