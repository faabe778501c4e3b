"""spec/core.md §9 scenarios B (unload, shutdown), the reducer side of C (process life cycle) and
D (TTL), I-66 (reload), and our own differences (ARCHITECTURE §9): non-blocking unload, eviction
grace, TTL clock, starvation bound, minimum resident time, reload as a diff, recovery.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.core.harness import (
    Run,
    bring_up,
    classic,
    groups_config,
    models,
    play,
    use_stub,
)

ABC = classic("A", "B", "C")


def test_s24_unload_fails_waiters_and_the_stop_ends_it() -> None:
    run = Run(ABC)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 A", ""),
            (
                "unload A grace=1000",
                [
                    "reject r1 500 model_unloaded",
                    "reject r2 500 model_unloaded",
                    "stop A#1 unload 1000",
                ],
            ),
            ("stopped A", ""),
        ],
    )
    assert run.outputs[-2][0].message == "unspecific error: group: model unloaded"
    assert run.state.models["A"].state == "stopped" and not run.state.swaps


# ours: no StopProcess is issued for a model that is already stopped (nothing to stop).
def test_s25i_unload_touches_only_its_targets() -> None:
    run = use_stub(Run(ABC), {"B": ["A"]})
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("unload B grace=1000", "reject r2 500 model_unloaded"),
            ("ready A", "dispatch r1 A#1"),
        ],
    )


def test_s25ii_unload_unblocks_the_queue_when_its_stop_completes() -> None:
    run = use_stub(Run(ABC), {"B": ["A"]})
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("unload A grace=1000", ["reject r1 500 model_unloaded", "stop A#1 unload 1000"]),
            ("stopped A", ["plan B [A]", "start B#1"]),
        ],
    )


def test_s26_unload_during_the_eviction_phase_ours_leaves_the_target_stopped() -> None:
    """llama-swap's quirk starts B anyway (with no waiters); we drop the swap, so B stays
    stopped - the fix the spec names."""
    run = Run(ABC)
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 B", ["plan B [A]", "stop A#1 evict 10000"]),
            ("unload B grace=10000", "reject r1 500 model_unloaded"),
            ("stopped A", ""),
        ],
    )
    assert run.state.models["B"].state == "stopped"


def test_s27_unload_uses_each_models_own_timeout_in_one_step_ours() -> None:
    """llama-swap runs one unload round per timeout, smallest first, each blocking the loop;
    ours issues every stop at once with its own grace and never blocks."""
    schedules = models(
        "a",
        "c",
        "e",
        a={"unload_timeout_ms": 45_000},
        c={"unload_timeout_ms": 10_000},
        e={"unload_timeout_ms": 25_000},
    )
    config = groups_config([("g", ["a", "c", "e"], {"swap": False})], schedules)
    run = Run(config)
    bring_up(run, "a", "c", "e")
    play(
        run,
        [
            (
                "unload a e c",
                ["stop a#1 unload 45000", "stop c#1 unload 10000", "stop e#1 unload 25000"],
            )
        ],
    )
    run = Run(config)
    bring_up(run, "a", "c")
    play(run, [("unload grace=1000", ["stop a#1 unload 1000", "stop c#1 unload 1000"])])


def test_s28_unload_does_not_wait_for_busy_requests_and_never_blocks_ours() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("unload A grace=10000", "stop A#1 unload 10000"),
            # llama-swap blocks its loop here; ours takes the request at once and queues it
            # until A is gone (A is still stopping and has a request in flight).
            ("req r2 B", "pos r2:1"),
            ("stopped A", ["plan B []", "start B#1"]),
            ("done r1", ""),
        ],
    )
    assert run.state.models["A"].in_flight == 0


def test_s29_shutdown_rejects_every_waiter_then_stops_everything() -> None:
    run = use_stub(Run(ABC), {"C": ["A", "B"]})
    play(
        run,
        [
            ("req a1 A", ["plan A []", "start A#1"]),
            ("req a2 A", ""),
            ("req b1 B", ["plan B []", "start B#1"]),
            ("req b2 B", ""),
            ("req c1 C", "pos c1:1"),
            (
                "shutdown 1000",
                [
                    "reject a1 500 shutting_down",
                    "reject a2 500 shutting_down",
                    "reject b1 500 shutting_down",
                    "reject b2 500 shutting_down",
                    "reject c1 500 shutting_down",
                    "stop A#1 shutdown 1000",
                    "stop B#1 shutdown 1000",
                ],
            ),
            ("req r9 A", "reject r9 500 shutting_down"),
            ("shutdown", ""),
            ("load A", ""),
        ],
    )
    assert run.outputs[-3][0].message == "unspecific error: group is shutting down"


def test_s29_shutdown_without_grace_uses_the_configured_one() -> None:
    run = Run(replace(ABC, shutdown_grace_ms=12_000))
    bring_up(run, "A")
    play(run, [("shutdown", "stop A#1 shutdown 12000")])


def test_s36_stop_while_starting_aborts_the_start() -> None:
    """The executor answers a stop of a starting process with ProcessStopped (not StartFailed);
    the waiters were already answered by the unload. A second unload is a no-op."""
    run = Run(ABC)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("unload A", ["reject r1 500 model_unloaded", "stop A#1 unload 10000"]),
            ("stopped A", ""),
            ("unload A", ""),
        ],
    )


def test_s37_crash_while_ready_then_a_normal_swap() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    play(
        run,
        [
            ("req r0 A", "dispatch r0 A#1"),
            ("exit A", ""),
            ("done r0", ""),
            ("req r1 A", ["plan A []", "start A#2"]),
        ],
    )


def test_stale_process_events_are_ignored() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    play(run, [("exit A", ""), ("req r1 A", ["plan A []", "start A#2"])])
    from llamaswap_es.events.types import ProcessReady, ProcessStopped

    assert run.feed(ProcessReady(model="A", instance=1)) == []
    assert run.feed(ProcessStopped(model="A", instance=1)) == []
    assert run.state.models["A"].state == "starting"


TTL = classic("A", "B", schedules=models("A", "B", A={"ttl_ms": 300_000}))


def test_s42_idle_unload_timing_strictly_greater_ours_in_ms() -> None:
    run = Run(TTL)
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", "timer ttl:A:1 @300001"),
            ("@5000 req r1 A", "dispatch r1 A#1"),
            ("@10000 done r1", "timer ttl:A:1 @310001"),
            # a timer cannot fire early, but if it did the reducer re-checks the idle time
            ("@310000 timer ttl:A:1", "timer ttl:A:1 @310001"),
            ("@310001 timer ttl:A:1", "stop A#1 ttl 10000"),
            ("@310002 timer ttl:A:1", ""),
        ],
    )


def test_s43_in_flight_blocks_ttl_and_the_clock_restarts_on_completion() -> None:
    run = Run(classic("A", schedules=models("A", A={"ttl_ms": 1000})))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", "timer ttl:A:1 @1001"),
            ("@500 req r1 A", "dispatch r1 A#1"),
            ("@1001 timer ttl:A:1", ""),
            ("@1500 done r1", "timer ttl:A:1 @2501"),
            ("@2501 timer ttl:A:1", "stop A#1 ttl 10000"),
        ],
    )


def test_s43_ttl_zero_never_unloads() -> None:
    run = Run(ABC)
    play(
        run,
        [
            ("load A", ["plan A []", "start A#1"]),
            ("ready A", ""),
            ("req r1 A", ...),
            ("done r1", ""),
        ],
    )


def test_s44_never_used_process_ours_waits_the_full_ttl() -> None:
    """llama-swap's lastUse starts at the epoch, so an unused process unloads ~1 s after ready;
    our idle clock starts at ready (ARCHITECTURE §9.3)."""
    run = Run(classic("A", schedules=models("A", A={"ttl_ms": 60_000})))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", "timer ttl:A:1 @60001"),
            ("@60001 timer ttl:A:1", "stop A#1 ttl 10000"),
        ],
    )


def test_ttl_timer_is_cancelled_when_the_model_goes_down() -> None:
    run = Run(TTL)
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ...),
            ("req r1 B", ["plan B [A]", "cancel-timer ttl:A:1", "stop A#1 evict 10000"]),
        ],
    )
    assert run.state.timers == {}


# ---------------------------------------------------------------------- ours: bounded waiting


def test_starvation_bound_forces_the_waiting_swap() -> None:
    run = Run(classic("A", "B", starvation_bound_ms=5000))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ...),
            ("@0 req r1 A", "dispatch r1 A#1"),
            ("@1 req r2 B", "pos r2:1"),
            ("@1000 req r3 A", "dispatch r3 A#1"),  # below the bound: llama-swap's fast path
            ("@5001 req r4 A", "dispatch r4 A#1"),  # waited exactly 5000: not longer
            ("@5002 req r5 A", "pos r2:1 r5:2"),  # r2 waited 5001 > 5000: A's fast path closes
            ("@6000 done r1", ""),
            ("@6001 done r3", ""),
            ("@7000 done r4", ["plan B [A]", "stop A#1 evict 10000", "pos r5:1"]),
            ("@7001 stopped A", "start B#1"),
            ("@8000 ready B", "dispatch r2 B#1"),
            ("@9000 done r2", ["plan A [B]", "stop B#1 evict 10000"]),
        ],
    )


def test_starvation_bound_off_keeps_llama_swap_order() -> None:
    run = Run(classic("A", "B", starvation_bound_ms=0))
    bring_up(run, "A")
    play(
        run,
        [
            ("@0 req r1 A", ...),
            ("@1 req r2 B", "pos r2:1"),
            ("@999999 req r3 A", "dispatch r3 A#1"),
        ],
    )


def test_min_resident_time_delays_an_eviction_but_not_unload() -> None:
    run = Run(classic("A", "B", min_resident_ms=10_000))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ""),
            ("@100 req r1 B", ["timer resident:A:1 @10000", "pos r1:1"]),
            ("@200 req r2 A", "dispatch r2 A#1"),  # A keeps serving meanwhile
            ("@300 done r2", ""),
            ("@10000 timer resident:A:1", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    )
    run = Run(classic("A", "B", min_resident_ms=10_000))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ""),
            ("@100 req r1 B", ["timer resident:A:1 @10000", "pos r1:1"]),
            ("@200 unload A", ["cancel-timer resident:A:1", "stop A#1 unload 10000"]),
            ("@300 stopped A", ["plan B []", "start B#1"]),
        ],
    )


# ---------------------------------------------------------------------- reload (§9.6), recovery


def _reload_configs():
    base = classic(
        "A", "B", schedules=models("A", "B", A={"fingerprint": "a1"}, B={"fingerprint": "b1"})
    )
    changed = replace(
        base, models={**base.models, "A": replace(base.models["A"], fingerprint="a2")}
    )
    without_b = classic("A", schedules={"A": base.models["A"]})
    return base, {"same": base, "changed": changed, "without_b": without_b}


def test_s66_reload_with_an_identical_config_keeps_models_running_ours() -> None:
    base, configs = _reload_configs()
    run = Run(base, configs)
    bring_up(run, "A")
    play(run, [("reload same", ""), ("req r1 A", "dispatch r1 A#1")])


def test_s66_reload_restarts_only_a_changed_model_and_keeps_its_waiters_ours() -> None:
    """llama-swap fails the waiters of a model a reload changed ("shutting down"); ours go back
    to the queue and are served by the new instance (they were valid requests)."""
    base, configs = _reload_configs()
    run = Run(base, configs)
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("reload changed", ["stop A#1 reload 10000"]),
            # #946: a request for a stopping model starts a swap that waits for the stop
            ("req r3 A", "plan A []"),
            ("stopped A", "start A#2"),
            ("done r1", ""),
            ("ready A", "dispatch r3 A#2"),
            ("done r3", ["plan B [A]", "stop A#2 evict 10000"]),
        ],
    )
    run = Run(base, configs)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            # r1's swap started the old A#1: it is dropped, r1 queued again (ahead of r2, by
            # arrival) and planned at once; the new swap waits for the old instance's stop. r2's
            # position is unchanged, so its client is told nothing new.
            ("reload changed", ["stop A#1 reload 10000", "plan A []"]),
            ("stopped A", "start A#2"),
            ("ready A", "dispatch r1 A#2"),
            ("done r1", ["plan B [A]", "stop A#2 evict 10000"]),
        ],
    )


def test_s66_reload_removing_a_model_fails_its_waiters() -> None:
    base, configs = _reload_configs()
    run = Run(base, configs)
    play(
        run,
        [
            ("req r1 B", ["plan B []", "start B#1"]),
            ("reload without_b", ["reject r1 500 config_reloaded", "stop B#1 reload 10000"]),
            ("stopped B", ""),
        ],
    )
    assert run.outputs[-2][0].message == "unspecific error: group is shutting down"


def test_s66_reload_removing_a_model_stops_it_and_forgets_it() -> None:
    base, configs = _reload_configs()
    run = Run(base, configs)
    bring_up(run, "B")
    play(
        run,
        [
            ("req r1 B", "dispatch r1 B#1"),
            ("reload without_b", "stop B#1 reload 10000"),
            ("req r2 B", "reject r2 404 model_not_found"),
            ("stopped B", ""),
        ],
    )
    assert "B" in run.state.models  # r1 is still in flight
    play(run, [("done r1", "")])
    assert "B" not in run.state.models


def test_reload_switching_policy_keeps_waiters_and_processes() -> None:
    base = classic("A", "B")
    run = Run(base, {"serial": replace(base, policy="serial")})
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("reload serial", ""),  # re-sorted, r2 still first: nothing new to tell
            ("req r3 A", "pos r2:1 r3:2"),  # serial: no fast path past r2
            ("done r1", ["plan B [A]", "stop A#1 evict 10000", "pos r3:1"]),
        ],
    )


def test_reload_changing_the_rules_replans_a_swap_that_has_not_started() -> None:
    """A swap still evicting was planned under the old rules: its waiters go back to the queue
    and are planned again, so its target never starts beside a model the new rules exclude."""
    apart = groups_config([("g1", ["A"], {}), ("g2", ["B"], {}), ("g3", ["C"], {})])
    together = groups_config([("g", ["A", "B", "C"], {"swap": False})])
    run = Run(apart, {"together": together})
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 B", ["plan B [A]", "stop A#1 evict 10000"]),
            ("reload together", ["plan B []", "start B#1"]),
            ("stopped A", ""),
            ("ready B", "dispatch r1 B#1"),
        ],
    )


def test_a_one_way_group_model_waits_for_an_evicting_swap_ours() -> None:
    """llama-swap would start C (non-exclusive) while A's swap is still evicting, and A would
    then start beside C although A's exclusive group excludes it; we queue C until A started."""
    config = groups_config(
        [("g1", ["A"], {}), ("g2", ["B", "C"], {"swap": False, "exclusive": False})]
    )
    run = Run(config)
    bring_up(run, "B")
    play(
        run,
        [
            ("req r1 A", ["plan A [B]", "stop B#1 evict 10000"]),
            ("req r2 C", "pos r2:1"),
            ("stopped B", ["start A#1", "plan C []", "start C#1"]),
            ("ready A", "dispatch r1 A#1"),
        ],
    )


