"""A selector's request is a run-loop ticket like a request's: answered with the committed
SelectorChose (or Reject), refused as a request is (400/500, 503 while the log cannot be written),
answered when the loop stops or dies, and its reservation ended exactly once: by the request it
was handed over to, by the loop when that request is refused, or by the handler otherwise.

Real run loop, real reducer, real event log (tests/fixtures/selector_loop.py); the full-disk
tests use a real full filesystem (tests/fixtures/disk.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamaswap_es.errors import InputRefusedError, LogUnavailableError
from llamaswap_es.events.types import (
    Reject,
    RequestFinished,
    RequestReceived,
    SelectorChose,
    SelectorRequested,
)
from llamaswap_es.runtime.loop import LoopStoppedError
from tests.fixtures.disk import SmallDisk
from tests.fixtures.processes import wait_until
from tests.fixtures.selector_loop import SelectorLoop, start_selector_loop


def _asked(request_id: str, selector: str = "pick") -> SelectorRequested:
    return SelectorRequested(request_id=request_id, selector=selector, path="/v1/chat")


def _types(h: SelectorLoop, request_id: str) -> list[str]:
    return [e.type for e in h.logged(request_id)]


async def test_the_committed_choice_comes_back_and_a_reducer_bug_is_that_requests_500(
    db_path: Path,
) -> None:
    h = await start_selector_loop(db_path)
    try:
        first = await asyncio.wait_for(h.loop.submit_selector(_asked("r1")).choice, 5)
        assert isinstance(first, SelectorChose) and (first.target, first.model) == ("a", "a")
        assert "r1" in h.loop.view.selections  # committed before the handler was told
        with pytest.raises(InputRefusedError) as refused:
            await asyncio.wait_for(h.loop.submit_selector(_asked("r2", "boom")).choice, 5)
        # The same refusal a request gets: 500, naming the request and the failure's seq.
        assert refused.value.status == 500
        assert "the scheduler failed on request r2 (ZeroDivisionError" in str(refused.value)
        assert "recorded in the event log at seq" in str(refused.value)
        unknown = await asyncio.wait_for(h.loop.submit_selector(_asked("r3", "gone")).choice, 5)
        assert isinstance(unknown, Reject) and unknown.status == 404
        assert 'selector "gone" is not configured' in unknown.message
        # The loop went on, its state rebuilt from the log: r1 still holds a, so r4 joins it
        # (spillover 1 reached, b is cold).
        later = await asyncio.wait_for(h.loop.submit_selector(_asked("r4")).choice, 5)
        assert isinstance(later, SelectorChose) and later.target == "b"
        assert sorted(h.loop.view.selections) == ["r1", "r4"]
    finally:
        await h.close()


async def test_a_selector_request_that_cannot_be_encoded_is_refused_alone_with_400(
    db_path: Path,
) -> None:
    h = await start_selector_loop(db_path)
    try:
        bad = h.loop.submit_selector(
            SelectorRequested(request_id="r1", selector="pick", path="/v1/\udcff")
        )
        good = h.loop.submit_selector(_asked("r2"))
        with pytest.raises(InputRefusedError) as refused:
            await asyncio.wait_for(bad.choice, 5)
        assert refused.value.status == 400
        assert "request r1 cannot be recorded: SelectorRequested.path" in str(refused.value)
        assert isinstance(await asyncio.wait_for(good.choice, 5), SelectorChose)
        assert _types(h, "r1") == ["InputRefused"]
        assert list(h.loop.view.selections) == ["r2"]
    finally:
        await h.close()


async def test_a_choice_handed_over_to_its_request_is_ended_by_that_request_alone(
    db_path: Path,
) -> None:
    """The handler may be done before its request is committed (its client left, or it was
    answered 503): the choice is the request's from the moment it was submitted, so the log
    must not say the choice was never scheduled."""
    h = await start_selector_loop(db_path)
    try:
        ticket = h.loop.submit_selector(_asked("r1"))
        await asyncio.wait_for(ticket.choice, 5)
        h.loop.submit_request(RequestReceived(request_id="r1", model="a"))
        h.loop.end_selection(ticket, "not_scheduled")  # before the request is committed
        await h.loop.flush()
        assert _types(h, "r1")[:3] == ["SelectorRequested", "SelectorChose", "RequestReceived"]
        assert "SelectionEnded" not in _types(h, "r1")
        assert h.loop.view.selections == {}
        assert h.loop.state.requests["r1"].selector == "pick"  # the request holds the reservation
    finally:
        await h.close()


async def test_a_chosen_request_that_is_refused_ends_its_choice(db_path: Path) -> None:
    h = await start_selector_loop(db_path)
    try:
        ticket = h.loop.submit_selector(_asked("r1"))
        await asyncio.wait_for(ticket.choice, 5)
        bad = h.loop.submit_request(
            RequestReceived(request_id="r1", model="a", metadata={"session_id": "\udcff"})
        )
        with pytest.raises(InputRefusedError) as refused:
            await asyncio.wait_for(bad.decision, 5)
        assert refused.value.status == 400
        h.loop.end_selection(ticket, "not_scheduled")  # the handler's: nothing more to do
        await h.loop.flush()
        ended = [e.body for e in h.logged("r1") if e.type == "SelectionEnded"]
        assert [e.reason for e in ended] == ["not_scheduled"]  # once, by the loop
        assert h.loop.view.selections == {}
    finally:
        await h.close()


async def test_a_choice_that_is_not_handed_over_is_ended_by_the_handler(db_path: Path) -> None:
    h = await start_selector_loop(db_path)
    try:
        ticket = h.loop.submit_selector(_asked("r1"))
        await asyncio.wait_for(ticket.choice, 5)
        h.loop.end_selection(ticket, "served_by_peer")
        h.loop.end_selection(ticket, "served_by_peer")  # a second call records nothing
        await h.loop.flush()
        assert _types(h, "r1") == ["SelectorRequested", "SelectorChose", "SelectionEnded"]
        assert h.logged("r1")[-1].body.reason == "served_by_peer"
        assert h.loop.view.selections == {}
    finally:
        await h.close()


async def test_a_graceful_stop_answers_a_choice_still_waiting(small_disk: SmallDisk) -> None:
    """The log cannot be written when the server is told to stop: the batch that holds the
    selector's request is dropped, and its handler is answered (it used to wait for ever)."""
    h = await start_selector_loop(small_disk.path / "events.db")
    small_disk.fill()
    ticket = h.loop.submit_selector(_asked("r1"))
    await asyncio.wait_for(h.loop.stop(), 10)
    with pytest.raises(LoopStoppedError, match="the server is shutting down"):
        await asyncio.wait_for(ticket.choice, 5)
    small_disk.free()
    await h.store.close()


