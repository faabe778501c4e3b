"""The idle model (`llamaswap-es.idleModel`): ours, spec B.3 #8 "load a default model after TTL".

The rule under test: when a TTL stop completes and leaves nothing starting, ready or stopping,
nothing admitted and no swap under way, the idle model is loaded the way a LoadRequested is
(its StartProcess says `idle_model`). Never after an unload, a crash, a failed start, an
eviction or during shutdown; never when the model that stopped is the idle model itself.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.core.harness import Run, classic, groups_config, matrix_config, models, play

TTL_B = {"ttl_ms": 1000}
SCHEDULES = models("B", "X", "I", B=TTL_B, I={"ttl_ms": 5000})
CONFIG = classic("B", "X", "I", schedules=SCHEDULES, idle_model="I")
"""One exclusive group: B (ttl 1 s), X (no ttl) and the idle model I (ttl 5 s)."""

EVICT_I = ["cancel-timer ttl:I:1", "stop I#1 evict 10000"]
B_UP = [("@0 req r1 B", ...), ("@0 ready B", ...), ("@10 done r1", "timer ttl:B:1 @1011")]
"""B served one request and is idle; its TTL fires at 1011."""
B_TTL = [*B_UP, ("@1011 timer ttl:B:1", "stop B#1 ttl 10000")]
"""…and its TTL stop is under way."""

SCENARIOS: dict[str, tuple[object, list[tuple[str, object]]]] = {
    "a ttl stop loads the idle model": (
        CONFIG,
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1200 ready I", "timer ttl:I:1 @6201"),  # the idle model's own ttl applies
            ("@1300 req r2 B", ["plan B [I]", "cancel-timer ttl:I:1", "stop I#1 evict 10000"]),
            ("@1400 stopped I", "start B#2"),  # an eviction of the idle model loads nothing
        ],
    ),
    "the idle model's own ttl stop loads nothing": (
        CONFIG,
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1200 ready I", "timer ttl:I:1 @6201"),
            ("@6201 timer ttl:I:1", "stop I#1 ttl 10000"),
            ("@6300 stopped I", ""),
        ],
    ),
    "an explicit unload loads nothing": (
        CONFIG,
        [
            *B_UP,
            ("@500 unload", ["cancel-timer ttl:B:1", "stop B#1 unload 10000"]),
            ("@600 stopped B", ""),
        ],
    ),
    "an unload during a ttl stop wins: nothing is loaded": (
        CONFIG,
        [*B_TTL, ("@1050 unload B", ""), ("@1100 stopped B", "")],
    ),
    "a request for the same model queued meanwhile: only it loads": (
        CONFIG,
        [
            *B_TTL,
            ("@1050 req r2 B", "plan B []"),  # waits for B's stop, then restarts it
            ("@1100 stopped B", "start B#2"),
            ("@1200 ready B", ["timer ttl:B:2 @2201", "dispatch r2 B#2"]),
        ],
    ),
    "a request for another model meanwhile: only it loads": (
        CONFIG,
        [
            *B_TTL,
            ("@1050 req r2 X", "plan X [B]"),
            ("@1100 stopped B", "start X#1"),
        ],
    ),
    "a cancelled request left nothing behind: the idle model loads": (
        CONFIG,
        [
            *B_TTL,
            ("@1050 req r2 X", "plan X [B]"),
            ("@1060 cancel r2", ""),  # the swap it started goes on (§3.6)
            ("@1100 stopped B", "start X#1"),
        ],
    ),
    "a crash loads nothing": (
        CONFIG,
        [*B_UP, ("@500 exit B", "cancel-timer ttl:B:1")],
    ),
    "a failed start loads nothing": (
        CONFIG,
        [
            ("@0 req r1 B", ["plan B []", "start B#1"]),
            ("@100 fail B", "reject r1 500 start_failed"),
        ],
    ),
    "shutdown during a ttl stop loads nothing": (
        CONFIG,
        [*B_TTL, ("@1050 shutdown", ""), ("@1100 stopped B", "")],
    ),
    "off by default": (
        replace(CONFIG, idle_model=""),
        [*B_TTL, ("@1100 stopped B", "")],
    ),
    "another model still running: the GPU is not idle": (
        groups_config(
            [("big", ["B"], {"exclusive": False}), ("other", ["X", "I"], {"exclusive": False})],
            SCHEDULES,
            idle_model="I",
        ),
        [
            ("@0 req r0 X", ...),
            ("@0 ready X", ...),
            *B_TTL,
            ("@1100 stopped B", ""),
        ],
    ),
    "a persistent idle model stays when the big model comes back": (
        groups_config(
            [("big", ["B"], {}), ("small", ["I"], {"exclusive": False, "persistent": True})],
            SCHEDULES,
            idle_model="I",
        ),
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1200 ready I", "timer ttl:I:1 @6201"),
            ("@1300 req r2 B", ["plan B []", "start B#2"]),  # beside I: persistent
        ],
    ),
    "an exclusive idle model's group is respected on its own load": (
        groups_config(
            [("big", ["B"], {"exclusive": False}), ("small", ["I", "X"], {})],
            SCHEDULES,
            idle_model="I",
        ),
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1150 req r2 X", "pos r2:1"),  # I's load is under way: X waits for it
            (
                "@1200 ready I",  # then swaps I out (one group)
                [
                    "timer ttl:I:1 @6201",
                    "plan X [I]",
                    "cancel-timer ttl:I:1",
                    "stop I#1 evict 10000",
                ],
            ),
            ("@1300 stopped I", "start X#1"),
        ],
    ),
    "matrix: the idle model is planned like any load": (
        replace(
            matrix_config([("b", "B"), ("ix", "I & X")], ["B", "X", "I"], idle_model="I"),
            models=SCHEDULES,
        ),
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1200 ready I", "timer ttl:I:1 @6201"),
            ("@1300 req r2 X", ["plan X []", "start X#1"]),  # X may run beside I (set ix)
            ("@1400 ready X", "dispatch r2 X#1"),
            ("@1450 done r2", ""),
            ("@1500 req r3 B", ["plan B [I,X]", *EVICT_I, "stop X#1 evict 10000"]),
        ],
    ),
    "serial: the idle model loads the same way": (
        classic("B", "X", "I", schedules=SCHEDULES, idle_model="I", policy="serial"),
        [
            *B_TTL,
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
            ("@1200 ready I", "timer ttl:I:1 @6201"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_idle_model(name: str) -> None:
    config, steps = SCENARIOS[name]
    play(Run(config), steps)  # type: ignore[arg-type]


def test_a_reload_loads_nothing_by_itself_and_applies_to_the_next_ttl_stop() -> None:
    """Setting or clearing idleModel never starts or stops anything; the rule reads the config
    in force when a TTL stop completes."""
    off = replace(CONFIG, idle_model="")
    run = Run(off, {"on": CONFIG, "off": off})
    play(
        run,
        [
            ("@0 load I", ...),
            ("@0 ready I", "timer ttl:I:1 @5001"),
            ("@100 reload on", ""),  # I is already up; nothing else happens
            ("@200 unload", ["cancel-timer ttl:I:1", "stop I#1 unload 10000"]),
            ("@300 stopped I", ""),
            ("@400 reload off", ""),
            ("@500 reload on", ""),  # the GPU is empty, but no TTL stop asked for the idle model
            ("@600 req r1 B", ["plan B []", "start B#1"]),
            ("@700 ready B", ["timer ttl:B:1 @1701", "dispatch r1 B#1"]),
            ("@800 done r1", "timer ttl:B:1 @1801"),
            ("@1801 timer ttl:B:1", "stop B#1 ttl 10000"),
            ("@1850 reload off", ""),  # cleared while B's TTL stop is under way
            ("@1900 stopped B", ""),
        ],
    )
    assert run.state.running_models() == ()


def test_idle_model_set_while_a_ttl_stop_is_under_way_applies_when_it_completes() -> None:
    run = Run(replace(CONFIG, idle_model=""), {"on": CONFIG})
    play(
        run,
        [
            *B_TTL,
            ("@1050 reload on", ""),
            ("@1100 stopped B", ["plan I []", "start I#1 idle_model"]),
        ],
    )
