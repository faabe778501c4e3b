"""spec/core.md §9 H (the fork's serial scheduler, §5): strict arrival order, one request in
flight globally, every other model evicted before a different one starts."""

from __future__ import annotations

from dataclasses import replace

from tests.core.harness import Run, bring_up, classic, groups_config, matrix_config, play

SERIAL = classic("A", "B", "C", policy="serial")


def test_s60_strict_order_one_at_a_time_four_loads() -> None:
    run = Run(SERIAL)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("req r3 C", "pos r2:1 r3:2"),
            ("req r4 A", "pos r2:1 r3:2 r4:3"),
            ("ready A", "dispatch r1 A#1"),
            ("done r1", ["plan B [A]", "stop A#1 evict 10000", "pos r3:1 r4:2"]),
            ("stopped A", "start B#1"),
            ("ready B", "dispatch r2 B#1"),
            ("done r2", ["plan C [B]", "stop B#1 evict 10000", "pos r4:1"]),
            ("stopped B", "start C#1"),
            ("ready C", "dispatch r3 C#1"),
            ("done r3", ["plan A [C]", "stop C#1 evict 10000"]),
            ("stopped C", "start A#2"),
            ("ready A", "dispatch r4 A#2"),
        ],
    )
    starts = [d for out in run.outputs for d in out if d.type_name == "StartProcess"]
    assert len(starts) == 4


def test_s61_same_model_back_to_back_without_parallelism() -> None:
    run = Run(SERIAL)
    bring_up(run, "A")
    play(
        run,
        [("req r1 A", "dispatch r1 A#1"), ("req r2 A", "pos r2:1"), ("done r1", "dispatch r2 A#1")],
    )


def test_s62_ignores_groups_persistence_and_the_matrix() -> None:
    run = Run(groups_config([("g", ["A", "B"], {"swap": False})], policy="serial"))
    bring_up(run, "A")
    play(run, [("req r1 B", ["plan B [A]", "stop A#1 evict 10000"])])
    run = Run(
        groups_config([("p", ["P"], {"persistent": True}), ("x", ["X"], {})], policy="serial")
    )
    bring_up(run, "P")
    play(run, [("req r1 X", ["plan X [P]", "stop P#1 evict 10000"])])
    run = Run(replace(matrix_config([("s", "a & b")], ["a", "b"]), policy="serial"))
    bring_up(run, "a")
    play(run, [("req r1 b", ["plan b [a]", "stop a#1 evict 10000"])])


def test_s63_failure_cancellation_and_a_gone_client() -> None:
    run = Run(SERIAL)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("fail A boom", ["reject r1 500 start_failed", "plan B []", "start B#1"]),
            ("req r3 C", "pos r3:1"),
            ("cancel r3", ""),
            # r2's client left while B was loading: the shell answers the Dispatch with a 499.
            ("req r4 C", "pos r4:1"),
            ("ready B", "dispatch r2 B#1"),
            ("done r2", ["plan C [B]", "stop B#1 evict 10000"]),
        ],
    )


def test_serial_cancel_of_the_swapping_head_lets_the_next_one_advance() -> None:
    run = Run(SERIAL)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("cancel r1", ""),
            ("ready A", ["plan B [A]", "stop A#1 evict 10000"]),
        ],
    )


def test_serial_keeps_the_concurrency_limit() -> None:
    config = SERIAL
    config = replace(
        config, models={**config.models, "B": replace(config.models["B"], concurrency_limit=1)}
    )
    run = Run(config)
    play(
        run,
        [
            ("req r1 A", ...),
            ("req r2 B", "pos r2:1"),
            ("req r3 B", "reject r3 429 concurrency_limit"),
        ],
    )


def test_serial_unload_of_the_swapping_target_advances_the_queue() -> None:
    run = Run(SERIAL)
    play(
        run,
        [
            ("req r1 A", ["plan A []", "start A#1"]),
            ("req r2 B", "pos r2:1"),
            ("unload A", ["reject r1 500 model_unloaded", "stop A#1 unload 10000"]),
            ("stopped A", ["plan B []", "start B#1"]),
        ],
    )