def test_invalid_config_keeps_the_old_one_and_says_why() -> None:
    from llamaswap_es.events.types import ConfigApplied

    run = Run(ABC)
    bad = ABC.to_dict() | {"policy": "lottery"}
    assert run.feed(ConfigApplied(config_hash="bad", schedule=bad)) == []
    assert "lottery" in run.state.config_error
    assert run.state.config.policy == "fifo"
    play(run, [("req r1 A", ["plan A []", "start A#1"])])


def test_recovery_adopts_a_process_and_drops_the_dead_runs_requests() -> None:
    run = Run(ABC)
    bring_up(run, "A")
    play(
        run,
        [
            ("req r1 A", "dispatch r1 A#1"),
            ("req r2 B", "pos r2:1"),
            ("boot", ""),
            ("abandon r1", ""),
            ("adopt A 1", ""),
            ("req r3 A", "dispatch r3 A#1"),
            ("req r4 B", "pos r4:1"),
            ("done r3", ["plan B [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1"),
        ],
    )


def test_shutdown_is_forgotten_by_the_next_boot() -> None:
    run = Run(ABC)
    play(run, [("shutdown", ""), ("boot", ""), ("req r1 A", ["plan A []", "start A#1"])])


@pytest.mark.parametrize("phase", ["queued", "waiting", "dispatched"])
def test_abandoned_request_is_removed_wherever_it_is(phase: str) -> None:
    run = Run(ABC)
    bring_up(run, "A")
    if phase == "queued":
        play(
            run, [("req r0 A", ...), ("req r1 B", "pos r1:1"), ("abandon r1", ""), ("done r0", "")]
        )
    elif phase == "waiting":
        play(
            run,
            [("req r1 B", ...), ("abandon r1", ""), ("stopped A", "start B#1"), ("ready B", "")],
        )
    else:
        play(
            run,
            [
                ("req r1 A", "dispatch r1 A#1"),
                ("req r2 B", ...),
                ("abandon r1", ["plan B [A]", "stop A#1 evict 10000"]),
            ],
        )
    assert "r1" not in run.state.requests
