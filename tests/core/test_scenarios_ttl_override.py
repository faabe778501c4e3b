"""Per-request TTL overrides (LM Studio `ttl`, Ollama `keep_alive`): ours, spec B.3 item 9.

The rule under test: the idle TTL after a request is the override of the request whose
completion left the model idle — the last one to finish — and a finished request without an
override restores the configured ttl. An override lives with the process instance that served
it: a restarted model starts with the configured ttl again.
"""

from __future__ import annotations

import pytest

from tests.core.harness import Run, bring_up, classic, models, play

CONFIG = classic("A", "B", schedules=models("A", "B", A={"ttl_ms": 300_000}))
"""A has a configured ttl of 300 s; B has none (never unloads by itself)."""

SCENARIOS: dict[str, list[tuple[str, object]]] = {
    "shorter override unloads sooner": [
        ("@1000 req r1 A ttl=5000", "dispatch r1 A#1"),
        ("@2000 done r1", "timer ttl:A:1 @7001"),
        ("@7001 timer ttl:A:1", "stop A#1 ttl 10000"),
    ],
    "longer override keeps it past the configured ttl": [
        ("@1000 req r1 A ttl=600000", "dispatch r1 A#1"),
        ("@2000 done r1", "timer ttl:A:1 @602001"),
        # a stale firing at the configured time only re-arms the longer one
        ("@302001 timer ttl:A:1", "timer ttl:A:1 @602001"),
        ("@602001 timer ttl:A:1", "stop A#1 ttl 10000"),
    ],
    "zero unloads as soon as idle": [
        ("@1000 req r1 A ttl=0", "dispatch r1 A#1"),
        ("@2000 done r1", "timer ttl:A:1 @2001"),
        ("@2001 timer ttl:A:1", "stop A#1 ttl 10000"),
    ],
    "forever lifts the configured ttl": [
        ("@1000 req r1 A ttl=forever", "dispatch r1 A#1"),
        ("@2000 done r1", "cancel-timer ttl:A:1"),
        ("@302001 timer ttl:A:1", ""),  # stale: nothing is armed
    ],
    "a later request without one restores the configured ttl": [
        ("@1000 req r1 A ttl=5000", "dispatch r1 A#1"),
        ("@2000 done r1", "timer ttl:A:1 @7001"),
        ("@3000 req r2 A", "dispatch r2 A#1"),
        ("@4000 done r2", "timer ttl:A:1 @304001"),
        ("@7001 timer ttl:A:1", "timer ttl:A:1 @304001"),
        ("@304001 timer ttl:A:1", "stop A#1 ttl 10000"),
    ],
    "a later request without one ends forever": [
        ("@1000 req r1 A ttl=forever", "dispatch r1 A#1"),
        ("@2000 done r1", "cancel-timer ttl:A:1"),
        ("@3000 req r2 A", "dispatch r2 A#1"),
        ("@4000 done r2", "timer ttl:A:1 @304001"),
    ],
    "a later override replaces an earlier one": [
        ("@1000 req r1 A ttl=5000", "dispatch r1 A#1"),
        ("@2000 done r1", "timer ttl:A:1 @7001"),
        ("@3000 req r2 A ttl=60000", "dispatch r2 A#1"),
        ("@4000 done r2", "timer ttl:A:1 @64001"),
    ],
    "concurrent: the last to finish wins (short one last)": [
        ("@1000 req r1 A ttl=5000", "dispatch r1 A#1"),
        ("@1100 req r2 A ttl=forever", "dispatch r2 A#1"),
        ("@2000 done r2", ""),  # A still busy: no idle time yet
        ("@3000 done r1", "timer ttl:A:1 @8001"),
        ("@8001 timer ttl:A:1", "stop A#1 ttl 10000"),
    ],
    "concurrent: the last to finish wins (forever last)": [
        ("@1000 req r1 A ttl=5000", "dispatch r1 A#1"),
        ("@1100 req r2 A ttl=forever", "dispatch r2 A#1"),
        ("@2000 done r1", ""),
        ("@3000 done r2", "cancel-timer ttl:A:1"),
    ],
    "concurrent: the last to finish wins (plain one last)": [
        ("@1000 req r1 A ttl=0", "dispatch r1 A#1"),
        ("@1100 req r2 A", "dispatch r2 A#1"),
        ("@2000 done r1", ""),
        ("@3000 done r2", "timer ttl:A:1 @303001"),
    ],
    "an override gives a model without a configured ttl one": [
        ("@1000 req r1 B ttl=5000", ["plan B [A]", "cancel-timer ttl:A:1", "stop A#1 evict 10000"]),
        ("@1001 stopped A", "start B#1"),
        ("@1500 ready B", "dispatch r1 B#1"),
        ("@2000 done r1", "timer ttl:B:1 @7001"),
        # a plain request restores "never": the armed timer goes
        ("@3000 req r2 B", "dispatch r2 B#1"),
        ("@4000 done r2", "cancel-timer ttl:B:1"),
    ],
    "a request that never ran sets nothing": [
        ("@1000 req r1 A", "dispatch r1 A#1"),
        ("@1100 req r2 B ttl=0", "pos r2:1"),
        ("@1200 cancel r2", ""),
        ("@2000 done r1", "timer ttl:A:1 @302001"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_ttl_override(name: str) -> None:
    run = Run(CONFIG)
    play(run, [("@0 load A", ...), ("@0 ready A", "timer ttl:A:1 @300001")])
    play(run, SCENARIOS[name])


def test_a_restarted_model_starts_with_the_configured_ttl_again() -> None:
    run = Run(CONFIG)
    bring_up(run, "A")
    play(
        run,
        [
            ("@1000 req r1 A ttl=forever", "dispatch r1 A#1"),
            ("@2000 done r1", "cancel-timer ttl:A:1"),
            ("@3000 unload A", "stop A#1 unload 10000"),
            ("@3001 stopped A", ""),
            ("@4000 req r2 A", ["plan A []", "start A#2"]),
            ("@5000 ready A", ["timer ttl:A:2 @305001", "dispatch r2 A#2"]),
        ],
    )
    assert run.state.models["A"].ttl_override_ms is None


def test_a_request_of_a_crashed_instance_sets_nothing_on_the_next_one() -> None:
    # r1 (keep forever) was served by A#1, which crashed; A#2 is up before r1's end is reported.
    run = Run(CONFIG)
    bring_up(run, "A")
    play(run, [("@1000 req r1 A ttl=forever", "dispatch r1 A#1"), ("@1500 exit A", ...)])
    play(run, [("@1600 load A", ...), ("@1700 ready A", ...)])
    assert run.state.models["A"].instance == 2
    play(run, [("@2000 done r1", ...)])
    assert run.state.models["A"].ttl_override_ms is None, "A#2 keeps its configured ttl"


def test_a_reload_of_the_configured_ttl_does_not_undo_an_override() -> None:
    shorter = classic("A", "B", schedules=models("A", "B", A={"ttl_ms": 1_000}))
    run = Run(CONFIG, {"shorter": shorter})
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ...),
            ("@1000 req r1 A ttl=60000", "dispatch r1 A#1"),
            ("@2000 done r1", "timer ttl:A:1 @62001"),
            ("@3000 reload shorter", ["cancel-timer ttl:A:1", "timer ttl:A:1 @62001"]),
        ],
    )
