"""Event logs written with the real store, event by event with chosen timestamps."""

from __future__ import annotations

from pathlib import Path

from llamaswap_es.events.types import (
    Decision,
    Dispatch,
    Envelope,
    Event,
    ProcessReady,
    ProcessStopped,
    Reject,
    RequestFinished,
    RequestReceived,
    StartProcess,
    StopProcess,
    SwapPlanned,
)
from tests.fixtures.event_store import open_booted_store

# The story of the hand-written log, with the waits it implies (ms):
#   r1 (a) arrives at 1000 and starts a's swap; r2 (a) joins at 1500; a is ready at 4000.
#   r3 (a) arrives at 5000 with a ready.  r4 (b) arrives at 6000, b's swap begins at 7000 (a is
#   stopped first), b is ready at 9000.  r5 (b) is rejected (429) at 9500.  r6 is a GET.
EXPECTED_WAITS = {  # request → (queue wait, swap wait)
    "r1": (3000, 3000),
    "r2": (2500, 2500),
    "r3": (0, 0),
    "r4": (3000, 2000),
}


def _timings(prompt_n: int, predicted_n: int) -> dict[str, float | int]:
    return {
        "cache_tokens": 3,
        "input_tokens": prompt_n,
        "output_tokens": predicted_n,
        "draft_tokens": -1,
        "draft_acc_tokens": -1,
        "prompt_per_second": prompt_n * 10.0,
        "tokens_per_second": predicted_n * 2.5,
        "duration_ms": 400,
    }


def _finished(rid: str, model: str, prompt_n: int, predicted_n: int) -> RequestFinished:
    return RequestFinished(
        request_id=rid,
        model=model,
        status=200,
        duration_ms=350,
        bytes_out=1234,
        metrics=_timings(prompt_n, predicted_n),
        content_type="application/json",
        ttfb_ms=40,
        path="/v1/chat/completions",
    )


def _received(rid: str, model: str, method: str = "POST") -> RequestReceived:
    return RequestReceived(
        request_id=rid,
        model=model,
        requested_model=f"{model}-alias",
        path="/v1/chat/completions",
        method=method,
        metadata={"session_id": "s-1"},
    )


STORY: list[tuple[int, Event | Decision]] = [
    (1000, _received("r1", "a")),
    (1000, SwapPlanned(model="a", evict=(), request_id="r1")),
    (1000, StartProcess(model="a", instance=1)),
    (1500, _received("r2", "a")),
    (4000, ProcessReady(model="a", instance=1)),
    (4000, Dispatch(request_id="r1", model="a", instance=1)),
    (4000, Dispatch(request_id="r2", model="a", instance=1)),
    (4500, _finished("r1", "a", 11, 20)),
    (4600, _finished("r2", "a", 12, 21)),
    (5000, _received("r3", "a")),
    (5000, Dispatch(request_id="r3", model="a", instance=1)),
    (5400, _finished("r3", "a", 13, 22)),
    (6000, _received("r4", "b")),
    (7000, SwapPlanned(model="b", evict=("a",), request_id="r4")),
    (7000, StopProcess(model="a", instance=1, reason="evict", grace_ms=1000)),
    (7500, ProcessStopped(model="a", instance=1)),
    (7500, StartProcess(model="b", instance=1)),
    (9000, ProcessReady(model="b", instance=1)),
    (9000, Dispatch(request_id="r4", model="b", instance=1)),
    (9300, _finished("r4", "b", 14, 23)),
    (9500, _received("r5", "b")),
    (9500, Reject(request_id="r5", status=429, code="rate_limited", message="Too many requests")),
    (9600, _received("r6", "b", method="GET")),
    (9600, Dispatch(request_id="r6", model="b", instance=1)),
    (9700, _finished("r6", "b", 0, 0)),
    (9800, _received("r7", "nope")),
    (9800, Reject(request_id="r7", status=404, code="model_not_found", message="no")),
]


async def write_story(path: Path, story: list[tuple[int, Event | Decision]] = STORY) -> list[int]:
    """Append the story one event per batch; returns the seqs.

    A decision's `cause` is the latest input before it, as the run loop records it.
    """
    seqs: list[int] = []
    last_input: int | None = None
    async with await open_booted_store(path, ts_ms=500) as store:
        for ts, body in story:
            cause = last_input if isinstance(body, Decision) else None
            seqs += await store.append_batch([Envelope(body=body, ts_ms=ts, cause=cause)])
            if not isinstance(body, Decision):
                last_input = seqs[-1]
    return seqs
