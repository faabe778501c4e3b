"""`/api/inflight`, its cancel, and the `modelStatus` payload, over real HTTP and real config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from llamaswap_es.config import load_config
from llamaswap_es.core.state import SchedulerState
from llamaswap_es.core.views import scheduler_view
from llamaswap_es.projections.inflight import InflightTracker
from llamaswap_es.projections.queue_view import model_status_payload, queue_payload
from llamaswap_es.web import queue_routes
from tests.projections.http_app import serve_routes


async def test_inflight_lists_entries_and_cancel_reaches_the_request() -> None:
    tracker = InflightTracker()
    cancelled: list[str] = []
    tracker.begin(
        request_id="r-1", model="a", path="/v1/chat/completions", method="POST",
        headers={"Authorization": "Bearer sk-x"}, remote_ip="127.0.0.1",
        cancel=lambda: cancelled.append("r-1"),
    )  # fmt: skip
    deps = SimpleNamespace(inflight=tracker, state=lambda: None, clock_ms=lambda: 0)
    async with serve_routes(deps, queue_routes.register_routes) as (base, http):
        async with http.get(f"{base}/api/inflight") as resp:
            listed = (await resp.json())["requests"]
        async with http.post(f"{base}/api/inflight/1/cancel") as resp:
            assert resp.status == 200 and await resp.json() == {"msg": "ok"}
        async with http.post(f"{base}/api/inflight/99/cancel") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["message"] == "inflight request not found"
        async with http.get(f"{base}/api/queue") as resp:
            assert await resp.json() == {"models": [], "requests": [], "gpus": []}
    assert cancelled == ["r-1"]
    assert listed[0]["id"] == "1" and listed[0]["request_id"] == "r-1"
    assert listed[0]["req_headers"]["Authorization"] == "[REDACTED]"


def test_model_status_lists_local_models_by_id_then_peers(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "models:\n"
        "  zeta:\n    cmd: run-zeta --port ${PORT}\n    aliases: [z]\n"
        "    capabilities:\n      context: 4096\n      tools: true\n"
        "  alpha:\n    cmd: run-alpha --port ${PORT}\n    name: Alpha\n    unlisted: true\n"
        "peers:\n  remote:\n    proxy: http://10.0.0.2:8080\n    models: [m1]\n"
    )
    config = load_config(str(path), None)
    payload = model_status_payload(config, None)
    assert [e["id"] for e in payload] == ["alpha", "zeta", "remote/m1"]
    alpha, zeta, peer = payload
    assert alpha == {
        "id": "alpha", "name": "Alpha", "description": "", "state": "stopped",
        "unlisted": True, "peerID": "",
    }  # fmt: skip
    assert zeta["aliases"] == ["z"] and zeta["context_length"] == 4096
    assert zeta["capabilities"] == {"function_calling": True}  # llama-swap's booleans
    assert peer == {
        "id": "remote/m1", "name": "", "description": "", "state": "",
        "unlisted": False, "peerID": "remote",
    }  # fmt: skip


def test_an_empty_scheduler_has_an_empty_queue() -> None:
    assert queue_payload(scheduler_view(SchedulerState()), 0) == {
        "models": [], "requests": [], "gpus": []
    }
