"""The queue timeout (`queueTimeoutSeconds`): ours, spec B.1 #12 and B.3 item 3.

A client's request still in the queue more than `queue_timeout_ms` after it arrived is answered
503 `queue_timeout`. The timer is armed when a request is queued and cancelled when it is
dispatched or leaves; a request that has joined a swap (its model is loading for it) is not
rejected by it. A load (no client) is never timed out.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamaswap_es.events.types import Reject
from tests.core.harness import Run, bring_up, classic, play

TIMEOUT = classic("A", "B", queue_timeout_ms=3000)

BUSY_A = [("@0 load A", ...), ("@0 ready A", ""), ("@0 req r1 A", "dispatch r1 A#1")]
"""A is ready and serving r1: a request for B must queue (A is busy and cannot be evicted)."""

SCENARIOS: dict[str, list[tuple[str, object]]] = {
    "still queued at the deadline: 503": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@3011 timer queue:r2", "reject r2 503 queue_timeout"),
        ("@3100 done r1", ""),  # nothing is left to swap for
    ],
    "a timer that fires early only re-arms (strictly longer than the timeout)": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@3010 timer queue:r2", "timer queue:r2 @3011"),
        ("@3011 timer queue:r2", "reject r2 503 queue_timeout"),
    ],
    "joining its swap cancels the timer": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@100 done r1", ["cancel-timer queue:r2", "plan B [A]", "stop A#1 evict 10000"]),
        ("@200 stopped A", "start B#1"),
        ("@500 ready B", "dispatch r2 B#1"),
    ],
    "loading for it at the deadline: not rejected": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@100 done r1", ["cancel-timer queue:r2", "plan B [A]", "stop A#1 evict 10000"]),
        ("@200 stopped A", "start B#1"),
        ("@3011 timer queue:r2", ""),
        ("@9000 ready B", "dispatch r2 B#1"),
    ],
    "joined a swap already under way: not rejected": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@100 done r1", ["cancel-timer queue:r2", "plan B [A]", "stop A#1 evict 10000"]),
        ("@150 req r3 B", ""),  # joins B's swap at once: never queued, no timer
        ("@3011 timer queue:r2", ""),
        ("@3200 stopped A", "start B#1"),
        ("@9000 ready B", ["dispatch r2 B#1", "dispatch r3 B#1"]),
    ],
    "a client that leaves cancels its timer": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@20 cancel r2", "cancel-timer queue:r2"),
        ("@3011 timer queue:r2", ""),
    ],
    "the fast path arms nothing": [
        ("@10 req r2 A", "dispatch r2 A#1"),
    ],
    "the others move up when one times out": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@20 req r3 B", ["timer queue:r3 @3021", "pos r2:1 r3:2"]),
        ("@3011 timer queue:r2", ["reject r2 503 queue_timeout", "pos r3:1"]),
        ("@3021 timer queue:r3", "reject r3 503 queue_timeout"),
    ],
    "a load is never timed out": [
        ("@10 load B", "pos load:5:1"),
        ("@9000 done r1", ["plan B [A]", "stop A#1 evict 10000"]),
    ],
    "an unload answers the queued request and cancels its timer": [
        ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
        ("@20 unload B", ["cancel-timer queue:r2", "reject r2 500 model_unloaded"]),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_queue_timeout(name: str) -> None:
    run = Run(TIMEOUT)
    play(run, BUSY_A)
    play(run, SCENARIOS[name])


def test_the_reject_names_the_model_the_wait_and_the_setting() -> None:
    run = Run(TIMEOUT)
    play(run, BUSY_A)
    run.step("@10 req r2 B")
    (reject,) = run.feed(run.parse("timer queue:r2"), at=3500)
    assert isinstance(reject, Reject)
    assert (reject.status, reject.code) == (503, "queue_timeout")
    assert reject.message == (
        'request waited 3.5 s in the queue for model "B" (queueTimeoutSeconds: 3)'
    )


def test_off_by_default_arms_nothing() -> None:
    run = Run(classic("A", "B"))
    play(run, BUSY_A)
    play(run, [("@10 req r2 B", "pos r2:1"), ("@999999 req r3 B", "pos r2:1 r3:2")])
    assert run.state.timers == {}


def test_a_timeout_lets_requests_held_back_by_the_starving_one_through() -> None:
    """With the starvation bound below the timeout, a request for the busy model that queued
    behind the starving one is dispatched as soon as the starving one times out."""
    run = Run(classic("A", "B", starvation_bound_ms=5000, queue_timeout_ms=8000))
    play(
        run,
        [
            *BUSY_A,
            ("@1 req r2 B", ["timer queue:r2 @8002", "pos r2:1"]),
            ("@5002 req r5 A", ["timer queue:r5 @13003", "pos r2:1 r5:2"]),  # r2 is starving
            (
                "@8002 timer queue:r2",
                ["reject r2 503 queue_timeout", "cancel-timer queue:r5", "dispatch r5 A#1"],
            ),
        ],
    )


def test_the_starvation_bound_forces_the_swap_before_the_timeout() -> None:
    run = Run(classic("A", "B", starvation_bound_ms=5000, queue_timeout_ms=8000))
    play(
        run,
        [
            *BUSY_A,
            ("@1 req r2 B", ["timer queue:r2 @8002", "pos r2:1"]),
            ("@5002 req r5 A", ["timer queue:r5 @13003", "pos r2:1 r5:2"]),
            (
                "@6000 done r1",
                ["cancel-timer queue:r2", "plan B [A]", "stop A#1 evict 10000", "pos r5:1"],
            ),
            ("@6001 stopped A", "start B#1"),
            ("@8002 timer queue:r2", ""),  # B is loading for it
            ("@9000 ready B", "dispatch r2 B#1"),
            ("@13003 timer queue:r5", "reject r5 503 queue_timeout"),
        ],
    )


def test_serial_policy_times_out_its_queue_too() -> None:
    run = Run(classic("A", "B", policy="serial", queue_timeout_ms=1000))
    bring_up(run, "A")
    play(
        run,
        [
            ("@0 req r1 A", "dispatch r1 A#1"),
            ("@10 req r2 A", ["timer queue:r2 @1011", "pos r2:1"]),
            ("@1011 timer queue:r2", "reject r2 503 queue_timeout"),
        ],
    )


def test_a_reload_retimes_the_queue_from_each_arrival() -> None:
    on = TIMEOUT
    off = replace(TIMEOUT, queue_timeout_ms=0)
    longer = replace(TIMEOUT, queue_timeout_ms=10_000)
    run = Run(on, {"off": off, "longer": longer, "on": on})
    play(
        run,
        [
            *BUSY_A,
            ("@10 req r2 B", ["timer queue:r2 @3011", "pos r2:1"]),
            ("@100 reload off", "cancel-timer queue:r2"),
            ("@3011 timer queue:r2", ""),
            ("@4000 reload longer", "timer queue:r2 @10011"),
            ("@5000 reload on", ["cancel-timer queue:r2", "timer queue:r2 @5000"]),
            ("@5000 timer queue:r2", "reject r2 503 queue_timeout"),
        ],
    )


def test_swap_waiters_sent_back_to_the_queue_by_a_reload_are_timed_again() -> None:
    """A new policy drops a swap still evicting; its waiter is queued again, with its timer
    counted from its arrival, and here joins the re-planned swap at once."""
    run = Run(TIMEOUT, {"serial": replace(TIMEOUT, policy="serial")})
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ""),
            ("@10 req r1 B", ["plan B [A]", "stop A#1 evict 10000"]),  # no timer: loading for it
            (
                "@20 reload serial",
                ["timer queue:r1 @3011", "cancel-timer queue:r1", "plan B [A]"],
            ),
            ("@3011 timer queue:r1", ""),  # loading for it again
            ("@3100 stopped A", "start B#1"),
            ("@4000 ready B", "dispatch r1 B#1"),
        ],
    )
