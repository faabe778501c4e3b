"""A waiting request's handler is told its place by the run loop in the commit that moves it
(`RequestTicket.on_change`), against the real loop, reducer and log
(tests/fixtures/selector_loop.py: nothing ever reports a model ready there, so a request for
one waits on its swap)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llamaswap_es.events.types import RequestReceived
from llamaswap_es.runtime.loop import RequestTicket
from tests.fixtures.selector_loop import start_selector_loop


async def test_a_handler_that_fails_to_follow_its_place_stops_neither_the_loop_nor_the_others(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = await start_selector_loop(db_path)
    try:
        told: list[tuple[str, str | None, int | None]] = []

        def broken(ticket: RequestTicket) -> None:
            raise RuntimeError("the loading stream is gone")

        def follow(ticket: RequestTicket) -> None:
            told.append((ticket.request_id, ticket.phase, ticket.position))

        first = h.loop.submit_request(RequestReceived(request_id="r1", model="a"))
        second = h.loop.submit_request(RequestReceived(request_id="r2", model="a"))
        first.on_change, second.on_change = broken, follow
        with caplog.at_level(logging.ERROR, logger="llamaswap_es.runtime.loop"):
            await h.loop.flush()
        assert told == [("r2", "waiting", None)]  # on a's swap: waiting, no queue place
        assert (first.phase, second.phase) == ("waiting", "waiting")
        assert "telling request r1 its queue place failed" in caplog.text
        assert h.loop.fatal_error is None and not h.fatal

        third = h.loop.submit_request(RequestReceived(request_id="r3", model="a"))
        third.on_change = follow
        await h.loop.flush()  # the loop goes on: the next request is told too
        assert told[-1] == ("r3", "waiting", None)
        assert told.count(("r2", "waiting", None)) == 1  # told once, not on every commit
    finally:
        await h.close()
