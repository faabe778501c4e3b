"""Placement by GPU memory (issue 18) in the reducer: which devices a model gets, what is
evicted for it, and when it is refused. Each case is a list of (step, expected decisions) played
through the harness (invariants checked after every step); `...` skips a step's comparison."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamaswap_es.config.schedule import PlacementRules
from llamaswap_es.core import digest, new_state, reduce, restore, snapshot
from llamaswap_es.core.effects import plan_eviction, running_for
from llamaswap_es.core.views import scheduler_view
from llamaswap_es.events.types import PlacementChosen, Reject, StartProcess
from tests.core.harness import Run, groups_config, models, play

GIB = 24_000


def _config(
    footprints: dict[str, int],
    *,
    devices: dict[str, int] | None = None,
    priorities: dict[str, int] | None = None,
    margin: int = 0,
    persistent: tuple[str, ...] = (),
    mode: str = "memory",
    extra: tuple[str, ...] = (),
):
    """Every model in one group whose members may all run together (swap: false), so memory
    alone decides what must stop; `persistent` members sit in a persistent group of their own;
    `extra` models have no declared footprint."""
    devices = devices or {}
    priorities = priorities or {}
    ids = [*footprints, *extra]
    schedules = models(
        *ids,
        **{
            m: {
                "footprint_mb": footprints[m],
                "footprint_devices": devices.get(m, 1),
                "placement_priority": priorities.get(m, 0),
            }
            for m in footprints
        },
    )
    shared = [m for m in ids if m not in persistent]
    groups = [("g", shared, {"swap": False, "exclusive": False})]
    if persistent:
        groups.append(("p", list(persistent), {"exclusive": False, "persistent": True}))
    return groups_config(groups, schedules, placement=PlacementRules(mode=mode, margin_mb=margin))


def _up(model: str, rid: str, on: str, at: int | None = None) -> list[tuple[str, object]]:
    """A request that starts `model` on devices `on` with nothing evicted, then it serves."""
    stamp = f"@{at} " if at is not None else ""
    return [
        (
            f"{stamp}req {rid} {model}",
            [f"plan {model} []", f"place {model} on {on} []", f"start {model}#1 on {on}"],
        ),
        (f"ready {model}", f"dispatch {rid} {model}#1"),
    ]


# ---------------------------------------------------------------------------- llama-swap #158

FOUR = [("gpu " + " ".join([f"{GIB}/{GIB}"] * 4), "")]


def _four_busy_then_done(order: list[str]) -> list[tuple[str, object]]:
    """A, B, C, D each fill one of 4 GPUs; their requests finish in `order` (recency)."""
    steps = list(FOUR)
    for index, model in enumerate("ABCD"):
        steps += _up(model, f"r{model}", str(index), at=10 * index)
    for index, model in enumerate(order):
        steps.append((f"@{100 + 10 * index} done r{model}", ...))
    return steps


def test_158_a_model_that_needs_three_gpus_keeps_the_highest_priority_one() -> None:
    config = _config(
        {"A": 20_000, "B": 20_000, "C": 20_000, "D": 20_000, "T": 60_000},
        devices={"T": 3},
        priorities={"A": 1, "B": 9, "C": 0, "D": 2},
    )
    run = Run(config)
    play(run, _four_busy_then_done(["B", "A", "C", "D"]))  # B is the least recently used
    play(
        run,
        [
            (
                "req t1 T",
                [
                    "plan T [A,C,D]",
                    "place T on 0,2,3 [A,C,D]",
                    "stop A#1 evict 10000",
                    "stop C#1 evict 10000",
                    "stop D#1 evict 10000",
                ],
            ),
            ("stopped A", ""),
            ("stopped C", ""),
            ("stopped D", "start T#1 on 0,2,3"),
            ("ready T", "dispatch t1 T#1"),
        ],
    )
    assert run.state.models["B"].state == "ready"


def test_158_with_equal_priorities_the_most_recently_used_one_is_kept() -> None:
    config = _config(
        {"A": 20_000, "B": 20_000, "C": 20_000, "D": 20_000, "T": 60_000}, devices={"T": 3}
    )
    run = Run(config)
    play(run, _four_busy_then_done(["B", "D", "A", "C"]))  # C was used last
    play(
        run,
        [
            (
                "req t1 T",
                [
                    "plan T [A,B,D]",
                    "place T on 0,1,3 [A,B,D]",
                    "stop A#1 evict 10000",
                    "stop B#1 evict 10000",
                    "stop D#1 evict 10000",
                ],
            ),
        ],
    )
    chosen = next(d for d in run.outputs[-1] if isinstance(d, PlacementChosen))
    assert chosen.free_mb == (4_000, 4_000, 4_000, 4_000)
    assert chosen.need_mb == 20_000
    text = chosen.describe()
    assert "T placed on GPU0, GPU1, GPU3: needs 20,000 MiB per device" in text
    assert "free before evicting: GPU0 4,000, GPU1 4,000, GPU3 4,000 MiB" in text
    assert "evict A (frees 20,000 MiB), B (frees 20,000 MiB), D (frees 20,000 MiB)" in text


# ---------------------------------------------------------------------------- refusals


def test_a_model_too_big_for_any_device_is_refused_at_once_with_the_numbers() -> None:
    run = Run(_config({"A": 8_000, "Q": 46_000}, margin=512))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB} 16000/16000", ""),
            ("req q1 Q", "reject q1 503 does_not_fit permanent"),
        ],
    )
    reject = run.outputs[-1][0]
    assert isinstance(reject, Reject)
    assert reject.message == (
        "Q needs 46,000 MiB on 1 device; the largest device has 24,000 MiB total, margin 512 MiB"
    )
    assert not run.state.requests and not run.state.swaps


def test_a_model_wider_than_the_machine_is_refused() -> None:
    run = Run(_config({"W": 40_000}, devices={"W": 4}))
    play(run, [(f"gpu {GIB}/{GIB} {GIB}/{GIB}", ""), ("req w1 W", ...)])
    reject = run.outputs[-1][0]
    assert isinstance(reject, Reject) and reject.permanent
    assert reject.message == "W needs 4 devices (10,000 MiB on each); there are only 2 GPUs"


def test_memory_held_by_a_persistent_member_is_never_freed_the_start_is_refused_for_now() -> None:
    run = Run(_config({"P": 20_000, "B": 20_000}, persistent=("P",)))
    play(run, [(f"gpu {GIB}/{GIB}", ""), *_up("P", "p1", "0"), ("done p1", ...)])
    play(run, [("req b1 B", "reject b1 503 does_not_fit")])
    reject = run.outputs[-1][0]
    assert isinstance(reject, Reject) and not reject.permanent
    assert "B needs 20,000 MiB + margin 0 MiB on 1 device; at most GPU0 4,000 MiB" in reject.message
    assert run.state.models["P"].state == "ready"


# ---------------------------------------------------------------------------- sharing, starting


def test_two_models_share_one_device_when_both_fit() -> None:
    run = Run(_config({"A": 8_000, "B": 8_000}))
    play(run, [(f"gpu {GIB}/{GIB} {GIB}/{GIB}", ""), *_up("A", "a1", "0"), *_up("B", "b1", "0")])


def test_a_start_while_another_is_still_starting_counts_its_footprint() -> None:
    run = Run(_config({"A": 10_000, "B": 10_000, "C": 10_000}))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB}", ""),
            ("req a1 A", ["plan A []", "place A on 0 []", "start A#1 on 0"]),
            # A is not in the sample yet: 24,000 - 10,000 leaves room for B beside it
            ("req b1 B", ["plan B []", "place B on 0 []", "start B#1 on 0"]),
            # 4,000 left: C would have to evict A, which is still starting: it waits
            ("req c1 C", "pos c1:1"),
            ("ready A", "dispatch a1 A#1"),
            ("ready B", "dispatch b1 B#1"),
            ("done b1", ["plan C [B]", "place C on 0 [B]", "stop B#1 evict 10000"]),
            ("stopped B", "start C#1 on 0"),
            ("ready C", "dispatch c1 C#1"),
        ],
    )


def test_a_busy_model_is_never_evicted_the_request_waits_for_it() -> None:
    run = Run(_config({"A": 20_000, "B": 20_000}, priorities={"A": 0}))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB}", ""),
            *_up("A", "a1", "0"),
            ("req b1 B", "pos b1:1"),
            ("done a1", ["plan B [A]", "place B on 0 [A]", "stop A#1 evict 10000"]),
        ],
    )


# ---------------------------------------------------------------------------- margin, priority


@pytest.mark.parametrize(
    ("margin", "expected"),
    [
        (0, ["plan B []", "place B on 0 []", "start B#1 on 0"]),
        (512, ["plan B [A]", "place B on 0 [A]", "stop A#1 evict 10000"]),
    ],
)
def test_the_margin_is_kept_free_on_every_device(margin: int, expected: list[str]) -> None:
    run = Run(_config({"A": 12_000, "B": 12_000}, margin=margin))
    play(run, [(f"gpu {GIB}/{GIB}", ""), *_up("A", "a1", "0"), ("done a1", ...)])
    play(run, [("req b1 B", expected)])


@pytest.mark.parametrize(
    ("priorities", "evicted"),
    [({"A": 5, "B": 0}, "B"), ({"A": 0, "B": 5}, "A"), ({}, "A")],
    ids=["lower-priority-goes-first", "priority-beats-recency", "equal-least-recent-goes"],
)
def test_idle_models_are_evicted_by_priority_then_least_recent_use(
    priorities: dict[str, int], evicted: str
) -> None:
    run = Run(_config({"A": 10_000, "B": 10_000, "C": 10_000}, priorities=priorities))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB}", ""),
            *_up("A", "a1", "0"),
            *_up("B", "b1", "0"),
            ("@50 done a1", ...),  # A is the least recently used
            ("@60 done b1", ...),
            (
                "req c1 C",
                [
                    f"plan C [{evicted}]",
                    f"place C on 0 [{evicted}]",
                    f"stop {evicted}#1 evict 10000",
                ],
            ),
        ],
    )


# ---------------------------------------------------------------------------- facts


def test_a_new_sample_unblocks_a_waiting_start_and_no_stale_plan_is_reused() -> None:
    """Another program held memory; when a sample shows more free, the queued request starts
    at once (placement never answers from a plan cached under the old facts)."""
    run = Run(_config({"A": 20_000, "B": 20_000}))
    play(run, [("gpu 64000/30000", ""), *_up("A", "a1", "0")])
    # another program holds 34,000 MiB: with A started, 10,000 are free; B would evict busy A
    play(run, [("req b1 B", "pos b1:1")])
    running = running_for(run.state, "B")
    assert plan_eviction(run.state, "B", running).evict == ("A",)
    play(
        run,
        [  # the other program is gone: 44,000 free with A on it, B starts beside busy A
            ("gpu 64000/44000", ["plan B []", "place B on 0 []", "start B#1 on 0"]),
        ],
    )


def test_measured_beats_declared_beats_estimated() -> None:
    run = Run(_config({"A": 10_000}))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB}", ""),
            ("fp A 30000 source=estimated", ""),  # worse than declared: ignored for placement
            ("req a1 A", ["plan A []", "place A on 0 []", "start A#1 on 0"]),
            ("ready A", "dispatch a1 A#1"),
            ("done a1", ...),
            ("unload A", "stop A#1 unload 10000"),
            ("stopped A", ""),
            ("fp A 30000 source=measured", ""),  # better than declared: A cannot fit again
            ("req a2 A", "reject a2 503 does_not_fit permanent"),
        ],
    )
    assert run.state.footprint("A").source == "measured"


def test_a_model_with_no_known_footprint_is_placed_as_groups_say() -> None:
    run = Run(_config({"A": 10_000}, extra=("U",)))
    play(
        run,
        [
            (f"gpu {GIB}/{GIB}", ""),
            ("req u1 U", ["plan U []", "start U#1"]),
            ("ready U", "dispatch u1 U#1"),
        ],
    )
    start = next(d for d in run.outputs[-2] if isinstance(d, StartProcess))
    assert start.devices == () and start.device_uuids == ()


def test_the_start_carries_the_uuids_of_its_devices() -> None:
    run = Run(_config({"A": 30_000}, devices={"A": 2}))
    play(run, [(f"gpu {GIB}/{GIB} {GIB}/{GIB} {GIB}/{GIB}", ""), ("req a1 A", ...)])
    start = next(d for d in run.outputs[-1] if isinstance(d, StartProcess))
    assert (start.devices, start.device_uuids) == ((0, 1), ("GPU-0", "GPU-1"))


def test_mode_off_decides_exactly_as_without_placement() -> None:
    steps = [
        f"gpu {GIB}/{GIB}",
        "req a1 A",
        "ready A",
        "req b1 B",
        "done a1",
        "req c1 C",
        "ready B",
        "fp C 90000",
    ]
    off = _config({"A": 20_000, "B": 20_000, "C": 20_000}, mode="off")
    bare = replace(off, models=models("A", "B", "C"))
    runs = [Run(off), Run(bare)]
    for line in steps:
        got = [run.step(line) for run in runs]
        assert got[0] == got[1], line
    decisions = [d for out in runs[0].outputs for d in out]
    assert not any(isinstance(d, PlacementChosen) for d in decisions)
    assert all(d.devices == () for d in decisions if isinstance(d, StartProcess))


def test_snapshot_and_replay_of_a_placement_run_decide_the_same() -> None:
    run = Run(_config({"A": 20_000, "B": 20_000}))
    play(run, [("gpu 24000/24000", ""), *_up("A", "a1", "0"), ("done a1", ...), ("req b1 B", ...)])
    state = new_state()
    for env, expected in zip(run.inputs, run.outputs, strict=True):
        state, got = reduce(state, env)
        assert got == expected
    copy = restore(snapshot(run.state))
    assert digest(copy) == digest(run.state)
    assert copy.gpu == run.state.gpu
    assert copy.swaps["B"].devices == (0,) and copy.models["A"].devices == (0,)


def test_the_view_shows_devices_footprints_and_free_memory_as_counted() -> None:
    run = Run(_config({"A": 20_000, "B": 10_000}))
    play(run, [(f"gpu {GIB}/{GIB} {GIB}/{GIB}", ""), *_up("A", "a1", "0"), ("req b1 B", ...)])
    view = scheduler_view(run.state)
    a = view.models["A"]
    assert (a.devices, a.footprint_mb, a.footprint_source) == ((0,), 20_000, "declared")
    assert view.models["B"].devices == (1,)  # starting: counted, not yet in a sample
    assert [(g.index, g.uuid, g.sampled_free_mb, g.free_mb) for g in view.gpus] == [
        (0, "GPU-0", GIB, 4_000),
        (1, "GPU-1", GIB, 14_000),
    ]


def test_groups_still_decide_first_and_their_evictions_count_as_free_memory() -> None:
    """A and B are in a swap group (one at a time) beside C; D needs room on C's GPU."""
    schedules = models(
        "A",
        "B",
        "C",
        "D",
        A={"footprint_mb": 4_000},
        B={"footprint_mb": 22_000},
        C={"footprint_mb": 20_000},
        D={"footprint_mb": 8_000},
    )
    config = groups_config(
        [("ab", ["A", "B"], {"exclusive": False}), ("cd", ["C", "D"], {"swap": False})],
        schedules,
        placement=PlacementRules(mode="memory"),
    )
    run = Run(config)
    play(
        run,
        [
            (f"gpu {GIB}/{GIB} {GIB}/{GIB}", ""),
            *_up("A", "a1", "0"),
            ("done a1", ...),
            # memory alone would put B on GPU1; the group evicts A anyway, and with A's 4,000
            # MiB counted free GPU0 fits as well and has the lower index
            ("req b1 B", ["plan B [A]", "place B on 0 [A]", "stop A#1 evict 10000"]),
            ("stopped A", "start B#1 on 0"),
            ("ready B", "dispatch b1 B#1"),
            ("done b1", ...),
            (
                "req c1 C",  # cd is exclusive: B goes by the group's rule, then C fits on GPU0
                ["plan C [B]", "place C on 0 [B]", "stop B#1 evict 10000"],
            ),
        ],
    )


