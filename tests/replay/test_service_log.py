"""A log written by the real service (real fake-upstream processes, two server runs) verifies,
also from the snapshot the first run saved at shutdown, and explains its swap."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llamaswap_es.config import load_config
from llamaswap_es.events.reader import open_log
from llamaswap_es.events.types import Dispatch, RequestFinished, RequestReceived
from llamaswap_es.replay.explain import explain
from llamaswap_es.replay.verify import verify
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from tests.runtime.test_service import write_config


async def _serve(svc: SwapService, request_id: str, model: str) -> None:
    assert svc.loop is not None
    ticket = svc.loop.submit_request(RequestReceived(request_id=request_id, model=model))
    decision = await asyncio.wait_for(ticket.decision, 30)
    assert isinstance(decision, Dispatch), decision
    svc.loop.submit(RequestFinished(request_id=request_id, model=model, status=200))
    await svc.loop.flush()


async def test_a_real_service_log_verifies_and_explains_its_swap(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    config = load_config(str(write_config(tmp_path, {"a": "", "b": ""})), None)
    for run, models in enumerate((("a", "b"), ("b",))):
        svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
        await svc.start()
        try:
            for i, model in enumerate(models):
                await _serve(svc, f"run{run}-r{i}", model)
        finally:
            await svc.shutdown()

    with open_log(db_path) as reader:
        whole = verify(reader)
        swap = next(
            e.seq
            for e in reader.iter_envelopes()
            if e.type == "SwapPlanned" and e.body.evict == ("a",)  # type: ignore[union-attr]
        )
        second_run = [e.seq for e in reader.iter_envelopes() if e.type == "ServerStarted"][1]
        tail = verify(reader, second_run + 1)
        why = explain(reader, swap)
    assert whole.ok, whole.to_text()
    assert whole.decisions >= 10
    assert tail.ok and tail.origin.startswith("from the snapshot at seq"), tail.to_text()
    text = why.to_text()
    assert "A swap to b is planned for request run0-r1; running at the time: a." in text
    assert "a cannot run beside b, so it is stopped first" in text
    assert why.to_json()["cause"]["type"] == "RequestReceived"
