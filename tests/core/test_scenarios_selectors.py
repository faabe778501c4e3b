"""Selectors choose in the reducer (spec/api.md §6.5): pin, warm and spillover, table-driven.

Each row is an input and the decisions it must produce. `sel r1 S` is a client naming selector
S (`SelectorRequested`); the answer `chose r1 T rule` is the logged `SelectorChose`. A local
choice goes on as `req r1 T` (the handler's `RequestReceived` under the same id); `selend r1`
ends a choice that did not become a local request (a peer served it).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamaswap_es.config.schedule import SchedulerConfig, SelectorSchedule, SelectorTarget
from llamaswap_es.core import digest, restore, snapshot
from tests.core.harness import Run, bring_up, groups_config, play, with_limit

PEER = "peer/x"
"""A peer's model as a target: the scheduler knows no state of it (model "")."""


def _selector(selector_id: str, strategy: str, *targets: str, spillover: int = 1):
    resolved = tuple(SelectorTarget(t, "" if t == PEER else t) for t in targets)
    return SelectorSchedule(selector_id, strategy, resolved, spillover)


SELECTORS = {
    s.selector_id: s
    for s in (
        _selector("pin", "pin", "B", "A"),
        _selector("warm", "warm", "A", "B"),
        _selector("spill", "spillover", "A", "B", spillover=2),
        _selector("mixed", "spillover", "A", PEER),
    )
}


def config(**selectors: SelectorSchedule) -> SchedulerConfig:
    """A, B and C may run together (a swap: false group, as spillover targets must)."""
    base = groups_config([("g", ["A", "B", "C"], {"swap": False, "exclusive": False})])
    return replace(base, selectors=selectors or SELECTORS)


