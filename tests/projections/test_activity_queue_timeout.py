"""A request rejected by the queue timeout is an activity row like other Rejects: its 503, the
reducer's message, and the time it waited."""

from __future__ import annotations

from llamaswap_es.events.types import Envelope
from llamaswap_es.projections.activity_fold import ActivityFold
from tests.core.harness import BASE_TS, Run, classic, play


def test_a_queue_timeout_is_recorded_with_its_status_message_and_wait() -> None:
    run = Run(classic("A", "B", queue_timeout_ms=3000))
    play(
        run,
        [
            ("@0 load A", ...),
            ("@0 ready A", ""),
            ("@0 req r1 A", "dispatch r1 A#1"),
            ("@10 req r2 B", ...),
            ("@3011 timer queue:r2", "reject r2 503 queue_timeout"),
        ],
    )
    fold = ActivityFold()
    rows = []
    for env, decisions in zip(run.inputs, run.outputs, strict=True):
        for body in (env.body, *decisions):
            row = fold.step(Envelope(body=body, ts_ms=env.ts_ms, seq=env.seq))
            if row is not None:
                rows.append(row)
    (row,) = rows
    assert (row["request_id"], row["model_id"], row["resp_status_code"]) == ("r2", "B", 503)
    assert row["error_msg"] == (
        'request waited 3.0 s in the queue for model "B" (queueTimeoutSeconds: 3)'
    )
    assert (row["received_ms"], row["duration_ms"]) == (BASE_TS + 10, 3001)
    assert row["dispatched_ms"] is None and row["queue_wait_ms"] is None
    assert "r2" not in fold.requests  # nothing left open for it
