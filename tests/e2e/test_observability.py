"""After real requests through the server: the activity history, its capture, per-model metrics,
the decision's explanation and the request's story all say what happened."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.server import config_text, fake_model, wait_json


async def _raw_post_then_close(port: int, path: str, body: dict[str, object]) -> bytes:
    """Like curl: send, read exactly the response, close the socket at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                 .split(b":")[1])  # fmt: skip
    payload = await reader.readexactly(length)
    writer.close()
    return payload


async def test_a_served_request_is_in_activity_captures_metrics_and_the_log(server_factory) -> None:
    server = server_factory(config_text([fake_model("a", "--tokens", "7")]))
    reply = await _raw_post_then_close(
        server.port, "/v1/chat/completions", {"model": "a", "messages": [{"role": "user"}]}
    )
    assert json.loads(reply)["usage"]["completion_tokens"] == 7
    async with aiohttp.ClientSession() as http:
        activity = await wait_json(
            http,
            f"{server.url}/api/metrics/activity",
            # the capture is stored just after the row: a timeout here means none was kept
            lambda d: d["total"] == 1 and d["data"][0]["has_capture"],
        )
        row = activity["data"][0]
        assert row["model"] == "a" and row["resp_status_code"] == 200
        assert row["tokens"]["output_tokens"] == 7
        assert not row.get("error_msg"), "a client that read everything did not disconnect early"
        assert row["has_capture"] is True
        async with http.get(f"{server.url}/api/captures/{row['id']}") as response:
            assert response.status == 200
            capture = await response.json()
        assert capture["id"] == row["id"]

        async with http.get(f"{server.url}/metrics") as response:
            families = {f.name: f for f in text_string_to_metric_families(await response.text())}
        served = [
            s.value
            for s in families["llamaswap_es_requests"].samples
            if s.labels.get("model") == "a" and s.name.endswith("_total")
        ]
        assert served == [1.0]

        async with http.get(
            f"{server.url}/api/log/events", params={"type": "SwapPlanned"}
        ) as response:
            swap = (await response.json())["events"][0]
        async with http.get(f"{server.url}/api/log/explain", params={"seq": swap["seq"]}) as r:
            explained = await r.json()
        assert explained["decision"]["type"] == "SwapPlanned"
        assert explained["cause"]["type"] == "RequestReceived"
        assert "a" in explained["explanation"]

        async with http.get(f"{server.url}/api/requests/{row['request_id']}/story") as r:
            story = await r.json()
        types = [e["type"] for e in story["events"]]
        for expected in ("RequestReceived", "StartProcess", "ProcessReady", "Dispatch"):
            assert expected in types
        assert types[-1] == "RequestFinished"
