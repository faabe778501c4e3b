"""A peer request's record (`PeerRequestFinished`) never reaches the scheduler's decisions.

Peer requests bypass the scheduler; their one event is in the log for the history only. In every
situation below, reducing it changes nothing (same state digest, not even the clock) and decides
nothing, and a run with such records interleaved decides exactly what the same run without them
decides.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llamaswap_es import core
from llamaswap_es.events.types import PeerRequestFinished
from tests.core.harness import Run, bring_up, classic, play

RECORDS = {
    "ok": PeerRequestFinished(
        request_id="p1", model="peer/m", peer="peer", path="/v1/chat/completions", status=200,
        stream=True, metrics={"input_tokens": 3, "output_tokens": 5},
    ),
    "peer-down": PeerRequestFinished(
        request_id="p2", model="peer/m", peer="peer", status=502, error="peer proxy error: x"
    ),
    # A record that shares a local request's id and model name must still be ignored.
    "same-id-as-local": PeerRequestFinished(request_id="r1", model="A", peer="peer", status=200),
    "get": PeerRequestFinished(request_id="p3", model="A", peer="peer", method="GET", status=200),
}  # fmt: skip


def _idle(run: Run) -> None:
    pass


def _loading_with_a_waiter(run: Run) -> None:
    play(run, [("req r1 A", ["plan A []", "start A#1"])])


def _serving_with_a_queue(run: Run) -> None:
    bring_up(run, "A")
    play(run, [("req r1 A", "dispatch r1 A#1"), ("req r2 B", ...)])


def _evicting(run: Run) -> None:
    bring_up(run, "A")
    play(run, [("req r2 B", ...)])


def _shutting_down(run: Run) -> None:
    bring_up(run, "A")
    play(run, [("req r1 A", "dispatch r1 A#1"), ("shutdown", ...)])


SITUATIONS: dict[str, Callable[[Run], None]] = {
    "idle": _idle,
    "loading-with-a-waiter": _loading_with_a_waiter,
    "serving-with-a-queue": _serving_with_a_queue,
    "evicting": _evicting,
    "shutting-down": _shutting_down,
}


@pytest.mark.parametrize("record", sorted(RECORDS))
@pytest.mark.parametrize("situation", sorted(SITUATIONS))
def test_a_peer_record_changes_nothing_and_decides_nothing(situation: str, record: str) -> None:
    run = Run(classic("A", "B"))
    SITUATIONS[situation](run)
    before = core.digest(run.state)
    assert run.feed(RECORDS[record], at=60_000) == []
    assert core.digest(run.state) == before


def test_interleaved_records_leave_every_decision_as_it_was() -> None:
    """The same steps at the same times, with and without peer records between them."""
    steps = [
        (0, "req r1 A"), (5, "req r2 B"), (300, "ready A"), (310, "done r1"),
        (320, "stopped A"), (600, "ready B"), (700, "req r3 A"), (800, "done r2"),
        (900, "stopped B"), (1200, "ready A"), (1300, "done r3"),
    ]  # fmt: skip
    plain, mixed = Run(classic("A", "B")), Run(classic("A", "B"))
    plain_decisions, mixed_decisions = [], []
    for at, line in steps:
        plain_decisions.append(plain.step(f"@{at} {line}"))
        assert mixed.feed(RECORDS["ok"], at=at) == []
        mixed_decisions.append(mixed.step(f"@{at} {line}"))
    assert mixed_decisions == plain_decisions
    assert sum(map(len, plain_decisions)) > 10, "the run decided enough to compare"
