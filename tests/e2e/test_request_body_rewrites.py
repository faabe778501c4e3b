"""What the upstream receives: the client's own bytes when nothing rewrites the body, else one
body with every rewrite (alias to `useModelName`, `stripParams`, `setParams`) applied, as the
capture of the request shows (captures hold the body the upstream received)."""

from __future__ import annotations

import base64
import json

import aiohttp

from tests.fixtures.server import config_text, fake_model, wait_json

TUNED = """
useModelName: upstream-name
aliases: [nick]
filters:
  stripParams: temperature
  setParams: {top_k: 7, sampler.seed: 3}
"""


async def _received_body(http: aiohttp.ClientSession, url: str, model: str, raw: bytes) -> bytes:
    """POST `raw` as a chat, then the request body its upstream received (from the capture)."""
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{url}/v1/chat/completions", data=raw, headers=headers) as response:
        assert response.status == 200, await response.text()
    activity = await wait_json(
        http,
        f"{url}/api/metrics/activity",
        lambda d: any(r["model"] == model and r["has_capture"] for r in d["data"]),
    )
    row = next(r for r in activity["data"] if r["model"] == model)
    async with http.get(f"{url}/api/captures/{row['id']}") as response:
        return base64.b64decode((await response.json())["req_body"])


async def test_the_upstream_gets_the_clients_bytes_or_one_fully_rewritten_body(
    server_factory,
) -> None:
    server = server_factory(config_text([fake_model("plain"), fake_model("tuned", extra=TUNED)]))
    async with aiohttp.ClientSession() as http:
        untouched = b'{"model": "plain",  "messages": [{"role": "user", "content": "caf\\u00e9"}]}'
        assert await _received_body(http, server.url, "plain", untouched) == untouched

        sent = {
            "model": "nick",
            "temperature": 0.3,
            "sampler": {"kept": True},
            "messages": [{"role": "user", "content": "café 😀"}],
        }
        received = await _received_body(
            http, server.url, "tuned", json.dumps(sent, ensure_ascii=False).encode()
        )
    assert json.loads(received) == {
        "model": "upstream-name",
        "sampler": {"kept": True, "seed": 3},
        "messages": [{"role": "user", "content": "café 😀"}],
        "top_k": 7,
    }
    assert "café 😀".encode() in received  # written back as UTF-8, as llama-swap does
