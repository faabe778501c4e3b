"""In-flight tracking as the UI sees it: upserts, redaction, coalesced progress, cancel."""

from __future__ import annotations

import asyncio

from llamaswap_es.projections.inflight import InflightTracker


def _tracker() -> tuple[InflightTracker, list[dict]]:
    tracker = InflightTracker(progress_interval_ms=50)
    seen: list[dict] = []
    tracker.add_listener(seen.append)
    return tracker, seen


async def test_credentials_never_reach_the_entry() -> None:
    tracker, seen = _tracker()
    entry = tracker.begin(
        request_id="r1",
        model="m",
        path="/v1/chat/completions",
        method="POST",
        headers={"authorization": "Bearer sk-secret", "x-api-key": "k", "content-type": "x"},
        remote_ip="127.0.0.1",
    )
    assert entry.id == "1"
    text = repr(seen)
    assert "sk-secret" not in text and "'k'" not in text
    assert seen[0]["request"]["req_headers"]["Authorization"] == "[REDACTED]"
    assert seen[0]["request"]["req_headers"]["Content-Type"] == "x"


async def test_progress_updates_are_coalesced_and_dropped_when_the_request_ends() -> None:
    tracker, seen = _tracker()
    entry = tracker.begin(
        request_id="r1", model="m", path="/p", method="POST", headers={}, remote_ip=""
    )
    for _ in range(100):
        tracker.add_bytes(entry, 10)
    upserts = [m for m in seen if m["operation"] == "upsert"]
    assert len(upserts) == 2  # begin, then the first progress; the rest waits for the interval
    tracker.finish(entry)
    await asyncio.sleep(0.1)  # past the coalescing interval: the pending update must not appear
    assert seen[-1] == {"operation": "remove", "id": "1"}
    assert entry.resp_bytes == 1000


async def test_cancel_reaches_the_request_and_unknown_ids_are_reported() -> None:
    tracker, _ = _tracker()
    cancelled = asyncio.Event()
    tracker.begin(
        request_id="r1",
        model="m",
        path="/p",
        method="POST",
        headers={},
        remote_ip="",
        cancel=cancelled.set,
    )
    assert tracker.cancel("1") is True
    assert cancelled.is_set()
    assert tracker.cancel("99") is False


def test_an_empty_snapshot_has_no_requests_key_as_in_llama_swap() -> None:
    tracker, _ = _tracker()
    assert tracker.snapshot() == {"operation": "snapshot"}
