"""The history as the server runs it: on by default in the node's own event-log file (a
projection of the runner, holding retention back by its checkpoints), named by nodeName, off
with historySink: false."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp

from llamaswap_es.config import load_config
from llamaswap_es.events.types import PeerRequestFinished
from llamaswap_es.projections.inflight import InflightTracker
from llamaswap_es.projections.lifecycle import Projections
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from llamaswap_es.web import activity_routes, history_routes
from tests.events.test_old_payloads import old_log
from tests.projections.http_app import serve_routes


async def _service(tmp_path: Path, db_path: Path, env_tag: str, ours: str) -> SwapService:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(f"models: {{}}\nllamaswap-es:\n{ours}")
    config = load_config(str(config_path), None)
    service = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await service.start()
    return service


def _peer_request(rid: str) -> PeerRequestFinished:
    return PeerRequestFinished(
        request_id=rid, model="big", peer="gpu-2", path="/v1/chat/completions", status=200,
        received_ms=1, duration_ms=20, metrics={"input_tokens": 3, "output_tokens": 4},
    )  # fmt: skip


def _query(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


async def test_by_default_the_history_is_in_the_nodes_own_file_under_its_name(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    service = await _service(tmp_path, db_path, env_tag, "  nodeName: box-1\n")
    projections = await Projections.start(service, inflight=InflightTracker(), use_gpus=False)
    try:
        assert service.loop is not None
        for rid in ("p1", "p2"):
            service.loop.submit(_peer_request(rid))
        await service.loop.flush()
        assert projections.history.sink is None and projections.history.db is None
        await projections.runner.flush()  # the local history is one of the runner's projections
        last = await service.store.last_seq()
        async with serve_routes(
            projections, history_routes.register_routes, activity_routes.register_routes
        ) as (base, http):
            status = await _get(http, f"{base}/api/history")
            fleet = await _get(http, f"{base}/api/history/activity?sort=id&order=asc")
            nodes = await _get(http, f"{base}/api/history/nodes")
            local = await _get(http, f"{base}/api/metrics/activity")
    finally:
        await projections.stop()
        await service.shutdown()
    assert status["node"] == "box-1" and status["shared"] is False
    assert status["state"] == "current" and status["lag_events"] == 0
    assert status["database"] == f"sqlite+aiosqlite:///{db_path.absolute()}"
    assert [(e["node"], e["request_id"], e["peer"]) for e in fleet["data"]] == [
        ("box-1", "p1", "gpu-2"),
        ("box-1", "p2", "gpu-2"),
    ]
    assert fleet["data"][0]["tokens"]["output_tokens"] == 4 and fleet["total"] == 2
    assert [(n["node"], n["written_seq"]) for n in nodes["nodes"]] == [("box-1", last)]
    assert {e["node"] for e in local["data"]} == {"box-1"} and local["total"] == 2
    # its checkpoints are the projections' own (retention never prunes past them): no sink row
    assert _query(db_path, "SELECT count(*) FROM history_checkpoints") == [(0,)]
    assert _query(
        db_path, "SELECT count(*) FROM projection_checkpoints WHERE name = 'history'"
    ) == [(0,)]


async def test_with_the_sink_off_nothing_is_written_and_retention_is_not_held(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    service = await _service(tmp_path, db_path, env_tag, "  historySink: false\n")
    projections = await Projections.start(service, inflight=InflightTracker(), use_gpus=False)
    try:
        assert service.loop is not None and projections.history.sink is None
        service.loop.submit(_peer_request("p1"))
        await service.loop.flush()
        async with serve_routes(projections, history_routes.register_routes) as (base, http):
            status = await _get(http, f"{base}/api/history")
            async with http.get(f"{base}/api/history/activity") as response:
                refused = (response.status, await response.json())
    finally:
        await projections.stop()
        await service.shutdown()
    assert status["enabled"] is False and status["state"] == "off"
    assert refused[0] == 404 and "historySink: false" in refused[1]["error"]["message"]
    tables = {r[0] for r in _query(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "history_requests" not in tables
    assert _query(
        db_path, "SELECT count(*) FROM projection_checkpoints WHERE name = 'history'"
    ) == [(0,)]


async def test_turning_the_history_off_releases_both_retention_rows(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    """What an earlier run left (the projection's checkpoint, an older sink's hold) must not
    hold event-log retention back once the history is off."""
    service = await _service(tmp_path, db_path, env_tag, "  historySink: false\n")
    with sqlite3.connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO projection_checkpoints (name, seq, state, updated_ms) "
            "VALUES (?, 1, '{}', 0)",
            [("history",), ("history_decisions",)],
        )
    projections = await Projections.start(service, inflight=InflightTracker(), use_gpus=False)
    await projections.stop()
    await service.shutdown()
    held = "SELECT name FROM projection_checkpoints WHERE name LIKE 'history%'"
    assert _query(db_path, held) == []


async def test_a_file_holding_another_logs_request_rows_is_written_by_the_sink(
    tmp_path: Path, env_tag: str
) -> None:
    """Another node pointed its historyDatabase at this event log: its table stays, and this
    node writes its own copies into it through the sink, as before."""
    path = old_log(tmp_path / "old.db")  # round 1's fixture: 41 requests of node "vm"
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO history_checkpoints (node, log_id) VALUES ('gpu-b', 'other')")
        conn.execute(
            "INSERT INTO history_requests (node, request_id, seq, day, ts_ms, model_id, "
            "recorded_ms) VALUES ('gpu-b', 'x', 1, '2026-12-06', 1, 'm', 1)"
        )
    service = await _service(tmp_path, path, env_tag, "  nodeName: vm\n")
    projections = await Projections.start(service, inflight=InflightTracker(), use_gpus=False)
    try:
        assert service.loop is not None
        sink = projections.history.sink
        assert sink is not None and projections.history.local is None
        service.loop.submit(_peer_request("p-new"))
        await service.loop.flush()
        await sink.flush()
        status = projections.history.status()
    finally:
        await projections.stop()
        await service.shutdown()
    assert status.shared is False and status.state == "current"
    assert _query(path, "SELECT node FROM history_requests WHERE request_id = 'p-new'") == [
        ("vm",)
    ]


async def _get(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()
