"""What a client sees over HTTP: collation, errors with llama-swap's codes, the loading stream,
an upstream that dies mid-stream. Every check reads real responses and the real event log."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import FIFO, config_text, fake_model, wait_json

CHAT = "/v1/chat/completions"


def _chat(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def _count_events(http: aiohttp.ClientSession, url: str, event_type: str) -> int:
    async with http.get(f"{url}/api/log/events", params={"type": event_type, "limit": "1000"}) as r:
        return len((await r.json())["events"])


async def _wait_for_events(
    http: aiohttp.ClientSession, url: str, event_type: str, count: int, timeout_s: float = 20
) -> None:
    async with asyncio.timeout(timeout_s):
        while await _count_events(http, url, event_type) < count:
            await asyncio.sleep(0.02)


async def _log_once(db_path, ready, timeout_s: float = 20) -> list:
    """The whole log, read again until `ready(events)` holds (rows commit after the answer)."""
    async with asyncio.timeout(timeout_s):
        while True:
            with open_log(db_path) as reader:
                events = list(reader.iter_envelopes())
            if ready(events):
                return events
            await asyncio.sleep(0.02)


def _finished(events: list) -> list:
    return [e.body for e in events if e.type == "RequestFinished"]


async def test_abcabc_is_served_aabbcc_with_three_loads(server_factory) -> None:
    # a's load must outlast the arrival of the first four requests (each waited for in the log)
    models = [fake_model(m, "--load-delay-ms", "1500", "--tokens", "3") for m in "abc"]
    server = server_factory(config_text(models, header=FIFO))  # serial would load 6 times
    async with aiohttp.ClientSession() as http:
        tasks = []
        for i, model in enumerate("abcabc"):
            tasks.append(asyncio.create_task(http.post(server.url + CHAT, json=_chat(model))))
            await _wait_for_events(http, server.url, "RequestReceived", i + 1)
        responses = await asyncio.gather(*tasks)
        assert [r.status for r in responses] == [200] * 6
        for r in responses:
            r.release()
    with open_log(server.db_path) as reader:
        events = list(reader.iter_envelopes())
    dispatched = [e.body.model for e in events if e.type == "Dispatch"]
    loads = [e.body.model for e in events if e.type == "StartProcess"]
    assert dispatched == list("aabbcc")
    assert loads == list("abc")


async def test_errors_carry_llama_swaps_status_and_message(server_factory) -> None:
    header = "llamaswap-es:\n  maxRequestBodyMB: 1"
    server = server_factory(config_text([fake_model("a")], header=header))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("nope")) as r:
            assert r.status == 404
            assert (await r.json())["error"]["message"] == "no router for requested model"
        async with http.post(server.url + CHAT, json={"messages": []}) as r:
            assert r.status == 404
            assert "no model id could be identified" in (await r.text())
        headers = {"Content-Type": "application/json"}
        async with http.post(server.url + CHAT, data=b'{"model": "a",', headers=headers) as r:
            assert r.status == 400
        big = json.dumps(_chat("a", padding="x" * (2 * 1024 * 1024))).encode()
        async with http.post(server.url + CHAT, data=big, headers=headers) as r:
            assert r.status == 413
            assert "1048576" in (await r.text())
        async with http.post(
            server.url + CHAT, json=_chat("nope"), headers={"Accept": "text/plain"}
        ) as r:
            assert await r.text() == "llama-swap: no router for requested model"


async def test_a_request_over_the_concurrency_limit_gets_429(server_factory) -> None:
    flags = ("--tokens", "200", "--token-delay-ms", "20")
    model = fake_model("a", *flags, extra="concurrencyLimit: 1")
    server = server_factory(config_text([model]))
    async with aiohttp.ClientSession() as http:
        first = await http.post(server.url + CHAT, json=_chat("a", stream=True))
        assert first.status == 200
        await first.content.readline()  # the first streamed line: it is being served
        async with http.post(server.url + CHAT, json=_chat("a")) as second:
            assert second.status == 429
            assert second.headers["Retry-After"] == "1"
            assert (await second.json())["error"]["type"] == "rate_limit_error"
        first.close()


async def test_api_keys_guard_every_route_but_health(server_factory) -> None:
    server = server_factory(config_text([fake_model("a")], header="apiKeys: [sekret]"))
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/v1/models") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
        async with http.get(server.url + "/health") as r:
            assert r.status == 200
        auth = {"Authorization": "Bearer sekret"}
        async with http.get(server.url + "/v1/models", headers=auth) as r:
            assert r.status == 200
        async with http.get(server.url + "/api/events", headers={"x-api-key": "nope"}) as r:
            assert r.status == 401
    assert "sekret" not in server.output()


async def test_the_loading_stream_shows_progress_then_the_answer(server_factory) -> None:
    model = fake_model("a", "--load-delay-ms", "1200", "--tokens", "5")
    server = server_factory(config_text([model], header="sendLoadingState: true"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + CHAT, json=_chat("a", stream=True)) as r,
    ):
        assert r.status == 200
        body = (await r.read()).decode()
    reasoning = ""
    content = ""
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"][0]["delta"]
        reasoning += delta.get("reasoning_content") or ""
        content += delta.get("content") or ""
    assert "llama-swap loading model: a" in reasoning
    assert "Done! (" in reasoning
    assert content.startswith("alpha bravo")


async def test_an_upstream_that_dies_mid_stream_gives_a_clear_error_and_is_reloaded(
    server_factory,
) -> None:
    model = fake_model("a", "--exit-during-request", "--tokens", "20", "--token-delay-ms", "5")
    server = server_factory(config_text([model]))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    for _ in range(2):
        stream = await client.chat.completions.create(**_chat("a", stream=True))
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass
    await client.close()

    def lost_of(events: list) -> list:
        return [f for f in _finished(events) if "upstream connection lost" in (f.error or "")]

    events = await _log_once(server.db_path, lambda ev: len(lost_of(ev)) == 2)  # both recorded
    finished, lost = _finished(events), lost_of(events)
    starts = [e.body.instance for e in events if e.type == "StartProcess"]
    assert starts == [1, 2], "the next request after the crash reloads the model"
    assert any(e.type == "ProcessExited" for e in events)
    # A request sent in the instant between the crash and its detection may be dispatched to
    # the dead instance: it is taken back under the same id (DispatchUnreachable) and served by
    # the fresh one, so each request ends exactly once in the log, with its own error.
    assert finished == lost, finished
    received = [e.body.request_id for e in events if e.type == "RequestReceived"]
    assert sorted(received) == sorted(f.request_id for f in finished)
    taken_back = [e.body for e in events if e.type == "DispatchUnreachable"]
    assert all(t.request_id in received and t.instance == 1 for t in taken_back), taken_back


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_that_dies_before_answering_is_replaced_under_the_same_request_id(
    server_factory, tmp_path, stream: bool
) -> None:
    # The instance accepts the request and exits before sending any header: the executor has
    # not seen the exit yet when the connection breaks. The client must get its answer from a
    # fresh instance, not a 502, since nothing had been sent to it; and the history must show
    # one request (one id, one RequestFinished, one activity row), not a failed attempt too.
    marker = tmp_path / "crash-once"
    marker.touch()
    model = fake_model("a", "--exit-before-answer-if", str(marker), "--tokens", "3")
    server = server_factory(config_text([model]))
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        if stream:
            chunks = await client.chat.completions.create(**_chat("a", stream=True))
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            answer = await client.chat.completions.create(**_chat("a"))
            text = answer.choices[0].message.content or ""
    assert text.startswith("alpha bravo")
    assert not marker.exists(), "the first instance received the request"
    events = await _log_once(server.db_path, lambda ev: len(_finished(ev)) >= 1)
    [received] = [e.body.request_id for e in events if e.type == "RequestReceived"]
    [finished] = _finished(events)
    assert (finished.request_id, finished.status, finished.error) == (received, 200, None)
    [taken_back] = [e.body for e in events if e.type == "DispatchUnreachable"]
    assert (taken_back.request_id, taken_back.instance) == (received, 1)
    assert [e.body.instance for e in events if e.type == "StartProcess"] == [1, 2]
    dispatches = [e.body for e in events if e.type == "Dispatch"]
    assert [(d.request_id, d.instance) for d in dispatches] == [(received, 1), (received, 2)]
    assert all(d.address.startswith("http://127.0.0.1:") for d in dispatches)
    async with aiohttp.ClientSession() as http:
        activity = await wait_json(  # the capture, started at the first grant, is kept once
            http,
            f"{server.url}/api/metrics/activity",
            lambda d: d["total"] >= 1 and d["data"][0]["has_capture"],
        )
    assert [row["resp_status_code"] for row in activity["data"]] == [200]


async def test_a_models_last_start_failure_is_found_by_its_key(server_factory) -> None:
    # Many events later, the Models page still finds why a model is "failed" (key index read).
    server = server_factory(config_text([fake_model("a", "--fail-at-start"), fake_model("b")]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status >= 500
        for _ in range(3):
            async with http.post(server.url + CHAT, json=_chat("b")) as r:
                assert r.status == 200
        params = [("key", "a"), ("type", "ProcessStartFailed"), ("type", "ProcessExited")]
        async with http.get(f"{server.url}/api/log/events", params=[*params, ("limit", "1")]) as r:
            events = (await r.json())["events"]
        async with http.get(f"{server.url}/api/log/events", params=[("limit", "1")]) as r:
            newest = (await r.json())["events"]
    assert [e["type"] for e in events] == ["ProcessStartFailed"]
    assert events[0]["key"] == "a" and "exit" in events[0]["payload"]["error"].lower()
    assert newest[0]["seq"] > events[0]["seq"] + 5


async def test_a_dropped_connection_to_a_healthy_upstream_is_served_again_by_the_same_instance(
    server_factory, tmp_path
) -> None:
    marker = tmp_path / "drop-once"
    marker.touch()
    model = fake_model("a", "--drop-connection-if", str(marker), "--tokens", "3")
    server = server_factory(config_text([model]))
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        answer = await client.chat.completions.create(**_chat("a"))
    assert (answer.choices[0].message.content or "").startswith("alpha bravo")
    assert not marker.exists(), "the upstream dropped the first attempt"
    events = await _log_once(server.db_path, lambda ev: len(_finished(ev)) >= 1)
    [finished] = _finished(events)
    assert finished.status == 200
    # One broken connection makes the instance suspect, not dead: no exit was reported within
    # the suspect wait, so the same request went to the same instance again.
    [taken_back] = [e.body for e in events if e.type == "DispatchUnreachable"]
    assert taken_back.request_id == finished.request_id
    dispatches = [e.body for e in events if e.type == "Dispatch"]
    assert [(d.request_id, d.instance) for d in dispatches] == [(finished.request_id, 1)] * 2
    fired = [e.body.timer_id for e in events if e.type == "TimerFired"]
    assert "suspect:a:1" in fired
    assert [e.body.instance for e in events if e.type == "StartProcess"] == [1], "no restart"
    assert not any(e.type in ("ProcessExited", "StopProcess") for e in events)


async def test_a_request_whose_second_grant_fails_too_gets_a_502_recorded_once(
    server_factory, tmp_path
) -> None:
    marker = tmp_path / "drop-twice"
    marker.write_text("2")
    model = fake_model("a", "--drop-connection-if", str(marker), "--tokens", "3")
    server = server_factory(config_text([model]))
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 502
            assert "unreachable" in (await r.json())["error"]["message"]
        assert not marker.exists(), "both attempts reached the upstream"
        async with http.post(server.url + CHAT, json=_chat("a")) as r:
            assert r.status == 200, "the instance was never condemned: it serves the next one"
        activity = await wait_json(
            http, f"{server.url}/api/metrics/activity", lambda d: d["total"] >= 2
        )
        async with http.get(f"{server.url}/api/inflight") as r:
            assert (await r.json())["requests"] == [], "each in-flight entry ended once"
    assert sorted(row["resp_status_code"] for row in activity["data"]) == [200, 502]
    events = await _log_once(server.db_path, lambda ev: len(_finished(ev)) >= 2)
    first, second = _finished(events)
    assert (first.status, second.status) == (502, 200)
    taken_back = [e.body.request_id for e in events if e.type == "DispatchUnreachable"]
    assert taken_back == [first.request_id], "a request is taken back once"
    assert [e.body.instance for e in events if e.type == "StartProcess"] == [1]


async def test_a_request_priority_header_goes_ahead_in_the_queue(server_factory) -> None:
    busy = fake_model("a", "--tokens", "20", "--token-delay-ms", "40")
    models = [busy, fake_model("b"), fake_model("c")]
    server = server_factory(config_text(models, header=FIFO))  # serial keeps arrival order
    async with aiohttp.ClientSession() as http:

        def post(model: str, **headers: str):
            return asyncio.create_task(
                http.post(server.url + CHAT, json=_chat(model), headers=headers)
            )

        first = post("a")
        await _wait_for_events(http, server.url, "Dispatch", 1)  # a is busy from here on
        plain = post("b")
        await _wait_for_events(http, server.url, "RequestReceived", 2)
        urgent = post("c", **{"X-Request-Priority": "5"})
        await _wait_for_events(http, server.url, "RequestReceived", 3)
        async with http.post(
            server.url + CHAT, json=_chat("b"), headers={"X-Request-Priority": "soon"}
        ) as bad:
            assert bad.status == 400
            assert "X-Request-Priority" in (await bad.json())["error"]["message"]
        responses = await asyncio.gather(first, plain, urgent)
        assert [r.status for r in responses] == [200, 200, 200]
        for r in responses:
            r.release()
    events = await _log_once(
        server.db_path, lambda ev: len([e for e in ev if e.type == "Dispatch"]) == 3
    )
    assert [e.body.model for e in events if e.type == "Dispatch"] == ["a", "c", "b"]
    received = {e.body.model: e.body for e in events if e.type == "RequestReceived"}
    assert received["c"].priority == 5 and received["b"].priority is None