async def test_a_dead_loop_answers_a_choice_still_waiting(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = await start_selector_loop(db_path)
    try:
        ticket = h.loop.submit_selector(_asked("r1", "hold"))
        await h.loop.flush()
        assert not ticket.choice.done()
        h.loop.submit(RequestFinished(request_id="x", model="boom", status=200))
        with pytest.raises(LoopStoppedError, match="stopped after an internal error"):
            await asyncio.wait_for(ticket.choice, 5)
        assert len(h.fatal) == 1
        h.loop.end_selection(ticket, "client_gone")
        assert "the end of selector choice r1 was not recorded" in caplog.text
    finally:
        await h.close()


async def test_a_choice_waiting_on_a_full_disk_is_answered_503_and_ended(
    small_disk: SmallDisk,
) -> None:
    h = await start_selector_loop(small_disk.path / "events.db")
    try:
        small_disk.fill()
        ticket = h.loop.submit_selector(_asked("r1"))
        with pytest.raises(LogUnavailableError) as refused:
            await asyncio.wait_for(ticket.choice, 10)
        assert "request r1 for selector 'pick' was refused: the event log cannot be" in str(
            refused.value
        )
        assert refused.value.retry_after_s > 0
        h.loop.end_selection(ticket, "log_unavailable")  # already ended by the loop: no-op
        small_disk.free()
        await wait_until(lambda: h.loop.health.report().ok, 10, "the loop to heal")
        await h.loop.flush()
        assert _types(h, "r1") == ["SelectorRequested", "SelectorChose", "SelectionEnded"]
        assert h.logged("r1")[-1].body.reason == "log_unavailable"
        assert h.loop.view.selections == {}
    finally:
        await h.close()
