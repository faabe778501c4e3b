"""The service end to end below HTTP: real config, real log, real reducer, real processes.

A request goes in as RequestReceived; the scheduler starts the model's process, the executor
reports it ready, the request is dispatched to a live upstream; asking for another model in the
same swap group stops the first. Shutdown leaves no process behind (the env_tag fixture checks).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp

from llamaswap_es import core
from llamaswap_es.config import load_config
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import Dispatch, RequestFinished, RequestReceived
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from tests.conftest import REPO_ROOT, free_port


def write_config(tmp_path: Path, models: dict[str, str], extra: str = "") -> Path:
    """A llama-swap config running the fake upstream for each model (model → extra flags)."""
    lines = ["healthCheckTimeout: 20", extra, "models:"]
    for model, flags in models.items():
        port = free_port()
        lines += [
            f"  {model}:",
            f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port {port} "
            f"--model-name {model} {flags}",
            f"    proxy: http://127.0.0.1:{port}",
            f"    env: [PYTHONPATH={REPO_ROOT}]",
            "    unloadTimeout: 2",
        ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _serve_one(svc: SwapService, request_id: str, model: str) -> str:
    """Send a request through the scheduler, call the upstream, report it finished; the model
    id the upstream's /v1/models names."""
    body = await serve_through_scheduler(svc, request_id, model, "/v1/models")
    return body["data"][0]["id"]


async def serve_through_scheduler(svc: SwapService, request_id: str, model: str, path: str) -> Any:
    """One request through the scheduler to the granted upstream's `path` (GET), reported
    finished; the upstream's JSON answer."""
    assert svc.loop is not None and svc.executor is not None
    ticket = svc.loop.submit_request(RequestReceived(request_id=request_id, model=model))
    decision = await asyncio.wait_for(ticket.decision, 30)
    assert isinstance(decision, Dispatch), decision
    address = svc.executor.address(model)
    assert address is not None and address[0] == decision.instance
    async with aiohttp.ClientSession() as http, http.get(f"{address[1]}{path}") as resp:
        body = await resp.json()
    svc.loop.submit(RequestFinished(request_id=request_id, model=model, status=200))
    return body


async def test_requests_start_models_and_a_second_model_swaps_out_the_first(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    config = load_config(str(write_config(tmp_path, {"a": "", "b": ""})), None)
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    try:
        assert await _serve_one(svc, "r1", "a") == "a"
        assert await _serve_one(svc, "r2", "b") == "b"
        states = {v.model: v.state for v in svc.view.models.values()}
        assert states == {"a": "stopped", "b": "ready"}
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        types = [e.type for e in reader.iter_envelopes()]
    assert types.count("StartProcess") == 2
    assert "SwapPlanned" in types and "ShutdownRequested" in types
    assert types.count("ProcessStopped") == 2


async def test_unload_waits_until_the_model_is_stopped(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    config = load_config(str(write_config(tmp_path, {"a": ""})), None)
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    try:
        await _serve_one(svc, "r1", "a")
        assert await svc.unload(["a"]) is True
        assert svc.view.model("a").state == "stopped"
        assert svc.executor.address("a") is None
    finally:
        await svc.shutdown()


async def test_preload_starts_the_listed_model_without_a_request(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    path = write_config(tmp_path, {"a": ""}, extra="hooks:\n  on_startup:\n    preload: [a]")
    svc = SwapService(
        load_config(str(path), None), db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag
    )
    await svc.start()
    try:
        ready = await svc.wait_until(lambda view: view.model("a").state == "ready", timeout_s=30)
        assert ready
    finally:
        await svc.shutdown()


async def test_a_snapshot_is_saved_as_the_log_grows_and_restores_exactly(
    tmp_path: Path, db_path: Path, env_tag: str, monkeypatch
) -> None:
    from llamaswap_es.runtime import service as service_module

    monkeypatch.setattr(service_module, "SNAPSHOT_EVERY_EVENTS", 5)
    config = load_config(str(write_config(tmp_path, {"a": ""})), None)
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    try:
        for i in range(3):
            await _serve_one(svc, f"r{i}", "a")
        await svc.loop.flush()
        snap = await svc.store.latest_snapshot(core.REDUCER_VERSION)
        assert snap is not None and snap.seq > 1
    finally:
        await svc.shutdown()
    with open_log(db_path) as reader:
        periodic = reader.latest_snapshot(core.REDUCER_VERSION, max_seq=snap.seq)
        assert periodic is not None
        state = core.restore(periodic.state)
        for envelope in reader.iter_envelopes(from_seq=periodic.seq + 1):
            state, _ = core.reduce(state, envelope)
        full = core.new_state()
        for envelope in reader.iter_envelopes():
            full, _ = core.reduce(full, envelope)
    assert core.digest(state) == core.digest(full)


async def test_each_boot_is_recorded_first_by_the_run_loop_and_the_log_verifies(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    """ServerStarted is the run loop's first input at every start: it heads its boot's events
    (settling and the configuration come after it), seqs run on across restarts, and replaying
    the whole log reproduces every recorded decision."""
    from llamaswap_es.events.types import ServerStarted
    from llamaswap_es.replay.verify import verify

    config = load_config(str(write_config(tmp_path, {"a": ""})), None)
    boots = []
    for _ in range(2):
        svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
        await svc.start()
        try:
            assert svc.store is not None
            boots.append(svc.store.boot_id)
            if len(boots) == 1:
                assert await _serve_one(svc, "r1", "a") == "a"
        finally:
            await svc.shutdown()
    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
        report = verify(reader)
    assert [e.seq for e in envelopes] == list(range(1, len(envelopes) + 1))
    assert [e.body.boot_id for e in envelopes if isinstance(e.body, ServerStarted)] == boots
    for boot in boots:
        own = [e for e in envelopes if e.boot == boot]
        assert isinstance(own[0].body, ServerStarted) and own[0].body.boot_id == boot
        assert [e.type for e in own[1:3]] == ["RecoveryStarted", "ConfigApplied"]
        # The boot's events are one run: nothing of another boot lies between them.
        assert [e.seq for e in own] == list(range(own[0].seq, own[0].seq + len(own)))
    assert report.divergence is None and report.inputs > 0
