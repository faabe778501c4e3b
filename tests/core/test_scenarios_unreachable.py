"""Ours: a dispatched request whose instance could not be reached (`DispatchUnreachable`).

Table-driven as the other scenario files (see harness.py): `unreachable r1` is the handler's
report that r1's forward met a refused or reset connection before anything was sent to its
client. The reducer takes the same request id back to the head of the queue and the instance
becomes suspect (timer `suspect:A:n`, nothing dispatched to it); the executor's exit report, a
second report for the same instance, or the timer decide (the rule is in DispatchUnreachable's
docstring). A report about an earlier grant is stale and ignored.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamaswap_es.core import restore, snapshot
from llamaswap_es.events.types import Dispatch, ProcessAdopted, ProcessReady
from tests.core.harness import Run, bring_up, classic, play

ABC = classic("A", "B", "C")
SERIAL = replace(ABC, policy="serial")

SCENARIOS = {
    "the-exit-report-decides-and-the-same-request-is-served-by-a-fresh-instance": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("unreachable r1", ["timer suspect:A:1 @505", "pos r1:1"]),
            ("exit A", ["cancel-timer suspect:A:1", "plan A []", "start A#2"]),
            ("ready A", "dispatch r1 A#2"),
            ("done r1", ""),
        ],
    ),
    # A keep-alive connection the upstream had just closed: one report must not kill it.
    "the-timer-trusts-a-live-instance-again-and-nothing-restarts": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("unreachable r1", ["timer suspect:A:1 @505", "pos r1:1"]),
            ("req r2 A", "pos r1:1 r2:2"),  # nothing goes to a suspect instance
            ("@600 timer suspect:A:1", ["dispatch r1 A#1", "dispatch r2 A#1"]),
            ("done r1", ""),
            ("done r2", ""),
        ],
    ),
    "a-second-report-for-the-same-instance-stops-it-and-both-wait-for-a-fresh-one": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 A", "dispatch r2 A#1"),
            ("unreachable r1", ["timer suspect:A:1 @506", "pos r1:1"]),
            (
                "unreachable r2",
                ["cancel-timer suspect:A:1", "stop A#1 unreachable 10000", "plan A []"],
            ),
            ("stopped A", "start A#2"),
            ("ready A", ["dispatch r1 A#2", "dispatch r2 A#2"]),  # arrival order kept
            ("done r1", ""),
            ("done r2", ""),
        ],
    ),
    "reports-about-an-earlier-grant-or-a-finished-request-are-ignored": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("unreachable r1", ["timer suspect:A:1 @505", "pos r1:1"]),
            ("exit A", ["cancel-timer suspect:A:1", "plan A []", "start A#2"]),
            ("unreachable r1 1", ""),  # r1 is waiting, not dispatched
            ("ready A", "dispatch r1 A#2"),
            ("unreachable r1 1", ""),  # r1 now runs on instance 2
            ("done r1", ""),
            ("unreachable r1", ""),  # r1 is finished
        ],
    ),
    # The exit was already reported: the instance is gone, nothing to suspect.
    "a-report-after-the-exit-re-queues-and-starts-a-fresh-instance-at-once": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("exit A", ""),
            ("unreachable r1", ["plan A []", "start A#2"]),
            ("ready A", "dispatch r1 A#2"),
            ("done r1", ""),
        ],
    ),
    "a-report-during-shutdown-is-answered-500": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("shutdown", "stop A#1 shutdown 30000"),
            ("unreachable r1", "reject r1 500 shutting_down"),
        ],
    ),
    "a-report-for-a-model-a-reload-removed-is-answered-500": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("reload no-a", "stop A#1 reload 10000"),
            ("unreachable r1", "reject r1 500 config_reloaded"),
            ("stopped A", ""),
        ],
    ),
    # A suspect instance counts as busy: a swap queued behind it does not jump ahead of the
    # request taken back from it.
    "a-swap-waits-until-the-suspect-instance-is-settled": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("unreachable r1", ["timer suspect:A:1 @506", "pos r1:1 r2:2"]),
            ("@600 timer suspect:A:1", ["dispatch r1 A#1", "pos r2:1"]),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1"),
            ("ready B", "dispatch r2 B#1"),
        ],
    ),
    "serial-keeps-the-taken-back-request-at-the-head": (
        SERIAL,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("unreachable r1", ["timer suspect:A:1 @506", "pos r1:1 r2:2"]),
            ("exit A", ["cancel-timer suspect:A:1", "plan A []", "start A#2", "pos r2:1"]),
            ("ready A", "dispatch r1 A#2"),
            ("done r1", ["plan B [A]", "stop A#2 evict 10000"]),
            ("stopped A", "start B#1"),
            ("ready B", "dispatch r2 B#1"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_unreachable_scenario(name: str) -> None:
    config, up, steps = SCENARIOS[name]
    run = Run(config, {"no-a": classic("B", "C")})
    bring_up(run, *up)
    play(run, steps)


def test_the_grant_carries_the_address_the_ready_report_gave() -> None:
    run = Run(ABC)
    run.step("req r1 A")
    run.feed(ProcessReady(model="A", instance=1, address="http://127.0.0.1:5801"))
    dispatch = [d for d in run.outputs[-1] if isinstance(d, Dispatch)]
    assert dispatch == [
        Dispatch(request_id="r1", model="A", instance=1, address="http://127.0.0.1:5801")
    ]


def test_an_adopted_instance_is_dispatched_to_at_its_recorded_address() -> None:
    run = Run(ABC)
    run.feed(ProcessAdopted(model="B", instance=4, pid=1, pgid=1, address="http://127.0.0.1:9"))
    out = run.feed(run.parse("req r1 B"))
    assert out == [Dispatch(request_id="r1", model="B", instance=4, address="http://127.0.0.1:9")]


def test_a_suspect_instance_survives_a_snapshot() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    play(run, [("req r1 A", ...), ("unreachable r1", ...)])
    copy = restore(snapshot(run.state))
    assert copy.models["A"].suspect and copy.queue == ["r1"]
    assert snapshot(copy) == snapshot(run.state)


def test_a_restart_trusts_an_adopted_instance_that_was_suspect() -> None:
    """The suspect timer goes with the boot; recovery adopts the live instance under its number.
    Still suspect, its model's requests would wait for ever (review finding): it is trusted."""
    run = Run(ABC)
    bring_up(run, "A")
    play(run, [("req r1 A", "dispatch r1 A#1"), ("unreachable r1", ...)])
    run.step("boot")
    run.step("adopt A 1")
    got = run.step("req r2 A")
    assert any(g.startswith("dispatch r2 A#1") for g in got), got
