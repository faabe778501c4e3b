"""spec/core.md §9 scenarios A (FIFO core), E (races), G (groups and matrix in the scheduler)
and I-65 (preload), as event tables: steps in, rendered decisions out (see harness.py).

llama-swap's `SWAPDONE m ok` is our `ProcessReady(m)`; `START m [E]` is `plan m [E]` followed by
a `stop` per running model of E and, once they are `stopped`, `start m#n`. Where we differ on
purpose, the scenario id says `ours` and the comment says why.
"""

from __future__ import annotations

import pytest

from tests.core.harness import (
    Run,
    bring_up,
    classic,
    groups_config,
    matrix_config,
    models,
    play,
    use_stub,
    with_limit,
)

ABC = classic("A", "B", "C")


def _run(config=ABC, stub=None, up=()):
    run = Run(config)
    if stub is not None:
        use_stub(run, stub)
    bring_up(run, *up)
    return run


SCENARIOS = {
    "s01-fast-path": (
        dict(up=["A"]),
        [("req r1 A", "dispatch r1 A#1")],
    ),
    "s02-cold-start": (
        {},
        [("req r1 A", ["plan A []", "start A#1"]), ("ready A", "dispatch r1 A#1")],
    ),
    "s03-join-one-swap": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 A", ""),
            ("req r3 A", ""),
            ("ready A", ["dispatch r1 A#1", "dispatch r2 A#1", "dispatch r3 A#1"]),
        ],
    ),
    "s04-swap-failure-fails-every-waiter-then-retry": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 A", ""),
            (
                "fail A health check timed out after 120s",
                ["reject r1 500 start_failed", "reject r2 500 start_failed"],
            ),
            ("req r3 A", ["plan A []", "start A#2"]),
        ],
    ),
    # ours: the eviction grace is the victim's unloadTimeout (10 s default), not healthCheckTimeout.
    "s05-idle-victim-evicted-at-once-ours-grace": (
        dict(up=["A"]),
        [("req r1 B", ["plan B [A]", "stop A#1 evict 10000"]), ("stopped A", "start B#1")],
    ),
    "s06-busy-victim-defers-the-swap": (
        dict(up=["A"]),
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1"),
            ("ready B", "dispatch r2 B#1"),
        ],
    ),
    "s07-waits-for-all-in-flight": (
        dict(up=["A"]),
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 A", "dispatch r2 A#1"),
            ("req r3 B", "pos r3:1"),
            ("done r1", ""),
            ("done r2", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    "s08-collation-ABCABC": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 C", "pos r2:1 r3:2"),
            ("req r4 A", ""),
            ("req r5 B", "pos r2:1 r3:2 r5:3"),
            ("req r6 C", "pos r2:1 r3:2 r5:3 r6:4"),
            ("ready A", ["dispatch r1 A#1", "dispatch r4 A#1"]),
            ("done r1", ""),
            ("done r4", ["plan B [A]", "stop A#1 evict 10000", "pos r3:1 r6:2"]),
            ("stopped A", "start B#1"),
            ("ready B", ["dispatch r2 B#1", "dispatch r5 B#1"]),
            ("done r2", ""),
            ("done r5", ["plan C [B]", "stop B#1 evict 10000"]),
            ("stopped B", "start C#1"),
            ("ready C", ["dispatch r3 C#1", "dispatch r6 C#1"]),
        ],
    ),
    "s09-fast-path-bypass-starvation": (
        dict(up=["A"]),
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("req r3 A", "dispatch r3 A#1"),
            ("done r1", ""),
            ("req r4 A", "dispatch r4 A#1"),
            ("done r3", ""),
            ("done r4", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    "s10-active-swap-target-counts-as-running": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    "s11-request-for-the-model-being-evicted": (
        dict(up=["A"]),
        [
            ("req r1 B", ["plan B [A]", "stop A#1 evict 10000"]),
            ("req r2 A", "pos r2:1"),
            ("stopped A", "start B#1"),
            ("ready B", "dispatch r1 B#1"),
            ("done r1", ["plan A [B]", "stop B#1 evict 10000"]),
        ],
    ),
    "s12-disjoint-swaps-run-in-parallel": (
        dict(config=groups_config([("g", ["A", "B"], {"swap": False})])),
        [("req r1 A", ["plan A []", "start A#1"]), ("req r2 B", ["plan B []", "start B#1"])],
    ),
    "s13-overlapping-evict-sets-are-serialised": (
        dict(config=classic("A", "B", "X"), stub={"A": ["X"], "B": ["X"]}, up=["X"]),
        [
            ("req r1 A", ["plan A [X]", "stop X#1 evict 10000"]),
            ("req r2 B", "pos r2:1"),
            ("stopped X", "start A#1"),
            ("ready A", ["dispatch r1 A#1", "plan B [X]", "start B#1"]),
        ],
    ),
    "s14-one-drain-starts-several-swaps": (
        dict(stub={"A": ["B", "C"]}),
        [
            ("req r1 A", ["plan A [B,C]", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 C", "pos r2:1 r3:2"),
            ("ready A", ["dispatch r1 A#1", "plan B []", "start B#1", "plan C []", "start C#1"]),
        ],
    ),
    "s15-no-head-of-line-blocking": (
        dict(config=classic("A", "B", "C", "Z"), stub={"Z": ["C"], "B": ["A"]}, up=["A"]),
        [
            ("req r0 A", "dispatch r0 A#1"),
            ("req r1 Z", ["plan Z [C]", "start Z#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 C", "pos r2:1 r3:2"),
            ("ready Z", ["dispatch r1 Z#1", "plan C []", "start C#1", "pos r2:1"]),
        ],
    ),
    "s16-priority-order": (
        dict(
            config=classic(
                "A",
                "B",
                "C",
                "D",
                "Z",
                schedules=models(
                    "A",
                    "B",
                    "C",
                    "D",
                    "Z",
                    A={"priority": 10},
                    B={"priority": 5},
                    C={"priority": 5},
                    D={"priority": 1},
                ),
            )
        ),
        [
            ("req z Z", ["plan Z []", "start Z#1"]),
            ("req rB B", "pos rB:1"),
            ("req rD D", "pos rB:1 rD:2"),
            ("req rC C", "pos rB:1 rC:2 rD:3"),
            ("req rA A", "pos rA:1 rB:2 rC:3 rD:4"),
            ("ready Z", "dispatch z Z#1"),
            ("done z", ["plan A [Z]", "stop Z#1 evict 10000", "pos rB:1 rC:2 rD:3"]),
        ],
    ),
    "ours-request-priority-header-orders-the-queue": (
        dict(
            config=classic(
                "A", "B", "C", "Z", schedules=models("A", "B", "C", "Z", B={"priority": 5})
            )
        ),
        [
            ("req z Z", ["plan Z []", "start Z#1"]),
            ("req rB B", "pos rB:1"),  # model priority 5
            ("req rA A", "pos rB:1 rA:2"),  # model priority 0
            ("req rC C prio=7", "pos rC:1 rB:2 rA:3"),  # its own 7 beats B's 5
            ("req rA2 A prio=-1", "pos rC:1 rB:2 rA:3 rA2:4"),  # below the default 0
            ("ready Z", "dispatch z Z#1"),
            ("done z", ["plan C [Z]", "stop Z#1 evict 10000", "pos rB:1 rA:2 rA2:3"]),
        ],
    ),
    "s17-concurrency-limit-on-the-fast-path": (
        dict(config=with_limit(ABC, "A", 1), up=["A"]),
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 A", "reject r2 429 concurrency_limit"),
            ("done r1", ""),
            ("req r3 A", "dispatch r3 A#1"),
        ],
    ),
    "s18i-limit-counts-swap-waiters": (
        dict(config=with_limit(ABC, "A", 2)),
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 A", ""),
            ("req r3 A", "reject r3 429 concurrency_limit"),
            ("ready A", ["dispatch r1 A#1", "dispatch r2 A#1"]),
        ],
    ),
    "s18ii-limit-counts-queued-requests": (
        dict(config=with_limit(ABC, "A", 2), stub={"A": ["B"]}),
        [
            ("req b1 B", ["plan B []", "start B#1"]),
            ("req a1 A", "pos a1:1"),
            ("req a2 A", "pos a1:1 a2:2"),
            ("req a3 A", "reject a3 429 concurrency_limit"),
            ("ready B", "dispatch b1 B#1"),
            ("done b1", ["plan A [B]", "stop B#1 evict 10000"]),
            ("stopped B", "start A#1"),
            ("ready A", ["dispatch a1 A#1", "dispatch a2 A#1"]),
        ],
    ),
    "s19-cancel-of-a-queued-request-frees-its-slot-and-never-loads": (
        dict(config=with_limit(ABC, "B", 1), stub={"B": ["A"]}),
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 B", "reject r3 429 concurrency_limit"),
            ("cancel r2", ""),
            ("req r4 B", "pos r4:1"),
            ("cancel r4", ""),
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ""),
        ],
    ),
    "s20i-cancel-of-a-swap-waiter": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 A", ""),
            ("cancel r2", ""),
            ("ready A", "dispatch r1 A#1"),
        ],
    ),
    "s20ii-cancel-of-the-only-waiter-keeps-the-swap": (
        {},
        [("req r3 C", ["plan C []", "start C#1"]), ("cancel r3", ""), ("ready C", "")],
    ),
    # GONE r1: the shell answers a Dispatch to a departed client with RequestFinished(499).
    "s21-dead-client-at-grant-time": (
        dict(stub={"B": ["A"]}),
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ""),
            ("req r2 B", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    "s22-unknown-model-and-late-cancel": (
        dict(up=["A"]),
        [
            ("req r1 Q", "reject r1 404 model_not_found"),
            ("req r2 A", "dispatch r2 A#1"),
            ("cancel r2", ""),
            ("done r2", ""),
        ],
    ),
    "s23-failed-swap-releases-the-queue-no-rollback": (
        dict(up=["A"]),
        [
            ("req r1 B", ["plan B [A]", "stop A#1 evict 10000"]),
            ("req r2 A", "pos r2:1"),
            ("stopped A", "start B#1"),
            ("fail B boom", ["reject r1 500 start_failed", "plan A []", "start A#2"]),
        ],
    ),
    "s45-667-fast-path-vs-swap": (
        dict(up=["A"]),
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    "s46-677a-same-group-requests-before-starting": (
        dict(config=groups_config([("g", ["A", "B"], {"exclusive": False})])),
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    ),
    # ours: a starting process always has its swap, so (i) is "starting under a load's swap":
    # b's eviction of a collides with that swap and b queues until a is ready and idle.
    "s47i-677a-starting-counts-as-running-ours": (
        dict(config=matrix_config([("sa", "a"), ("sb", "b")], ["a", "b"])),
        [
            ("load a", ["plan a []", "start a#1"]),
            ("req r1 b", "pos r1:1"),
            ("ready a", ["plan b [a]", "stop a#1 evict 10000"]),
        ],
    ),
    "s47ii-677a-stopping-counts-as-running": (
        dict(
            config=matrix_config([("sa", "a"), ("sb", "b")], ["a", "b"]),
            up=["a"],
        ),
        [
            ("unload a", "stop a#1 unload 10000"),
            ("req r2 b", ["plan b [a]"]),
            ("stopped a", "start b#1"),
        ],
    ),
    "s48-946-request-for-a-stopping-model-starts-a-normal-swap": (
        dict(up=["A"]),
        [
            ("unload A", "stop A#1 unload 10000"),
            ("req r1 A", "plan A []"),
            ("req r2 A", ""),
            ("stopped A", "start A#2"),
            ("ready A", ["dispatch r1 A#2", "dispatch r2 A#2"]),
        ],
    ),
    "s50-swap-done-then-crash": (
        {},
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("ready A", "dispatch r1 A#1"),
            ("exit A", ""),
            ("done r1", ""),
            ("req r2 A", ["plan A []", "start A#2"]),
        ],
    ),
    # #889: the 429 is decided at admission (the HTTP layer answers it before any loading text).
    "s52-429-at-admission": (
        dict(config=with_limit(ABC, "A", 2), up=["B"]),
        [
            ("req b1 B", "dispatch b1 B#1"),
            ("req a1 A", "pos a1:1"),
            ("req a2 A", "pos a1:1 a2:2"),
            ("req a3 A", "reject a3 429 concurrency_limit"),
        ],
    ),
    "s54-one-way-non-exclusive-gotcha": (
        dict(
            config=groups_config([("g1", ["T"], {}), ("g2", ["M"], {"exclusive": False})]),
            up=["M"],
        ),
        [
            ("req r1 T", ["plan T [M]", "stop M#1 evict 10000"]),
            ("req r2 M", "pos r2:1"),
            ("stopped M", "start T#1"),
            ("ready T", ["dispatch r1 T#1", "plan M []", "start M#2"]),
            ("req r3 T", "pos r3:1"),
            ("ready M", "dispatch r2 M#2"),
            ("done r2", ["plan T [M]", "stop M#2 evict 10000"]),
            ("req r4 T", ""),
            ("stopped M", ["dispatch r3 T#1", "dispatch r4 T#1"]),
        ],
    ),
    "s55i-swap-false-members-coexist": (
        dict(config=groups_config([("g", ["A", "B"], {"swap": False})]), up=["A"]),
        [("req r1 B", ["plan B []", "start B#1"])],
    ),
    "s55ii-exclusive-groups-evict-each-other": (
        dict(config=groups_config([("g1", ["A"], {}), ("g2", ["B"], {})]), up=["A"]),
        [("req r1 B", ["plan B [A]", "stop A#1 evict 10000"])],
    ),
    "s55iii-persistent-is-spared": (
        dict(
            config=groups_config(
                [
                    ("g1", ["A"], {}),
                    ("g2", ["B"], {"exclusive": False}),
                    ("g3", ["P"], {"exclusive": False, "persistent": True}),
                ]
            ),
            up=["B", "P"],
        ),
        [("req r1 A", ["plan A [B]", "stop B#1 evict 10000"])],
    ),
    "s55iv-persistent-has-no-effect-inside-its-group": (
        dict(config=groups_config([("p", ["P1", "P2"], {"persistent": True})]), up=["P1"]),
        [("req r1 P2", ["plan P2 [P1]", "stop P1#1 evict 10000"])],
    ),
    "s55v-non-exclusive-groups-load-in-parallel": (
        dict(
            config=groups_config(
                [("g1", ["A"], {"exclusive": False}), ("g2", ["B"], {"exclusive": False})]
            )
        ),
        [("req r1 A", ["plan A []", "start A#1"]), ("req r2 B", ["plan B []", "start B#1"])],
    ),
    "s58i-matrix-parallel-start": (
        dict(config=matrix_config([("s", "a & b")], ["a", "b"])),
        [("req r1 a", ["plan a []", "start a#1"]), ("req r2 b", ["plan b []", "start b#1"])],
    ),
    "s58ii-matrix-exclusive-sets": (
        dict(config=matrix_config([("sa", "a"), ("sb", "b")], ["a", "b"])),
        [
            ("req r1 a", ["plan a []", "start a#1"]),
            ("req r2 b", "pos r2:1"),
            ("ready a", "dispatch r1 a#1"),
            ("done r1", ["plan b [a]", "stop a#1 evict 10000"]),
        ],
    ),
    "s58iii-matrix-keeps-a-compatible-model": (
        dict(config=matrix_config([("s", "a & b")], ["a", "b"]), up=["a"]),
        [("req r1 b", ["plan b []", "start b#1"])],
    ),
    # ours: a preload is LoadRequested (no client, no upstream GET /); it still queues and evicts.
    "s65-preload-in-one-exclusive-group-ours": (
        dict(config=classic("A", "B")),
        [
            ("load A", ["plan A []", "start A#1"]),
            ("ready A", ""),
            ("load B", ["plan B [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1"),
            ("ready B", ""),
        ],
    ),
    "s65-preload-submitted-at-once-ours": (
        dict(config=classic("A", "B")),
        [
            ("load A", ["plan A []", "start A#1"]),
            ("load B", "pos load:3:1"),
            ("ready A", ["plan B [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1"),
            ("ready B", ""),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    setup, steps = SCENARIOS[name]
    run = _run(**setup)
    play(run, steps)


def test_s04_failure_message_and_accounting() -> None:
    run = _run()
    play(run, [("req r1 A", ...), ("fail A health check timed out after 120s", ...)])
    reject = run.outputs[-1][0]
    assert reject.message == "unspecific error: health check timed out after 120s"
    assert run.state.models["A"].reserved == 0 and run.state.models["A"].in_flight == 0
    assert run.state.models["A"].state == "failed"


def test_s20ii_model_stays_ready_with_nothing_reserved() -> None:
    run = _run()
    play(run, SCENARIOS["s20ii-cancel-of-the-only-waiter-keeps-the-swap"][1])
    proc = run.state.models["C"]
    assert (proc.state, proc.in_flight, proc.reserved) == ("ready", 0, 0)


def test_s22_late_cancel_keeps_in_flight_until_finished() -> None:
    run = _run(up=["A"])
    play(run, [("req r2 A", ...), ("cancel r2", "")])
    assert run.state.models["A"].in_flight == 1
    play(run, [("done r2", "")])
    assert run.state.models["A"].in_flight == 0


def test_s22_404_message() -> None:
    run = _run()
    (reject,) = run.feed(run.parse("req r1 Q"))
    assert reject.message == "no local server found for requested model"


def test_s49_ttl_cannot_race_the_fast_path_ours() -> None:
    """llama-swap's residual race (TTL stop just before a fast-path grant) cannot happen here:
    the TTL check and the grant are steps of the same reducer, and in-flight blocks the TTL."""
    config = classic("A", "B", schedules=models("A", "B", A={"ttl_ms": 1000}))
    run = Run(config)
    play(run, [("@0 load A", ...), ("@0 ready A", "timer ttl:A:1 @1001")])
    play(run, [("@1000 req r1 A", "dispatch r1 A#1"), ("@1001 timer ttl:A:1", "")])
    assert run.state.models["A"].state == "ready"
    play(run, [("@1500 done r1", "timer ttl:A:1 @2501")])
    assert (run.state.models["A"].in_flight, run.state.models["A"].reserved) == (0, 0)


def test_s05_eviction_grace_is_the_victims_unload_timeout_ours() -> None:
    config = classic(
        "A",
        "B",
        schedules=models(
            "A", "B", A={"unload_timeout_ms": 7000, "health_check_timeout_ms": 99_000}
        ),
    )
    run = Run(config)
    bring_up(run, "A")
    play(run, [("req r1 B", ["plan B [A]", "stop A#1 evict 7000"])])


def test_swap_planned_explains_itself() -> None:
    run = _run(up=["A"])
    plan = run.feed(run.parse("req r1 B"))[0]
    assert plan.running == ("A",)
    assert plan.request_id == "r1"
    assert plan.rule == "group g: swap=true evicts A"


def test_load_joins_an_active_swap_and_is_never_in_flight() -> None:
    run = _run()
    play(run, [("req r1 A", ...), ("load A", ""), ("ready A", "dispatch r1 A#1")])
    assert run.state.models["A"].in_flight == 1
    assert run.state.models["A"].reserved == 1
    play(run, [("load Q", ""), ("load A", "")])  # unknown: ignored; ready: nothing to do
