"""The /api/events fan-out: llama-swap's frame shape, bounded queues, and a clean end."""

from __future__ import annotations

import json

from llamaswap_es.projections.event_hub import EventHub, frame


def _decode(raw: bytes) -> tuple[str, object]:
    text = raw.decode()
    assert text.startswith("event:message\ndata:") and text.endswith("\n\n")
    envelope = json.loads(text[len("event:message\ndata:") : -2])
    return envelope["type"], json.loads(envelope["data"])


def test_frame_double_encodes_the_payload_as_llama_swap_does() -> None:
    raw = frame("profileChanged", {"active": None})
    assert b"data:{" in raw and b": " not in raw.split(b"\n")[0]
    envelope = json.loads(raw.decode().split("data:", 1)[1])
    assert isinstance(envelope["data"], str)
    assert _decode(raw) == ("profileChanged", {"active": None})


async def test_each_connection_gets_its_initial_burst_then_live_messages() -> None:
    hub = EventHub()
    sub = hub.subscribe(initial=[frame("uiConfig", {"a": 1})])
    hub.publish("activity", {"id": 7})
    hub.close()
    got = [_decode(f) async for f in sub.frames()]
    assert got == [("uiConfig", {"a": 1}), ("activity", {"id": 7})]
    assert hub.connections == 0


async def test_a_slow_connection_loses_messages_but_never_blocks_and_still_ends() -> None:
    hub = EventHub(capacity_per_connection=3)
    slow = hub.subscribe()
    for i in range(10):
        hub.publish("activity", {"id": i})
    assert slow.dropped == 7
    hub.close()  # the end must get through a full queue: the oldest message makes room for it
    got = [_decode(f)[1] async for f in slow.frames()]
    assert got == [{"id": 1}, {"id": 2}]
    assert slow.dropped == 8
    assert hub.connections == 0


async def test_subscribing_after_close_ends_at_once() -> None:
    hub = EventHub()
    hub.close()
    sub = hub.subscribe(initial=[frame("x", 1)])
    assert [_decode(f) async for f in sub.frames()] == [("x", 1)]
