"""The handler's side of a selector's choice (web/selector_choice.py), against the real run loop,
the real reducer and a real event log (tests/fixtures/selector_loop.py): a client that leaves
while the choice is made ends it, and `release` ends a chosen target's reservation unless the
choice became a local request. The ticket itself is tested in tests/runtime/test_loop_selectors.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llamaswap_es.events.types import Envelope, RequestReceived, SelectorChose
from llamaswap_es.web.selector_choice import choose, release
from tests.fixtures.processes import wait_until
from tests.fixtures.selector_loop import start_selector_loop


async def test_a_client_that_leaves_while_waiting_ends_its_choice(db_path: Path) -> None:
    h = await start_selector_loop(db_path)  # selector "hold" is never answered
    try:
        waiting = asyncio.create_task(choose(h.loop, "r1", "hold", path="/x", method="POST"))
        await wait_until(lambda: h.loop.pending_inputs == 0 and len(h.logged("r1")) == 1, 5,
                         "the choice to be asked")  # fmt: skip
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await h.loop.flush()
        ended = h.logged("r1")
        assert [e.type for e in ended] == ["SelectorRequested", "SelectionEnded"]
        assert ended[-1].body.reason == "client_gone"
    finally:
        await h.close()


async def test_a_client_that_leaves_as_the_choice_is_made_releases_its_target(
    db_path: Path,
) -> None:
    """The choice is committed (its target reserved) and the handler is cancelled before it
    resumes: the reservation is released, not held until the next start."""
    h = await start_selector_loop(db_path)  # selector "pick" is answered at once
    try:
        waiting = asyncio.create_task(choose(h.loop, "r1", "pick", path="/x", method="POST"))

        def leave_when_chosen(envelopes: list[Envelope]) -> None:
            # called after the loop answered the ticket, before the handler can resume
            if any(isinstance(e.body, SelectorChose) for e in envelopes):
                waiting.cancel()

        h.loop.add_listener(leave_when_chosen)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await h.loop.flush()
        logged = h.logged("r1")
        assert [e.type for e in logged] == ["SelectorRequested", "SelectorChose", "SelectionEnded"]
        assert logged[-1].body.reason == "client_gone"
        assert h.loop.view.selections == {}
    finally:
        await h.close()


async def test_release_ends_a_peer_choice_and_leaves_a_local_request_its_reservation(
    db_path: Path,
) -> None:
    h = await start_selector_loop(db_path)
    try:
        peer, chose = await choose(h.loop, "r1", "pick", path="/x", method="POST")
        assert isinstance(chose, SelectorChose)
        release(h.loop, peer, SelectorChose(request_id="r1", selector="pick", target="p:m"))
        local, chose = await choose(h.loop, "r2", "pick", path="/x", method="POST")
        assert isinstance(chose, SelectorChose) and chose.model
        h.loop.submit_request(RequestReceived(request_id="r2", model=chose.model))
        release(h.loop, local, chose)
        await h.loop.flush()
        assert [e.body.reason for e in h.logged("r1") if e.type == "SelectionEnded"] == [
            "served_by_peer"
        ]
        assert "SelectionEnded" not in [e.type for e in h.logged("r2")]
        assert h.loop.view.selections == {}
    finally:
        await h.close()
