"""Snapshots restore a state that decides exactly like the original; digests are stable; the
read-only views report what the HTTP layer and the UI show."""

from __future__ import annotations

import json

import pytest

from llamaswap_es.core import (
    REDUCER_VERSION,
    SnapshotError,
    digest,
    model_view,
    model_views,
    queue_view,
    reduce,
    request_view,
    restore,
    scheduler_view,
    snapshot,
)
from tests.core.harness import Run, bring_up, classic, models

CONFIG = classic("A", "B", "C", schedules=models("A", "B", "C", A={"ttl_ms": 5000}))
STEPS = ["req r1 A", "req r2 B", "req r3 A", "ready A", "req r4 C", "done r1"]


def _busy_run() -> Run:
    run = Run(CONFIG)
    for line in STEPS:
        run.step(line)
    return run


def test_snapshot_is_canonical_and_round_trips() -> None:
    run = _busy_run()
    data = snapshot(run.state)
    again = restore(data)
    assert snapshot(again) == data
    assert digest(again) == digest(run.state)


def test_snapshot_plus_tail_decides_like_the_full_run() -> None:
    run = _busy_run()
    copy = restore(snapshot(run.state))
    tail = ["done r3", "stopped A", "ready B", "done r2", "stopped B", "ready C"]
    for line in tail:
        body = run.parse(line)
        full = run.feed(body)
        copy, replayed = reduce(copy, run.inputs[-1])
        assert replayed == full, line
    assert digest(copy) == digest(run.state)


def test_digest_is_stable_across_runs_and_machines() -> None:
    """Pinned: if this changes, the reducer or its encoding changed; bump REDUCER_VERSION."""
    assert REDUCER_VERSION == "core-4"
    assert digest(_busy_run().state) == digest(_busy_run().state)
    assert digest(_busy_run().state) == PINNED_DIGEST


PINNED_DIGEST = "7f5774d6758f1c3ee16c6bea5d439c4a45da87946833a1d7b6e1a118b9954f5b"
"""Changed without a version bump, on purpose, while core-2 was unreleased: idleModel added
`idle_model` (config) and `stop_reason` (per model), and a request now records the `instance` it
was dispatched to; each defaults when absent, and a log without idleModel decides exactly as
before, so core-2 snapshots and logs still replay. Changed again with the bump to core-3 (the
version is part of what the digest covers), and within core-3, unreleased, for the start
backoff: `start_backoff_ms`/`start_backoff_max_ms` (config) and `failed_starts` (per model),
each read as off/None when absent, so core-3 snapshots and logs from before it still restore
and replay to the same decisions. Changed with the bump to core-4: selectors choose in the
reducer (`selections` and `selector_cursors` in the state, empty here), and placement by GPU
memory (the newest GPU sample, footprint facts, and the devices of each process and swap).
And for the grant: per model, the instance's `address` and `suspect_instance`
(DispatchUnreachable). Also with core-4: QueuePositions is no longer decided."""


def test_a_snapshot_from_before_idle_model_restores() -> None:
    raw = json.loads(snapshot(_busy_run().state))
    del raw["config"]["idle_model"]
    for model in raw["models"]:
        del model["stop_reason"]
    copy = restore(json.dumps(raw).encode())
    assert copy.config is not None and copy.config.idle_model == ""
    assert {p.stop_reason for p in copy.models.values()} == {""}


def test_restore_refuses_another_version_and_damage() -> None:
    data = snapshot(_busy_run().state)
    with pytest.raises(SnapshotError, match="rebuild the state from the log"):
        restore(data.replace(REDUCER_VERSION.encode(), b"core-1"))
    with pytest.raises(SnapshotError, match="not valid JSON"):
        restore(b"{")
    with pytest.raises(SnapshotError, match="damaged"):
        restore(data.replace(b'"queue"', b'"qeueu"'))


def test_views_report_model_state_queue_and_phases() -> None:
    run = _busy_run()
    a = model_view(run.state, "A")
    assert (a.state, a.instance, a.in_flight, a.reserved, a.swapping) == ("ready", 1, 1, 1, False)
    assert a.ready_at_ms is not None
    b = model_view(run.state, "B")
    assert (b.state, b.queue_depth, b.waiting) == ("stopped", 1, 0)
    assert model_view(run.state, "nope") is None
    assert [v.model for v in model_views(run.state)] == ["A", "B", "C"]
    r2 = request_view(run.state, "r2")
    assert (r2.phase, r2.position) == ("queued", 1)
    assert request_view(run.state, "r4").position == 2
    assert request_view(run.state, "r3").phase == "dispatched"
    assert request_view(run.state, "r1") is None
    assert [v.request_id for v in queue_view(run.state)] == ["r2", "r4"]


def test_a_deep_queue_is_numbered_in_walk_order_and_found_by_id() -> None:
    """Positions come from one walk of the queue and lookups from the view's index (both were
    searches of the queue per request: quadratic per commit in a deep queue)."""
    deep = models("A", "B", "C", A={"ttl_ms": 5000}, B={"concurrency_limit": 500},
                  C={"concurrency_limit": 500})  # fmt: skip
    run = Run(classic("A", "B", "C", schedules=deep))
    for line in STEPS:
        run.step(line)
    for i in range(5, 305):
        run.step(f"req r{i} {'B' if i % 2 else 'C'}")
    view = scheduler_view(run.state)
    assert len(view.queue) == 302
    assert [v.position for v in view.queue] == list(range(1, 303))
    assert [v.request_id for v in view.queue[:3]] == ["r2", "r4", "r5"]
    for v in view.queue:
        assert view.request(v.request_id) is v
        assert request_view(run.state, v.request_id) == v
    assert view.request("r1") is None  # finished
    assert view.request("r3") is None  # dispatched


def test_views_show_swap_waiters() -> None:
    run = Run(CONFIG)
    for line in ["req r1 B", "req r2 B"]:
        run.step(line)
    b = model_view(run.state, "B")
    assert (b.state, b.swapping, b.waiting, b.reserved) == ("starting", True, 2, 2)
    assert request_view(run.state, "r2").phase == "waiting"
    assert [v.phase for v in queue_view(run.state)] == ["waiting", "waiting"]


def test_bring_up_helper_leaves_a_clean_state() -> None:
    run = Run(CONFIG)
    bring_up(run, "A", "B")
    assert [v.state for v in model_views(run.state)] == ["stopped", "ready", "stopped"]
