"""The start backoff (`startBackoffSeconds`): ours, see `core.start_backoff`.

A failed start answers its waiters with llama-swap's 500 plus how long the model is left alone
(`retry=`, Retry-After); a request that would start it inside that window is answered at once
(503 `start_backoff`) instead of spawning it again. The window doubles with each failure in a
row, up to the cap, and the streak ends on a successful start, a reload that changes the model,
an operator's load or unload, and a new boot. A failure is `permanent` (clients must not retry)
when the command cannot be run, or when the process exits the same way twice in a row.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamaswap_es.events.types import Reject
from tests.core.harness import Run, bring_up, classic, play

BACKOFF = classic("A", "B", start_backoff_ms=2000, start_backoff_max_ms=8000)
CHANGED = replace(
    BACKOFF, models={**BACKOFF.models, "A": replace(BACKOFF.models["A"], fingerprint="new cmd")}
)
EXIT_1 = "fail A upstream command exited prematurely kind=exited exit=1 out=model_file_not_found"

FIRST_FAILURE = [
    ("@0 req r1 A", ["plan A []", "start A#1"]),
    ("@10 req r2 A", ""),  # joins the swap under way
    (
        "@100 " + EXIT_1,
        ["reject r1 500 start_failed retry=2000", "reject r2 500 start_failed retry=2000"],
    ),
]
"""A fails to start at t=100 ms: its window runs until t=2100."""

SCENARIOS: dict[str, list[tuple[str, object]]] = {
    "inside the window a request is answered at once, with the time left": [
        *FIRST_FAILURE,
        ("@600 req r3 A", "reject r3 503 start_backoff retry=1500"),
        ("@2099 req r4 A", "reject r4 503 start_backoff retry=1"),
    ],
    "after the window the next request starts it again": [
        *FIRST_FAILURE,
        ("@2100 req r3 A", ["plan A []", "start A#2"]),
        ("@2200 ready A", "dispatch r3 A#2"),
    ],
    "the window doubles with each failure in a row, up to the cap": [
        *FIRST_FAILURE,
        ("@2100 req r3 A", ["plan A []", "start A#2"]),
        ("@2200 fail A", "reject r3 500 start_failed retry=4000"),
        ("@6199 req r4 A", "reject r4 503 start_backoff retry=1"),
        ("@6200 req r5 A", ["plan A []", "start A#3"]),
        ("@6300 fail A", "reject r5 500 start_failed retry=8000"),
        ("@14300 req r6 A", ["plan A []", "start A#4"]),
        ("@14400 fail A", "reject r6 500 start_failed retry=8000"),
    ],
    "a successful start ends the streak: the next failure waits the first window again": [
        *FIRST_FAILURE,
        ("@2100 req r3 A", ["plan A []", "start A#2"]),
        ("@2200 ready A", "dispatch r3 A#2"),
        ("@2300 done r3", ""),
        ("@2400 exit A", ""),  # a crash later on is not a failed start
        ("@2500 req r4 A", ["plan A []", "start A#3"]),
        ("@2600 fail A", "reject r4 500 start_failed retry=2000"),
    ],
    "a reload that changes the model ends the streak": [
        *FIRST_FAILURE,
        ("@500 reload changed", ""),
        ("@600 req r3 A", ["plan A []", "start A#2"]),
    ],
    "a reload that leaves the model as it was keeps the window": [
        *FIRST_FAILURE,
        ("@500 reload same", ""),
        ("@600 req r3 A", "reject r3 503 start_backoff retry=1500"),
    ],
    "an operator's unload ends the streak": [
        *FIRST_FAILURE,
        ("@500 unload A", ""),
        ("@600 req r3 A", ["plan A []", "start A#2"]),
    ],
    "an operator's load ends the streak and starts it": [
        *FIRST_FAILURE,
        ("@500 load A", ["plan A []", "start A#2"]),
        ("@600 req r3 A", ""),  # joins that load
        ("@700 ready A", "dispatch r3 A#2"),
    ],
    "a new boot ends the streak": [
        *FIRST_FAILURE,
        ("@500 boot", ""),
        ("@600 req r3 A", ["plan A []", "start A#2"]),
    ],
    "other models are not held back": [
        *FIRST_FAILURE,
        ("@600 req r3 B", ["plan B []", "start B#1"]),
        ("@700 ready B", "dispatch r3 B#1"),
    ],
    "a command that cannot be run is permanent at once": [
        ("@0 req r1 A", ["plan A []", "start A#1"]),
        (
            "@100 fail A failed_to_start_command kind=command",
            "reject r1 500 start_failed retry=2000 permanent",
        ),
        ("@600 req r2 A", "reject r2 503 start_backoff retry=1500 permanent"),
    ],
    "the same exit twice in a row is permanent": [
        *FIRST_FAILURE,
        ("@2100 req r3 A", ["plan A []", "start A#2"]),
        ("@2200 " + EXIT_1, "reject r3 500 start_failed retry=4000 permanent"),
        ("@2300 req r4 A", "reject r4 503 start_backoff retry=3900 permanent"),
    ],
    "an exit with other output is not (yet) permanent": [
        *FIRST_FAILURE,
        ("@2100 req r3 A", ["plan A []", "start A#2"]),
        (
            "@2200 fail A upstream command exited prematurely kind=exited exit=1 out=out_of_memory",
            "reject r3 500 start_failed retry=4000",
        ),
    ],
    "a health check that times out twice is never permanent (a slow load may pass)": [
        ("@0 req r1 A", ["plan A []", "start A#1"]),
        ("@100 fail A kind=timeout", "reject r1 500 start_failed retry=2000"),
        ("@2100 req r2 A", ["plan A []", "start A#2"]),
        ("@2200 fail A kind=timeout", "reject r2 500 start_failed retry=4000"),
    ],
    "a start ended by a stop (a reload while starting) is no failure": [
        ("@0 req r1 A", ["plan A []", "start A#1"]),
        ("@50 reload changed", ["stop A#1 reload 10000", "plan A []"]),  # r1 waits for the new
        ("@100 " + EXIT_1, "start A#2"),  # the old instance's exit opens no window
        ("@200 ready A", "dispatch r1 A#2"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_start_backoff(name: str) -> None:
    run = Run(BACKOFF, {"changed": CHANGED, "same": BACKOFF})
    play(run, SCENARIOS[name])


def test_the_answers_name_the_model_the_cause_the_exit_and_its_output() -> None:
    run = Run(BACKOFF)
    play(run, FIRST_FAILURE[:1])
    first = run.feed(run.parse(EXIT_1), at=100)
    assert isinstance(first[0], Reject)
    assert first[0].message == (
        "unspecific error: upstream command exited prematurely (exit code 1); last output:\n"
        "model file not found"
    )
    (later,) = run.feed(run.parse("req r2 A"), at=700)
    assert isinstance(later, Reject)
    assert later.message == (
        'model "A" failed to start (once) and is not started again for 2 s: upstream command '
        "exited prematurely (exit code 1); last output:\nmodel file not found"
    )


def test_a_signal_is_named() -> None:
    run = Run(BACKOFF)
    play(run, FIRST_FAILURE[:1])
    (reject,) = run.feed(run.parse("fail A upstream command exited prematurely signal=9"))
    assert isinstance(reject, Reject)
    assert reject.message == (
        "unspecific error: upstream command exited prematurely (killed by signal 9 (SIGKILL))"
    )


def test_off_every_request_starts_it_again_without_retry_hints() -> None:
    """startBackoffSeconds: 0 is llama-swap's behaviour; a permanent cause is still told."""
    run = Run(classic("A", "B"))
    play(
        run,
        [
            ("@0 req r1 A", ["plan A []", "start A#1"]),
            ("@100 fail A kind=command", "reject r1 500 start_failed permanent"),
            ("@101 req r2 A", ["plan A []", "start A#2"]),
        ],
    )


