"""The /api/events fan-out: llama-swap's frame shape, one encoding shared by every connection,
byte-bounded connections, and a clean end."""

from __future__ import annotations

import json
import logging

import pytest

from llamaswap_es.projections.event_hub import EventHub, Subscription, frame


def _decode(raw: bytes) -> tuple[str, object]:
    text = raw.decode()
    assert text.startswith("event:message\ndata:") and text.endswith("\n\n")
    envelope = json.loads(text[len("event:message\ndata:") : -2])
    return envelope["type"], json.loads(envelope["data"])


def _split(batch: bytes) -> list[tuple[str, object]]:
    """The messages in one batch (a batch is whole frames, back to back)."""
    return [_decode(part + b"\n\n") for part in batch.split(b"\n\n") if part]


async def _drain(sub: Subscription) -> list[bytes]:
    return [batch async for batch in sub.frames()]


def test_frame_double_encodes_the_payload_as_llama_swap_does() -> None:
    raw = frame("profileChanged", {"active": None})
    assert b"data:{" in raw and b": " not in raw.split(b"\n")[0]
    envelope = json.loads(raw.decode().split("data:", 1)[1])
    assert isinstance(envelope["data"], str)
    assert _decode(raw) == ("profileChanged", {"active": None})


@pytest.mark.parametrize(
    "payload",
    [
        {"text": 'héllo ✓ "quoted" \\ \u2028 </script>', "n": [1, 2.5, None, True]},
        {"big": 1 << 70},  # past 64 bits: the standard library writes it
        {1: "a non-string key"},
    ],
)
def test_frame_bytes_are_what_the_standard_library_would_write(payload: object) -> None:
    """The fast encoder must not change a byte the UI (or a llama-swap client) receives."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    envelope = json.dumps({"type": "x", "data": data}, separators=(",", ":"))
    assert frame("x", payload) == f"event:message\ndata:{envelope}\n\n".encode()


async def test_each_connection_gets_its_initial_burst_then_live_messages() -> None:
    hub = EventHub()
    sub = hub.subscribe(initial=[frame("uiConfig", {"a": 1})])
    hub.publish("activity", {"id": 7})
    hub.publish("activity", {"id": 8})
    hub.close()
    got = [message for batch in await _drain(sub) for message in _split(batch)]
    assert got == [("uiConfig", {"a": 1}), ("activity", {"id": 7}), ("activity", {"id": 8})]
    assert hub.connections == 0


async def test_every_connection_gets_the_same_bytes_encoded_once() -> None:
    hub = EventHub()
    subs = [hub.subscribe() for _ in range(5)]
    for i in range(3):
        hub.publish("activity", {"id": i})
    hub.flush()
    hub.close()
    batches = [await _drain(sub) for sub in subs]
    assert all(len(b) == 1 for b in batches)
    assert all(b[0] is batches[0][0] for b in batches), "one bytes object shared by all"
    assert _split(batches[0][0]) == [("activity", {"id": i}) for i in range(3)]


async def test_a_connection_gets_nothing_published_before_it_subscribed() -> None:
    """Its initial burst already holds that state (a log line would otherwise show twice)."""
    hub = EventHub()
    early = hub.subscribe()
    hub.publish("logData", {"data": "before"})
    late = hub.subscribe(initial=[frame("logData", {"data": "history, with before"})])
    hub.publish("logData", {"data": "after"})
    hub.close()
    early_got = [m for batch in await _drain(early) for m in _split(batch)]
    late_got = [m for batch in await _drain(late) for m in _split(batch)]
    assert early_got == [("logData", {"data": "before"}), ("logData", {"data": "after"})]
    assert late_got == [
        ("logData", {"data": "history, with before"}),
        ("logData", {"data": "after"}),
    ]


async def test_a_connection_past_its_byte_limit_is_dropped_loudly_and_the_others_keep_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = EventHub()
    aborted: list[str] = []
    slow = hub.subscribe(limit_bytes=2000, peer="10.0.0.9", on_overflow=lambda: aborted.append("x"))
    fast = hub.subscribe()
    fast_batches = fast.frames()
    fast_got: list[tuple[str, object]] = []
    with caplog.at_level(logging.WARNING, logger="llamaswap_es.projections.event_hub"):
        for i in range(40):  # each flush is ~100 bytes; `slow` never reads
            hub.publish("activity", {"id": i, "pad": "x" * 40})
            hub.flush()
            fast_got += _split(await anext(fast_batches))
            assert slow.buffered_bytes <= 2000
    assert slow.overflowed and aborted == ["x"]
    assert hub.connections == 1
    assert [m[1]["id"] for m in fast_got] == list(range(40))  # type: ignore[index]
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "10.0.0.9" in warning and "limit 2000" in warning and "disconnected" in warning
    assert await _drain(slow) == []  # what it held is freed, and its stream ends
    hub.close()
    assert [m async for batch in fast_batches for m in _split(batch)] == []


async def test_the_initial_burst_is_not_counted_against_the_limit() -> None:
    """However much log history the burst carries, a tab can start."""
    hub = EventHub()
    sub = hub.subscribe(initial=[frame("logData", {"data": "x" * 5000})], limit_bytes=1000)
    hub.publish("activity", {"id": 1})
    hub.close()
    got = [m for batch in await _drain(sub) for m in _split(batch)]
    assert got == [("logData", {"data": "x" * 5000}), ("activity", {"id": 1})]
    assert not sub.overflowed


async def test_subscribing_after_close_ends_at_once() -> None:
    hub = EventHub()
    hub.close()
    sub = hub.subscribe(initial=[frame("x", 1)])
    assert [_decode(f) for f in await _drain(sub)] == [("x", 1)]


async def test_keyed_messages_in_one_batch_leave_only_the_latest_state() -> None:
    """A request that starts and ends within one batch: its three upserts and its removal reach
    the tab as one removal (what the UI ends with is the same), unkeyed messages all arrive."""
    hub = EventHub()
    sub = hub.subscribe()
    hub.publish("inflight", {"operation": "upsert", "request": {"id": "1", "bytes": 0}}, key="i:1")
    hub.publish("logEvent", {"seq": 11})
    hub.publish("inflight", {"operation": "upsert", "request": {"id": "2", "bytes": 0}}, key="i:2")
    hub.publish("inflight", {"operation": "upsert", "request": {"id": "1", "bytes": 9}}, key="i:1")
    hub.publish("inflight", {"operation": "remove", "id": "1"}, key="i:1")
    hub.publish("logEvent", {"seq": 12})
    hub.flush()
    hub.publish("inflight", {"operation": "remove", "id": "2"}, key="i:2")  # the next batch
    hub.close()
    messages = [m for batch in await _drain(sub) for m in _split(batch)]
    assert messages == [
        ("inflight", {"operation": "remove", "id": "1"}),
        ("logEvent", {"seq": 11}),
        ("inflight", {"operation": "upsert", "request": {"id": "2", "bytes": 0}}),
        ("logEvent", {"seq": 12}),
        ("inflight", {"operation": "remove", "id": "2"}),
    ]


async def test_a_tab_that_subscribes_mid_batch_still_gets_the_latest_keyed_state() -> None:
    hub = EventHub()
    early = hub.subscribe()
    hub.publish("inflight", {"operation": "upsert", "request": {"id": "1", "bytes": 0}}, key="i:1")
    late = hub.subscribe()  # its initial burst already holds the first upsert
    hub.publish("inflight", {"operation": "upsert", "request": {"id": "1", "bytes": 5}}, key="i:1")
    hub.close()
    early_got = [m for batch in await _drain(early) for m in _split(batch)]
    late_got = [m for batch in await _drain(late) for m in _split(batch)]
    latest = ("inflight", {"operation": "upsert", "request": {"id": "1", "bytes": 5}})
    assert early_got[-1] == latest
    assert late_got == [latest]
