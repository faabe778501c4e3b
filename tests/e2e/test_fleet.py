"""A fleet end to end: two nodes, each with its own event log, behind a front node (peers), all
writing their history into one real PostgreSQL.

The shared database holds every answered request of both nodes once (and the front's record of
each, marked with the peer it went to). PostgreSQL stopped in the middle: every node keeps serving,
`/health` stays 200, `/api/history` and `/metrics` say the history is behind; PostgreSQL started
again: the rows catch up, with no duplicate and no gap against each node's own activity table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.postgres import PostgresServer
from tests.fixtures.server import RunningServer, config_text, fake_model, wait_json

pytestmark = pytest.mark.slow

DEADLINE_S = 30.0


def _ours(node: str, url: str) -> str:
    return f"llamaswap-es:\n  nodeName: {node}\n  historyDatabase: {url}\n"


async def _until(check: Callable[[], bool], what: str) -> None:
    """Poll `check` (a cheap query) until it holds, failing with `what` at the deadline."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {DEADLINE_S}s waiting for: {what}")
        await asyncio.sleep(0.1)


async def _chat(http: aiohttp.ClientSession, front: RunningServer, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{front.url}/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        await response.read()


async def _local_request_ids(http: aiohttp.ClientSession, node: RunningServer) -> set[str]:
    async with http.get(f"{node.url}/api/metrics/activity?limit=999") as response:
        return {entry["request_id"] for entry in (await response.json())["data"]}


async def _history_metrics(http: aiohttp.ClientSession, node: RunningServer) -> dict[str, float]:
    async with http.get(f"{node.url}/metrics") as response:
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("llamaswap_es_history_") and "table" not in sample.labels
    }


async def test_two_nodes_behind_a_front_share_one_history_through_an_outage(
    server_factory, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    database = own_postgres.create_database()
    url = own_postgres.url(database)
    node_a = server_factory(
        config_text([fake_model("alpha", "--tokens 3")], header=_ours("node-a", url)),
        name="a.yaml", db_path=tmp_path / "a.db",
    )  # fmt: skip
    node_b = server_factory(
        config_text([fake_model("beta", "--tokens 4")], header=_ours("node-b", url)),
        name="b.yaml", db_path=tmp_path / "b.db",
    )  # fmt: skip
    peers = (
        f"peers:\n  a:\n    proxy: {node_a.url}\n    models: [alpha]\n"
        f"  b:\n    proxy: {node_b.url}\n    models: [beta]\n"
    )
    front = server_factory(
        config_text([], header=peers + _ours("front", url)),
        name="front.yaml", db_path=tmp_path / "front.db",
    )  # fmt: skip

    def answered() -> int:
        return own_postgres.query(
            database, "SELECT count(*) FROM history_requests WHERE peer = ''"
        )[0][0]

    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            await _chat(http, front, "alpha")
            await _chat(http, front, "beta")
        await _until(lambda: answered() == 6, "the first 6 requests in the shared history")

        own_postgres.stop()
        for _ in range(3):  # every node keeps serving while the database is down
            await _chat(http, front, "alpha")
            await _chat(http, front, "beta")
        status = await wait_json(
            http, f"{node_a.url}/api/history", lambda doc: doc["state"] == "failing"
        )
        assert status["lag_events"] > 0 and status["node"] == "node-a" and status["last_error"]
        assert "***" not in status["database"] and status["shared"] is True
        async with http.get(f"{node_a.url}/health") as response:
            assert response.status == 200 and await response.text() == "OK"
        metrics = await _history_metrics(http, node_a)
        assert metrics["llamaswap_es_history_up"] == 0.0
        assert metrics["llamaswap_es_history_lag_events"] > 0

        own_postgres.start()
        await _until(lambda: answered() == 12, "all 12 requests after the database came back")
        for node in (node_a, node_b, front):
            await wait_json(http, f"{node.url}/api/history", lambda doc: doc["lag_events"] == 0)
        local = {
            "node-a": await _local_request_ids(http, node_a),
            "node-b": await _local_request_ids(http, node_b),
        }
        assert (await _history_metrics(http, node_a))["llamaswap_es_history_up"] == 1.0

    rows = own_postgres.query(
        database, "SELECT node, request_id, model_id, peer, output_tokens FROM history_requests"
    )
    keys = [(node, rid) for node, rid, *_ in rows]
    assert len(keys) == len(set(keys)) == 24  # 12 answered + the front's 12 forwarded, once each
    for node, ids in local.items():
        assert len(ids) == 6
        assert {rid for n, rid, _, peer, _ in rows if n == node and peer == ""} == ids
    assert {(n, m, p, t) for n, _, m, p, t in rows} == {
        ("node-a", "alpha", "", 3),
        ("node-b", "beta", "", 4),
        ("front", "alpha", "a", 3),
        ("front", "beta", "b", 4),
    }
    loads = own_postgres.query(
        database,
        "SELECT node, model_id, kind, count(*) FROM history_decisions "
        "WHERE kind IN ('load', 'ready') GROUP BY node, model_id, kind ORDER BY node, kind",
    )
    assert loads == [
        ("node-a", "alpha", "load", 1),
        ("node-a", "alpha", "ready", 1),
        ("node-b", "beta", "load", 1),
        ("node-b", "beta", "ready", 1),
    ]
