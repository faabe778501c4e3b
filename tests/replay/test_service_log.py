"""A log written by the real service (real fake-upstream processes, two server runs) verifies,
also from the snapshot the first run saved at shutdown, and explains its swap."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llamaswap_es.config import load_config
from llamaswap_es.events.open_log import open_log
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


async def _two_at_once(svc: SwapService, prefix: str) -> list[str]:
    """Two requests for `a` at once: the order of decisions and finishes the policy gives
    (fifo serves both together, serial one after the other)."""
    assert svc.loop is not None
    first, second = (
        svc.loop.submit_request(RequestReceived(request_id=f"{prefix}-{i}", model="a"))
        for i in range(2)
    )
    assert isinstance(await asyncio.wait_for(first.decision, 30), Dispatch)
    await svc.loop.flush()  # every decision the state allows is taken and resolved by now
    order = ["dispatch", "dispatch"] if second.decision.done() else ["dispatch"]
    svc.loop.submit(RequestFinished(request_id=f"{prefix}-0", model="a", status=200))
    order.append("finish")
    assert isinstance(await asyncio.wait_for(second.decision, 30), Dispatch)
    if len(order) == 2:
        order.append("dispatch")
    svc.loop.submit(RequestFinished(request_id=f"{prefix}-1", model="a", status=200))
    await svc.loop.flush()
    return order


async def test_a_log_recorded_under_the_old_default_still_verifies_under_the_new_one(
    tmp_path: Path, db_path: Path, env_tag: str
) -> None:
    """Every log written before serial became the default ran fifo, and its ConfigApplied says
    so; the next run (no scheduler named: serial) records its own. Replay recomputes each
    decision under the policy in force when it was made, so verify finds no divergence."""
    old_default = "routing: {scheduler: {use: fifo}}"  # what an unnamed scheduler meant before
    orders = []
    for extra in (old_default, ""):
        config = load_config(str(write_config(tmp_path, {"a": ""}, extra)), None)
        svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
        await svc.start()
        try:
            orders.append(await _two_at_once(svc, f"run{len(orders)}"))
        finally:
            await svc.shutdown()
    assert orders == [["dispatch", "dispatch", "finish"], ["dispatch", "finish", "dispatch"]]

    with open_log(db_path) as reader:
        report = verify(reader)
        policies = [
            e.body.schedule["policy"]  # type: ignore[union-attr]
            for e in reader.iter_envelopes()
            if e.type == "ConfigApplied"
        ]
    assert policies == ["fifo", "serial"]
    assert report.ok and report.decisions >= 8, report.to_text()