def test_serial_answers_a_request_queued_before_the_failure_when_its_turn_comes() -> None:
    run = Run(replace(BACKOFF, policy="serial"))
    play(
        run,
        [
            ("@0 req r1 A", ["plan A []", "start A#1"]),
            ("@10 req r2 B", "pos r2:1"),
            ("@20 req r3 A", "pos r2:1 r3:2"),
            (
                "@100 " + EXIT_1,
                ["reject r1 500 start_failed retry=2000", "plan B []", "start B#1", "pos r3:1"],
            ),
            ("@200 ready B", "dispatch r2 B#1"),
            ("@300 done r2", "reject r3 503 start_backoff retry=1800"),
            ("@400 req r4 A", "reject r4 503 start_backoff retry=1700"),  # never queued
        ],
    )


def test_a_queued_request_is_not_held_for_the_window_of_another_model() -> None:
    run = Run(BACKOFF)
    bring_up(run, "B")
    play(
        run,
        [
            ("@0 req r1 B", "dispatch r1 B#1"),
            ("@10 req r2 A", "pos r2:1"),  # B is busy: A must wait
            ("@20 done r1", ["plan A [B]", "stop B#1 evict 10000"]),
            ("@30 stopped B", "start A#1"),
            ("@100 " + EXIT_1, "reject r2 500 start_failed retry=2000"),
            ("@200 req r3 B", ["plan B []", "start B#2"]),
        ],
    )


def test_a_turned_off_backoff_ends_an_open_window() -> None:
    run = Run(BACKOFF, {"off": replace(BACKOFF, start_backoff_ms=0, start_backoff_max_ms=0)})
    play(
        run,
        [*FIRST_FAILURE, ("@500 reload off", ""), ("@600 req r3 A", ["plan A []", "start A#2"])],
    )
