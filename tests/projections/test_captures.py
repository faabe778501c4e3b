"""Captures: what is kept per llama-swap's rules, redaction, the byte budget, the API, the tap."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from llamaswap_es.events.open_log import open_log
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.captures import CaptureStore, decode_capture
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.history.lifecycle import History
from llamaswap_es.projections.inflight import redact_headers
from llamaswap_es.web import activity_routes
from llamaswap_es.web.forwarder import forward, upstream_session
from tests.projections.http_app import serve_routes
from tests.projections.logs import write_story

SECRET_HEADERS = {
    "Authorization": "Bearer sk-live-123",
    "X-Api-Key": "sk-live-123",
    "Cookie": "session=abc",
    "Proxy-Authorization": "Basic Zm9v",
    "X-Custom-Key": "prefix sk-configured-key suffix",
    "Content-Type": "application/json",
}


async def _store(db_path: Path, budget_mib: float = 1) -> tuple[ProjectionDatabase, CaptureStore]:
    """A log with five activity rows (r1..r5 → ids 1..5) and a capture store on it."""
    await write_story(db_path)
    db = ProjectionDatabase(db_path)
    projection = ActivityProjection(db.path)
    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    await db.run(lambda conn: projection.apply(conn, envelopes))
    return db, CaptureStore(db, budget_mib=budget_mib, secrets=["sk-configured-key"])


def _stored_captures(db_path: Path) -> dict[str, dict]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT request_id, data FROM captures").fetchall()
    return {rid: decode_capture(bytes(data)) for rid, data in rows}


async def test_a_capture_round_trips_through_the_api_without_credentials(db_path: Path) -> None:
    db, store = await _store(db_path)
    try:
        rec = store.recorder("r1", "/v1/chat/completions")
        assert rec is not None
        rec.request(SECRET_HEADERS, b'{"model":"a","messages":[]}')
        answer = b'{"choices":[{"message":{"content":"hi"}}]}'
        rec.response_headers({"Content-Type": "application/json", "Content-Encoding": "gzip"})
        packed = gzip.compress(answer)
        rec.tap(packed[:10])
        rec.tap(packed[10:])
        assert await rec.finish(200) is True
        async with serve_routes(
            SimpleNamespace(db=db, captures=store, history=History("node-a")),
            activity_routes.register_routes,
        ) as (
            base,
            http,
        ):
            async with http.get(f"{base}/api/captures/1") as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.get(f"{base}/api/metrics/activity?sort=id&order=asc") as resp:
                listed = (await resp.json())["data"]
            async with http.get(f"{base}/api/captures/x") as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["message"] == "invalid capture ID"
            async with http.get(f"{base}/api/captures/2") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["message"] == "capture not found"
        assert body["id"] == 1 and body["req_path"] == "/v1/chat/completions"
        assert base64.b64decode(body["req_body"]) == b'{"model":"a","messages":[]}'
        assert base64.b64decode(body["resp_body"]) == answer  # stored decompressed
        assert body["resp_headers"] == {"Content-Type": "application/json"}
        headers = body["req_headers"]
        for name in ("Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization", "X-Custom-Key"):
            assert headers[name] == "[REDACTED]"
        assert [e["has_capture"] for e in listed] == [True, False, False, False, False]
        raw = repr(_stored_captures(db_path))
        assert "sk-live-123" not in raw and "abc" not in raw and "sk-configured-key" not in raw
    finally:
        db.close()


async def test_capture_levels_and_failed_requests_follow_llama_swap(db_path: Path) -> None:
    db, store = await _store(db_path)
    try:
        speech = store.recorder("r1", "/v1/audio/speech")
        speech.request({"Content-Type": "application/json"}, b'{"input":"hello"}')
        speech.response_headers({"Content-Type": "audio/mpeg"})
        speech.tap(b"\xff\xfbMP3 bytes")
        assert await speech.finish(200)
        failed = store.recorder("r2", "/v1/chat/completions")
        failed.request({}, b"{}")
        failed.response_headers({"Content-Type": "application/json"})
        failed.tap(b'{"error":"boom"}')
        assert await failed.finish(500)
        empty = store.recorder("r3", "/v1/chat/completions")
        empty.request({}, b"{}")
        assert await empty.finish(200) is False  # an empty body stores no capture
        broken = store.recorder("r4", "/v1/chat/completions")
        broken.response_headers({"Content-Encoding": "gzip"})
        broken.tap(b"not gzip at all")
        assert await broken.finish(200) is False
        stored = _stored_captures(db_path)
        assert sorted(stored) == ["r1", "r2"]
        assert (
            stored["r1"]["req_body"] == b'{"input":"hello"}' and stored["r1"]["resp_body"] is None
        )
        assert stored["r2"]["req_body"] == b"{}" and stored["r2"]["resp_body"] is None
        assert stored["r2"]["resp_headers"] == {"Content-Type": "application/json"}
    finally:
        db.close()


async def test_the_budget_evicts_the_oldest_and_skips_what_cannot_fit(db_path: Path) -> None:
    budget_mib = 0.05  # 52 428 bytes of compressed captures
    db, store = await _store(db_path, budget_mib=budget_mib)
    try:
        import os

        for rid in ("r1", "r2", "r3"):
            rec = store.recorder(rid, "/v1/embeddings")
            rec.request({}, os.urandom(20_000))  # incompressible: ~20 kB stored each
            rec.tap(b"{}")
            assert await rec.finish(200)
        assert sorted(_stored_captures(db_path)) == ["r2", "r3"]  # r1 evicted first
        huge = store.recorder("r4", "/v1/embeddings")
        huge.request({}, b"x")
        huge.tap(os.urandom(60_000))  # larger than the whole budget: never buffered past it
        assert huge.too_large and await huge.finish(200) is False
        with sqlite3.connect(db_path) as conn:
            total = conn.execute("SELECT sum(size_bytes) FROM captures").fetchone()[0]
        assert total <= store.budget_bytes
        assert CaptureStore(db, budget_mib=0).recorder("r5", "/v1/chat/completions") is None
    finally:
        db.close()


async def test_the_forwarder_tap_sees_every_response_chunk(db_path: Path) -> None:
    chunks = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]

    async def upstream_handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", upstream_handler)
    up_runner = web.AppRunner(upstream)
    await up_runner.setup()
    up_site = web.TCPSite(up_runner, "127.0.0.1", 0)
    await up_site.start()
    up_url = f"http://127.0.0.1:{up_runner.addresses[0][1]}"
    seen: list[bytes] = []
    session = upstream_session()

    async def proxy_handler(request: web.Request) -> web.StreamResponse:
        forwarded = await forward(request, session, up_url, tap=seen.append)
        return forwarded.response

    deps = SimpleNamespace()

    def register(router: web.UrlDispatcher, _deps: object) -> None:
        router.add_post("/v1/chat/completions", proxy_handler)

    try:
        async with (
            serve_routes(deps, register) as (base, http),
            http.post(f"{base}/v1/chat/completions", data=b"{}") as resp,
        ):
            received = await resp.read()
    finally:
        await session.close()
        await up_runner.cleanup()
    assert b"".join(seen) == b"".join(chunks) == received


async def test_a_failing_tap_does_not_break_forwarding() -> None:
    async def upstream_handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    upstream = web.Application()
    upstream.router.add_post("/x", upstream_handler)
    up_runner = web.AppRunner(upstream)
    await up_runner.setup()
    await web.TCPSite(up_runner, "127.0.0.1", 0).start()
    up_url = f"http://127.0.0.1:{up_runner.addresses[0][1]}"
    session = upstream_session()

    def bad_tap(chunk: bytes) -> None:
        raise RuntimeError("tap bug")

    async def proxy_handler(request: web.Request) -> web.StreamResponse:
        return (await forward(request, session, up_url, tap=bad_tap)).response

    def register(router: web.UrlDispatcher, _deps: object) -> None:
        router.add_post("/x", proxy_handler)

    try:
        async with (
            serve_routes(None, register) as (base, http),
            http.post(f"{base}/x", data=b"{}") as resp,
        ):
            assert resp.status == 200 and await resp.json() == {"ok": True}
    finally:
        await session.close()
        await up_runner.cleanup()


async def test_captures_finished_together_are_each_stored_with_their_own_outcome(
    db_path: Path,
) -> None:
    """Captures are written in batches: each recorder still learns its own outcome (a broken
    gzip body is skipped without taking its batch down) and every good one is stored."""
    db, store = await _store(db_path)
    try:
        recorders = []
        for i in range(1, 6):
            rec = store.recorder(f"r{i}", "/v1/chat/completions")
            assert rec is not None
            rec.request({"Content-Type": "application/json"}, b'{"n":%d}' % i)
            broken = i == 3
            rec.response_headers({"Content-Encoding": "gzip"} if broken else {})
            rec.tap(b"not gzip" if broken else b'{"answer":%d}' % i)
            recorders.append(rec)
        outcomes = await asyncio.gather(*(rec.finish(200) for rec in recorders))
        assert outcomes == [True, True, False, True, True]
        stored = _stored_captures(db_path)
        assert sorted(stored) == ["r1", "r2", "r4", "r5"]
        assert stored["r4"]["resp_body"] == b'{"answer":4}'
    finally:
        db.close()


async def test_captures_handed_over_before_a_shutdown_are_stored_before_the_file_closes(
    db_path: Path,
) -> None:
    """A request's end hands its capture to the store and returns; the writer pauses between
    batches. Closing the store (what `Projections.stop` does before closing the database) writes
    what was handed over, also what arrived during that pause: nothing is lost at shutdown."""
    db, store = await _store(db_path)
    try:
        first = store.recorder("r1", "/v1/chat/completions")
        assert first is not None
        first.tap(b'{"answer":1}')
        assert await first.finish(200)  # the writer is now pausing before its next batch
        for i in (2, 3):
            rec = store.recorder(f"r{i}", "/v1/chat/completions")
            assert rec is not None
            rec.tap(b'{"answer":%d}' % i)
            rec.finish_later(200)
        await store.close()
    finally:
        db.close()
    assert sorted(_stored_captures(db_path)) == ["r1", "r2", "r3"]


async def test_a_capture_handed_over_that_cannot_be_written_is_logged(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody awaits a capture a request's end handed over: when its batch cannot be written
    the failure is logged with the store's reason, not dropped silently."""
    db, store = await _store(db_path)
    db.close()  # every write from now on fails
    rec = store.recorder("r1", "/v1/chat/completions")
    assert rec is not None
    rec.tap(b'{"answer":1}')
    with caplog.at_level(logging.WARNING, logger="llamaswap_es.projections.captures"):
        rec.finish_later(200)
        await store.close()
    assert "could not store the captures of 1 request(s)" in caplog.text


def test_a_repeated_header_is_still_checked_for_configured_keys() -> None:
    """Header values seen before skip the pattern redaction, never the configured keys: a value
    shown once without keys (the in-flight view) is redacted when a capture with keys sees it."""
    headers = {"X-Custom-Key": "prefix sk-configured-key suffix", "Referer": "http://a/?api_key=x1"}
    assert redact_headers(headers)["X-Custom-Key"] == headers["X-Custom-Key"]
    again = redact_headers(headers, ["sk-configured-key"])
    assert again["X-Custom-Key"] == "[REDACTED]"
    assert redact_headers(headers)["Referer"] == "http://a/?api_key=[REDACTED]"
    assert redact_headers(headers)["Referer"] == "http://a/?api_key=[REDACTED]"  # and again
