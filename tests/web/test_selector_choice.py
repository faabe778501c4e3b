"""The handler's side of a selector's choice (web/selector_choice.py), against the real run loop,
the real reducer and a real event log: it waits for the committed answer, a scheduler bug on
the choice is that request's 500 alone, and a client that leaves ends the reservation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llamaswap_es.config.schedule import SchedulerConfig, SelectorSchedule, SelectorTarget
from llamaswap_es.core import new_state, reduce, scheduler_view
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.store import EventStore
from llamaswap_es.events.types import ConfigApplied, Decision, Envelope, Reject, SelectorRequested
from llamaswap_es.runtime.clock import ManualClock
from llamaswap_es.runtime.loop import RunLoop
from llamaswap_es.web.errors import RequestError
from llamaswap_es.web.selector_choice import Choice, SelectorChoices, choose
from tests.core.harness import groups_config
from tests.fixtures.processes import wait_until

SELECTORS = {
    name: SelectorSchedule(name, "spillover", (SelectorTarget("a", "a"), SelectorTarget("b", "b")))
    for name in ("pick", "boom")
}
CONFIG: SchedulerConfig = replace(
    groups_config([("g", ["a", "b"], {"swap": False, "exclusive": False})]), selectors=SELECTORS
)


def _reducer(state: Any, envelope: Envelope) -> tuple[Any, list[Decision]]:
    """The real reducer, with a bug: selector "boom" raises after the choice changed the state."""
    state, out = reduce(state, envelope)
    body = envelope.body
    if isinstance(body, SelectorRequested) and body.selector == "boom":
        raise ZeroDivisionError("a bug in choosing")
    return state, out


class _Actuator:
    def apply(self, decision: Decision) -> None:
        pass


async def _loop(db_path: Path) -> tuple[RunLoop, EventStore]:
    store = await EventStore.open(db_path)

    async def rebuild() -> Any:
        def replay() -> Any:
            state = new_state()
            with open_log(db_path) as reader:
                for envelope in reader.iter_inputs():
                    state, _ = _reducer(state, envelope)
            return state

        return await asyncio.to_thread(replay)

    loop = RunLoop(
        store,
        reduce=_reducer,
        state=new_state(),
        clock=ManualClock(),
        actuator=_Actuator(),
        rebuild_state=rebuild,
        view=scheduler_view,
    )
    await loop.start()
    loop.submit(ConfigApplied(config_hash="c", schedule=CONFIG.to_dict()))
    await loop.flush()
    return loop, store


async def test_the_committed_choice_comes_back_and_a_reducer_bug_is_that_requests_500(
    db_path: Path,
) -> None:
    loop, store = await _loop(db_path)
    choices = SelectorChoices()
    loop.add_listener(choices.on_committed)
    try:
        first = await choose(loop, choices, "r1", "pick", path="/v1/chat", method="POST")
        assert first == Choice(target="a", model="a")
        assert "r1" in loop.view.selections  # committed before the handler was told
        with pytest.raises(RequestError) as refused:
            await choose(loop, choices, "r2", "boom", path="/x", method="POST")
        assert refused.value.status == 500 and "ZeroDivisionError" in refused.value.message
        unknown = await choose(loop, choices, "r3", "gone", path="/x", method="POST")
        assert isinstance(unknown, Reject) and unknown.status == 404
        assert 'selector "gone" is not configured' in unknown.message
        # The loop went on, its state rebuilt from the log: r1 still holds a, so r4 joins it
        # (spillover 1 reached, b is cold).
        later = await choose(loop, choices, "r4", "pick", path="/x", method="POST")
        assert later == Choice(target="b", model="b")
        assert sorted(loop.view.selections) == ["r1", "r4"] and choices.waiting == 0
    finally:
        await loop.stop()
        await store.close()


async def test_a_client_that_leaves_while_waiting_ends_its_choice(db_path: Path) -> None:
    loop, store = await _loop(db_path)
    choices = SelectorChoices()  # not listening: no answer ever reaches the handler
    try:
        waiting = asyncio.create_task(choose(loop, choices, "r1", "pick", path="/x", method="POST"))
        await wait_until(lambda: choices.waiting == 1, 5, "the handler to wait")
        await loop.flush()
        assert "r1" in loop.view.selections  # chosen, and a's reservation held
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await loop.flush()
        assert loop.view.selections == {} and choices.waiting == 0
        with open_log(db_path) as reader:
            types = [e.type for e in reader.iter_envelopes() if e.key == "r1"]
        assert types == ["SelectorRequested", "SelectorChose", "SelectionEnded"]
    finally:
        await loop.stop()
        await store.close()
