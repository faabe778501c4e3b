"""The run loop's mechanics with the real event store: write-ahead, causes, group commit, the
answer to waiting requests, and exact in-flight accounting when a client leaves.

The reducer here is a tiny deterministic stand-in (dispatch every request at once, or reject one
model) so that each test is about the loop alone; the real scheduler runs through the loop in the
end-to-end tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    DispatchUnreachable,
    Envelope,
    Reject,
    RequestCancelled,
    RequestFinished,
    RequestReceived,
    SetTimer,
    StartProcess,
    TimerFired,
)
from llamaswap_es.runtime.clock import ManualClock
from llamaswap_es.runtime.loop import LoopStoppedError, RunLoop
from tests.fixtures.processes import wait_until


class _Recorder:
    def __init__(self) -> None:
        self.applied: list[Decision] = []
        self.committed_before_act: list[bool] = []
        self.store: EventStore | None = None

    def apply(self, decision: Decision) -> None:
        self.applied.append(decision)


def _reducer(state: dict, envelope: Envelope) -> tuple[dict, list[Decision]]:
    """Dispatch each request at once, except model 'nope' (404); count finished requests."""
    body = envelope.body
    if isinstance(body, RequestReceived):
        if body.model == "hold":  # waits for ever, as a queued request does
            return state, []
        if body.model == "nope":
            return state, [Reject(request_id=body.request_id, status=404, code="x", message="no")]
        state["in_flight"] = state.get("in_flight", 0) + 1
        return state, [
            StartProcess(model=body.model, instance=1),
            Dispatch(request_id=body.request_id, model=body.model, instance=1),
        ]
    if isinstance(body, DispatchUnreachable):  # served again by the next instance
        instance = body.instance + 1
        return state, [Dispatch(request_id=body.request_id, model=body.model, instance=instance)]
    if isinstance(body, RequestFinished):
        state["in_flight"] -= 1
        return state, [SetTimer(timer_id=f"ttl:{body.model}", at_ms=envelope.ts_ms + 1000)]
    return state, []


async def _loop(db_path: Path) -> tuple[RunLoop, EventStore, _Recorder]:
    store = await EventStore.open(db_path)
    recorder = _Recorder()
    loop = RunLoop(store, reduce=_reducer, state={}, clock=ManualClock(), actuator=recorder)
    await loop.start(first=store.server_started())
    return loop, store, recorder


async def test_decisions_are_logged_after_their_input_with_its_seq_as_cause(db_path: Path) -> None:
    loop, store, recorder = await _loop(db_path)
    ticket = loop.submit_request(RequestReceived(request_id="r1", model="a"))
    decision = await asyncio.wait_for(ticket.decision, 5)
    assert decision == Dispatch(request_id="r1", model="a", instance=1)
    await loop.flush()
    rows = await store.read(from_seq=1)
    assert [r.type for r in rows] == [
        "ServerStarted",
        "RequestReceived",
        "StartProcess",
        "Dispatch",
    ]
    received = rows[1]
    assert [r.cause for r in rows[2:]] == [received.seq, received.seq]
    assert all(r.boot == store.boot_id for r in rows)
    assert recorder.applied == [StartProcess(model="a", instance=1)]
    await loop.stop()
    await store.close()


async def test_a_request_taken_back_is_answered_again_on_the_same_ticket(db_path: Path) -> None:
    loop, store, _ = await _loop(db_path)
    ticket = loop.submit_request(RequestReceived(request_id="r1", model="a"))
    first = await asyncio.wait_for(ticket.decision, 5)
    assert isinstance(first, Dispatch) and first.instance == 1
    loop.take_back(ticket, DispatchUnreachable(request_id="r1", model="a", instance=1))
    again = await asyncio.wait_for(ticket.decision, 5)
    assert again == Dispatch(request_id="r1", model="a", instance=2)
    await loop.flush()
    rows = await store.read(from_seq=1)
    assert [r.type for r in rows if r.key == "r1"] == [
        "RequestReceived",
        "Dispatch",
        "DispatchUnreachable",
        "Dispatch",
    ]
    await loop.stop()
    await store.close()


async def test_nothing_is_acted_on_before_it_is_committed(db_path: Path) -> None:
    loop, store, recorder = await _loop(db_path)
    seen_in_log: list[bool] = []

    original_apply = recorder.apply

    def apply_and_check(decision: Decision) -> None:
        # The actuator runs after the commit: a fresh read connection already sees the decision.
        from llamaswap_es.events.open_log import open_log

        with open_log(db_path) as reader:
            seen_in_log.append(any(e.body == decision for e in reader.iter_envelopes()))
        original_apply(decision)

    recorder.apply = apply_and_check  # type: ignore[method-assign]
    ticket = loop.submit_request(RequestReceived(request_id="r1", model="a"))
    await asyncio.wait_for(ticket.decision, 5)
    await loop.flush()
    assert seen_in_log == [True]
    await loop.stop()
    await store.close()


async def test_a_burst_is_group_committed_and_every_request_gets_its_answer(db_path: Path) -> None:
    loop, store, _ = await _loop(db_path)
    tickets = [
        loop.submit_request(
            RequestReceived(request_id=f"r{i:03d}", model="nope" if i % 5 == 0 else "a")
        )
        for i in range(200)
    ]
    answers = await asyncio.wait_for(asyncio.gather(*(t.decision for t in tickets)), 10)
    assert sum(isinstance(a, Reject) for a in answers) == 40
    assert all(a.request_id == t.request_id for a, t in zip(answers, tickets, strict=True))
    await loop.flush()
    rows = await store.read(from_seq=1)
    seqs = [r.seq for r in rows]
    assert seqs == list(range(1, len(rows) + 1))
    await loop.stop()
    await store.close()


async def test_a_dispatch_for_a_client_that_left_is_finished_at_once(db_path: Path) -> None:
    loop, store, _ = await _loop(db_path)
    ticket = loop.submit_request(RequestReceived(request_id="r1", model="a"))
    # The client leaves before the loop has even reduced its request.
    loop.abandon_ticket(ticket, RequestCancelled(request_id="r1"))
    await loop.flush()
    await loop.flush()
    rows = await store.read(from_seq=1)
    types = [r.type for r in rows]
    assert types.count("Dispatch") == 1
    finished = [r.body for r in rows if isinstance(r.body, RequestFinished)]
    assert len(finished) == 1 and finished[0].status == 499
    assert loop.state["in_flight"] == 0
    assert not ticket.decision.done()
    await loop.stop()
    await store.close()


async def test_listeners_see_each_committed_batch_in_order(db_path: Path) -> None:
    loop, store, _ = await _loop(db_path)
    batches: list[list[int]] = []
    loop.add_listener(lambda envs: batches.append([e.seq for e in envs]))
    for i in range(3):
        await loop.submit_request(RequestReceived(request_id=f"r{i}", model="a")).decision
    await loop.flush()
    flat = [s for b in batches for s in b]
    # The boot's ServerStarted (seq 1) is an input like any other: listeners see it too.
    assert flat == list(range(1, 11))
    await loop.stop()
    await store.close()


async def test_requests_are_refused_once_the_loop_stops(db_path: Path) -> None:
    from llamaswap_es.runtime.loop import LoopStoppedError

    loop, store, _ = await _loop(db_path)
    await loop.stop()
    with pytest.raises(LoopStoppedError):
        loop.submit_request(RequestReceived(request_id="r1", model="a"))
    await store.close()


async def test_a_request_cancelled_before_any_decision_leaves_nothing_behind(
    db_path: Path,
) -> None:
    loop, store, _ = await _loop(db_path)
    ticket = loop.submit_request(RequestReceived(request_id="r1", model="hold"))
    await loop.flush()
    assert loop.waiting_requests == 1
    loop.abandon_ticket(ticket, RequestCancelled(request_id="r1"))
    await loop.flush()
    assert loop.waiting_requests == 0
    await loop.stop()
    await store.close()


async def test_readers_see_only_what_is_committed(db_path: Path) -> None:
    """While a batch waits for the disk (here another connection holds the write lock), the
    published view still shows the last committed state; the live state has run ahead."""
    import sqlite3

    store = await EventStore.open(db_path)
    loop = RunLoop(
        store, reduce=_reducer, state={}, clock=ManualClock(), actuator=_Recorder(), view=dict
    )
    await loop.start(first=store.server_started())
    await asyncio.wait_for(
        loop.submit_request(RequestReceived(request_id="r1", model="a")).decision, 5
    )
    assert loop.view == {"in_flight": 1}
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
    try:
        ticket = loop.submit_request(RequestReceived(request_id="r2", model="a"))
        await wait_until(lambda: loop.state.get("in_flight") == 2, 5, "r2 to be reduced")
        assert loop.view == {"in_flight": 1} and not ticket.decision.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await asyncio.wait_for(ticket.decision, 10)
    assert loop.view == {"in_flight": 2}
    await loop.stop()
    await store.close()


# ------------------------------------------------------------------ one write pipeline


async def test_server_started_is_the_first_input_even_after_earlier_submits(
    db_path: Path,
) -> None:
    """The boot's record goes through the loop like any input, ahead of anything else: the
    log, the listeners and the reducer all see it first, with the seq the loop gave it."""
    store = await EventStore.open(db_path)
    seen: list[Envelope] = []
    reduced: list[str] = []

    def reducer(state: dict, envelope: Envelope) -> tuple[dict, list[Decision]]:
        reduced.append(envelope.type)
        return _reducer(state, envelope)

    loop = RunLoop(store, reduce=reducer, state={}, clock=ManualClock(), actuator=_Recorder())
    loop.add_listener(seen.extend)
    loop.submit(TimerFired(timer_id="early"))  # submitted before the loop starts
    await loop.start(first=store.server_started())
    await loop.flush()
    rows = await store.read()
    assert [(r.seq, r.type) for r in rows] == [(1, "ServerStarted"), (2, "TimerFired")]
    assert rows[0].body == store.server_started() and rows[0].boot == store.boot_id
    assert [(e.seq, e.type) for e in seen] == [(r.seq, r.type) for r in rows]
    assert reduced == ["ServerStarted", "TimerFired"]
    await loop.stop()
    await store.close()


async def test_seqs_are_given_once_by_the_loop_and_a_second_writer_stops_it(
    db_path: Path,
) -> None:
    """The loop numbers every event itself and the log keeps those numbers. Should anything else
    append to the log meanwhile, the loop's next batch no longer continues it: that batch is
    refused unwritten and the loop stops loudly (the server exits for its supervisor); it is
    never renumbered or retried as a disk fault."""
    store = await EventStore.open(db_path)
    fatal: list[BaseException] = []
    seen: list[tuple[int, str]] = []
    loop = RunLoop(
        store,
        reduce=_reducer,
        state={},
        clock=ManualClock(),
        actuator=_Recorder(),
        on_fatal=fatal.append,
    )
    loop.add_listener(lambda envs: seen.extend((e.seq, e.type) for e in envs))
    await loop.start(first=store.server_started())
    await asyncio.wait_for(
        loop.submit_request(RequestReceived(request_id="r1", model="a")).decision, 5
    )
    await loop.flush()
    assert seen == [(r.seq, r.type) for r in await store.read()]  # the loop's numbers, kept
    assert [s for s, _ in seen] == [1, 2, 3, 4]

    await store.append_batch([Envelope(body=TimerFired(timer_id="intruder"), ts_ms=1)])
    ticket = loop.submit_request(RequestReceived(request_id="r2", model="a"))
    with pytest.raises(LoopStoppedError):
        await asyncio.wait_for(ticket.decision, 5)
    await wait_until(lambda: bool(fatal), 5, "the fatal handler")
    assert "does not continue the log" in str(fatal[0]) and "two writers" in str(fatal[0])
    assert not loop.health.report().ok and loop.health.log_writable
    rows = await store.read()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert "r2" not in {r.body.key for r in rows}
    await loop.stop()
    await store.close()


async def test_requests_beyond_the_inbox_bound_are_refused_while_a_commit_is_in_flight(
    db_path: Path,
) -> None:
    """Back-pressure is the loop's own bound: while the writer is busy (here another connection
    holds the write lock) inputs wait in the inbox, and requests past the bound are refused with
    StoreOverloadedError (503) naming the request, instead of queueing without bound."""
    import sqlite3

    from llamaswap_es.errors import StoreOverloadedError

    store = await EventStore.open(db_path)
    loop = RunLoop(
        store,
        reduce=_reducer,
        state={},
        clock=ManualClock(),
        actuator=_Recorder(),
        max_pending_requests=3,
    )
    await loop.start(first=store.server_started())
    await loop.flush()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
    try:
        first = loop.submit_request(RequestReceived(request_id="r1", model="a"))
        await wait_until(lambda: loop.state.get("in_flight") == 1, 5, "r1's batch to be written")
        waiting = [
            loop.submit_request(RequestReceived(request_id=f"r{i}", model="a")) for i in (2, 3, 4)
        ]
        with pytest.raises(StoreOverloadedError, match="r5") as refused:
            loop.submit_request(RequestReceived(request_id="r5", model="a"))
        assert "3 events are waiting to be written" in str(refused.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    decisions = await asyncio.wait_for(
        asyncio.gather(first.decision, *(t.decision for t in waiting)), 10
    )
    assert [d.request_id for d in decisions] == ["r1", "r2", "r3", "r4"]
    assert all(isinstance(d, Dispatch) for d in decisions)
    again = loop.submit_request(RequestReceived(request_id="r6", model="a"))
    assert isinstance(await asyncio.wait_for(again.decision, 5), Dispatch)
    await loop.stop()
    await store.close()