def test_a_reload_that_changes_the_command_forgets_the_measurement() -> None:
    config = _config({"A": 10_000})
    changed = replace(
        config, models={"A": replace(config.models["A"], fingerprint="new command")}
    )
    run = Run(config, {"changed": changed, "same": config})
    play(run, [(f"gpu {GIB}/{GIB}", ""), ("fp A 30000", ""), ("reload same", "")])
    assert run.state.footprint("A").source == "measured"  # unchanged: still its measurement
    play(run, [("reload changed", "")])
    footprint = run.state.footprint("A")
    assert (footprint.source, footprint.mb) == ("declared", 10_000)


def test_a_sample_taken_while_a_model_stops_does_not_count_its_memory_twice() -> None:
    """A stopping instance still holds its memory, so a sample shows it used; it is also listed
    as holding its device until it stops. Counted once, the next model waits for the stop and
    starts; counted twice, it was refused `does_not_fit` (review finding)."""
    run = Run(_config({"A": 20_000, "B": 20_000}))
    play(run, [(f"gpu {GIB}/{GIB}", ""), *_up("A", "a1", "0"), ("done a1", ...)])
    play(run, [(f"gpu {GIB}/4000", "")])
    run.step("unload A")
    run.step(f"gpu {GIB}/4000")
    got = run.step("req b1 B")
    assert not any("does_not_fit" in g for g in got), got


def test_a_measurement_of_an_instance_a_reload_replaced_is_ignored() -> None:
    """The runtime measures after ProcessReady, on a thread: its fact can arrive after a reload
    that changed the command stopped that instance. It measured the old command: ignored."""
    config = _config({"A": 10_000})
    changed = replace(
        config, models={"A": replace(config.models["A"], fingerprint="new command")}
    )
    run = Run(config, {"changed": changed})
    play(run, [(f"gpu {GIB}/{GIB}", ""), *_up("A", "a1", "0"), ("done a1", ...)])
    play(run, [("fp A 12000 instance=1", "")])  # while A#1 is ready: taken
    assert run.state.footprint("A").source == "measured"
    play(run, [("reload changed", ...), ("fp A 16000 instance=1", "")])  # late, A#1 replaced
    footprint = run.state.footprint("A")
    assert (footprint.source, footprint.mb) == ("declared", 10_000)
