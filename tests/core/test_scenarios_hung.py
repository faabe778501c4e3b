"""Ours (ARCHITECTURE §11.6): a serving process declared hung (`ProcessHung`) is stopped at once.

Table-driven as the other scenario files (see harness.py): `hung A` is the executor's report that
A's current instance stopped answering its health probes. The reducer answers with
`stop A#n hung 0` (no grace: a hung process cannot act on SIGTERM); requests already dispatched
stay in flight until their own `done` (the web layer ends them with a 504 or an SSE error frame);
queued requests move on once the stop has completed, as after any stop; the next request for
the model starts a fresh instance. A report for another instance, or for an instance that is
not serving, changes nothing.
"""

from __future__ import annotations

import pytest

from llamaswap_es.events.types import ProcessHung, StopProcess
from tests.core.harness import HUNG_ERROR, Run, bring_up, classic, groups_config, models, play

ABC = classic("A", "B", "C")
WITH_TTL = classic("A", "B", schedules=models("A", "B", A={"ttl_ms": 300_000}))
SIDE_BY_SIDE = groups_config([("g", ["A", "B"], {"swap": False})])

SCENARIOS = {
    "idle-model-is-stopped-and-the-next-request-starts-a-fresh-instance": (
        ABC,
        ["A"],
        [
            ("hung A", "stop A#1 hung 0"),
            ("stopped A", ""),
            ("req r1 A", ["plan A []", "start A#2"]),
            ("ready A", "dispatch r1 A#2"),
        ],
    ),
    "its-ttl-timer-is-cancelled-with-the-stop": (
        WITH_TTL,
        ["A"],
        [("hung A", ["cancel-timer ttl:A:1", "stop A#1 hung 0"]), ("stopped A", "")],
    ),
    "in-flight-requests-stay-counted-until-their-own-finish": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 A", "dispatch r2 A#1"),
            ("hung A", "stop A#1 hung 0"),
            ("stopped A", ""),
            ("done r1", ""),
            ("done r2", ""),
            ("req r3 A", ["plan A []", "start A#2"]),
            ("ready A", "dispatch r3 A#2"),
        ],
    ),
    # The group is free once the hung process is gone, before its requests have reported back.
    "a-request-queued-behind-the-busy-hung-model-is-served-after-the-stop": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("hung A", "stop A#1 hung 0"),
            ("stopped A", ["plan B []", "start B#1"]),
            ("ready B", "dispatch r2 B#1"),
            ("done r1", ""),
        ],
    ),
    "a-request-for-the-hung-model-while-it-stops-waits-for-a-fresh-instance": (
        ABC,
        ["A"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("hung A", "stop A#1 hung 0"),
            ("req r2 A", "plan A []"),
            ("stopped A", "start A#2"),
            ("done r1", ""),
            ("ready A", "dispatch r2 A#2"),
        ],
    ),
    "a-model-beside-it-keeps-serving": (
        SIDE_BY_SIDE,
        ["A", "B"],
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("hung A", "stop A#1 hung 0"),
            ("req r2 B", "dispatch r2 B#1"),
            ("stopped A", ""),
            ("done r1", ""),
        ],
    ),
    # A TTL stop of a hung process would wait out its whole grace: SIGTERM cannot end it.
    "a-stop-already-under-way-is-made-immediate": (
        WITH_TTL,
        ["A"],
        [
            ("@300010 timer ttl:A:1", "stop A#1 ttl 10000"),
            ("hung A", "stop A#1 hung 0"),
            ("stopped A", ""),
        ],
    ),
    "a-report-for-an-older-instance-is-ignored": (
        ABC,
        ["A"],
        [
            ("exit A", ""),
            ("req r1 A", ["plan A []", "start A#2"]),
            ("hung A 1", ""),
            ("ready A", "dispatch r1 A#2"),
            ("hung A 1", ""),
        ],
    ),
    "a-report-for-a-starting-or-stopped-instance-is-ignored": (
        ABC,
        [],
        [
            ("hung A", ""),
            ("req r1 A", ["plan A []", "start A#1"]),
            ("hung A", ""),
            ("ready A", "dispatch r1 A#1"),
        ],
    ),
    "a-second-report-for-the-same-instance-changes-nothing-more": (
        ABC,
        ["A"],
        [("hung A", "stop A#1 hung 0"), ("stopped A", ""), ("hung A", "")],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_hung_scenario(name: str) -> None:
    config, up, steps = SCENARIOS[name]
    run = Run(config)
    bring_up(run, *up)
    play(run, steps)


def test_the_stop_says_why_and_the_report_is_kept_for_the_log() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    decisions = run.feed(ProcessHung(model="A", instance=1, failures=3, error=HUNG_ERROR))
    assert decisions == [StopProcess(model="A", instance=1, reason="hung", grace_ms=0)]
    assert run.state.models["A"].state == "stopping"
    assert run.state.models["A"].stop_reason == "hung"