SCENARIOS: dict[str, list[tuple[str, object]]] = {
    "pin: always the first target, whatever runs": [
        ("load A", ...),
        ("ready A", ...),
        ("sel r1 pin", "chose r1 B pin"),
        ("req r1 B", ["plan B []", "start B#1"]),
        ("sel r2 pin", "chose r2 B pin"),
    ],
    "warm: nothing runs, the first target": [
        ("sel r1 warm", "chose r1 A warm-first"),
    ],
    "warm: a ready target before the first one": [
        ("load B", ...),
        ("ready B", ...),
        ("sel r1 warm", "chose r1 B warm-ready"),
    ],
    "warm: a starting target when none is ready": [
        ("load B", ["plan B []", "start B#1"]),
        ("sel r1 warm", "chose r1 B warm-starting"),
    ],
    "warm: ready beats starting, even a later one": [
        ("load B", ...),
        ("ready B", ...),
        ("load A", ["plan A []", "start A#1"]),
        ("sel r1 warm", "chose r1 B warm-ready"),
    ],
    "spillover: all cold, the first cold target": [
        ("sel r1 spill", "chose r1 A spillover-idle"),
    ],
    "spillover: stays on the active target below the spillover count, then spills": [
        ("sel r1 spill", "chose r1 A spillover-idle"),
        ("req r1 A", ["plan A []", "start A#1"]),
        ("sel r2 spill", "chose r2 A spillover-below"),  # A starting with 1 reserved < 2
        ("req r2 A", ""),  # joins A's swap
        ("sel r3 spill", "chose r3 B spillover-cold"),  # A has 2 reserved >= 2, B cold
        ("req r3 B", ["plan B []", "start B#1"]),
        ("sel r4 spill", "chose r4 B spillover-below"),  # least reserved: B with 1
    ],
    "spillover: a finished request frees its reservation": [
        ("load A", ...),
        ("ready A", ...),
        ("sel r1 spill", "chose r1 A spillover-below"),
        ("req r1 A", "dispatch r1 A#1"),
        ("sel r2 spill", "chose r2 A spillover-below"),
        ("req r2 A", "dispatch r2 A#1"),
        ("done r1", ""),
        ("sel r3 spill", "chose r3 A spillover-below"),  # back to 1 reserved
    ],
    "spillover: every target busy, the least busy one with round-robin ties": [
        ("load A", ...),
        ("ready A", ...),
        ("load B", ...),
        ("ready B", ...),
        ("sel r1 spill", "chose r1 B spillover-below"),  # tie at 0: cursor 1 -> second
        ("sel r2 spill", "chose r2 A spillover-below"),  # A alone has 0
        ("sel r3 spill", "chose r3 B spillover-below"),  # tie at 1: cursor 3 -> second
        ("sel r4 spill", "chose r4 A spillover-below"),  # A alone has 1
        ("sel r5 spill", "chose r5 B spillover-least-busy"),  # 2 and 2, none cold
        ("sel r6 spill", "chose r6 A spillover-least-busy"),  # B 3, A 2
    ],
    "spillover: a choice holds its reservation before its request arrives": [
        ("sel r1 spill", "chose r1 A spillover-idle"),
        ("sel r2 spill", "chose r2 A spillover-below"),  # A is active by reservation alone
        ("sel r3 spill", "chose r3 B spillover-cold"),
        ("selend r1", ""),
        ("selend r2", ""),
        ("sel r4 spill", "chose r4 B spillover-below"),  # A has none left: B alone is active
    ],
    "spillover: a rejected request gives its reservation back": [
        ("sel r1 spill", "chose r1 A spillover-idle"),
        ("req r1 Z", "reject r1 404 model_not_found"),
        ("sel r2 spill", "chose r2 A spillover-idle"),  # A cold again, nothing reserved
    ],
    "spillover: a stopping target is skipped": [
        ("load A", ...),
        ("ready A", ...),
        ("load B", ...),
        ("ready B", ...),
        ("unload A", "stop A#1 unload 10000"),
        ("sel r1 spill", "chose r1 B spillover-below"),
        ("sel r2 spill", "chose r2 B spillover-below"),
        ("sel r3 spill", "chose r3 B spillover-least-busy"),  # A stopping is not cold either
    ],
    "spillover: every target stopping, 503": [
        ("load A", ...),
        ("ready A", ...),
        ("load B", ...),
        ("ready B", ...),
        ("unload", ["stop A#1 unload 10000", "stop B#1 unload 10000"]),
        ("sel r1 spill", "reject r1 503 selector_unavailable"),
        ("stopped A", ""),
        ("sel r2 spill", "chose r2 A spillover-idle"),  # stopped: cold again
    ],
    "spillover: a peer's model is cold until it holds a reservation": [
        ("load A", ...),
        ("ready A", ...),
        ("sel r1 mixed", "chose r1 A spillover-below"),
        ("req r1 A", "dispatch r1 A#1"),
        ("sel r2 mixed", f"chose r2 {PEER} spillover-cold"),  # A at 1 >= 1, the peer cold
        ("sel r3 mixed", "chose r3 A spillover-least-busy"),  # 1 and 1: round-robin
        ("selend r2", ""),  # the peer answered
        ("sel r4 mixed", f"chose r4 {PEER} spillover-cold"),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_selector_scenarios(name: str) -> None:
    play(Run(config()), SCENARIOS[name])


def test_choices_are_logged_with_their_reason_in_words() -> None:
    run = Run(config())
    bring_up(run, "A")
    run.step("sel r1 spill")
    run.step("req r1 A")
    run.step("sel r2 spill")
    run.step("req r2 A")
    (chose,) = run.feed(run.parse("sel r3 spill"))
    assert chose.describe() == (
        "selector spill chose B for request r3: spillover: A has 2 reserved ≥ spillover 2, B cold"
    )


def test_a_selector_the_config_lost_is_404_and_shutdown_is_500() -> None:
    run = Run(config(), {"none": replace(config(), selectors={})})
    play(run, [("reload none", ...), ("sel r1 spill", "reject r1 404 model_not_found")])
    assert 'selector "spill" is not configured' in run.outputs[-1][0].message
    play(run, [("shutdown", ...), ("sel r2 pin", "reject r2 500 shutting_down")])


def test_a_concurrency_limit_reject_ends_the_reservation() -> None:
    run = Run(with_limit(config(), "A", 1))
    bring_up(run, "A")
    play(
        run,
        [
            ("sel r1 spill", "chose r1 A spillover-below"),
            ("req r1 A", "dispatch r1 A#1"),
            ("sel r2 spill", "chose r2 A spillover-below"),
            ("req r2 A", "reject r2 429 concurrency_limit"),
            ("sel r3 spill", "chose r3 A spillover-below"),  # 1 reserved (r1), not 2
        ],
    )


def test_a_new_boot_forgets_choices_and_cursors() -> None:
    run = Run(config())
    play(run, [("sel r1 spill", ...), ("sel r2 spill", ...)])
    assert run.state.selections and run.state.selector_cursors
    run.step("boot")
    assert not run.state.selections and not run.state.selector_cursors
    play(run, [("sel r3 spill", "chose r3 A spillover-idle")])


def test_a_restored_snapshot_chooses_as_the_original() -> None:
    """Reservations and the round-robin cursor are state: a snapshot carries them."""
    run = Run(config())
    bring_up(run, "A", "B")
    play(run, [("sel r1 spill", ...), ("req r1 B", ...), ("sel r2 spill", ...)])
    copy = restore(snapshot(run.state))
    assert digest(copy) == digest(run.state)
    assert copy.selector_cursors == run.state.selector_cursors
    original = run.step("sel r3 spill")
    run.state = copy
    run.seq -= 1
    assert run.step("sel r3 spill") == original
