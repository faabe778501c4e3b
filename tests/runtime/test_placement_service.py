"""Placement by GPU memory end to end below HTTP: real config, log, reducer and fake upstreams.

Declared footprints (`llamaswap-es.models`) make a third model evict the least recently used
one although the group lets them all run together; each started process gets its GPU in
`CUDA_VISIBLE_DEVICES` (the fake upstream reports its environment); a model whose own `env`
pins its GPUs keeps them. The recorded log replays with no divergence, `replay explain` of the
eviction gives the memory numbers, and a what-if with placement off (the group alone) keeps
every model loaded instead.

The GPU samples are submitted here as the NVML sampler records them (the sampler itself is the
measurement side of issue 18, tested with the fake NVML there).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llamaswap_es.cli import main
from llamaswap_es.config import load_config
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import (
    GpuMemorySampled,
    PlacementChosen,
    StopProcess,
)
from llamaswap_es.replay.explain import explain
from llamaswap_es.replay.source import iter_all, log_facts
from llamaswap_es.replay.traffic import extract_traffic
from llamaswap_es.replay.verify import verify
from llamaswap_es.replay.whatif import simulate
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from tests.conftest import REPO_ROOT, free_port
from tests.runtime.test_service import serve_through_scheduler

UUIDS = ("GPU-11111111-aaaa", "GPU-22222222-bbbb")


def _config(tmp_path: Path) -> Path:
    lines = ["healthCheckTimeout: 20", "routing: {scheduler: {use: fifo}}", "models:"]
    for model in ("a", "b", "c"):
        port = free_port()
        env = f"[PYTHONPATH={REPO_ROOT}" + (", CUDA_VISIBLE_DEVICES=7]" if model == "b" else "]")
        lines += [
            f"  {model}:",
            f"    cmd: {sys.executable} -m llamaswap_es.fake_upstream --port {port} "
            f"--model-name {model}",
            f"    proxy: http://127.0.0.1:{port}",
            f"    env: {env}",
            "    unloadTimeout: 2",
        ]
    lines += [
        "groups:",
        "  all: {swap: false, exclusive: false, members: [a, b, c]}",
        "llamaswap-es:",
        "  placement: {mode: memory, marginMb: 512}",
        "  models:",
        "    a: {footprintMb: 20000}",
        "    b: {footprintMb: 20000, priority: 5}",
        "    c: {footprintMb: 20000}",
    ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _serve(svc: SwapService, request_id: str, model: str) -> dict[str, str]:
    """One request through the scheduler; returns the environment its upstream reports."""
    info = await serve_through_scheduler(svc, request_id, model, "/fake/info")
    return info["gpu_env"]


async def test_declared_footprints_evict_and_devices_reach_the_process(
    tmp_path: Path, db_path: Path, env_tag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _config(tmp_path)
    config = load_config(str(config_path), None)
    svc = SwapService(config, db_path=db_path, logs=UpstreamLogs(), env_tag=env_tag)
    await svc.start()
    try:
        assert svc.loop is not None
        svc.loop.submit(
            GpuMemorySampled(
                uuids=UUIDS, names=("fake L4", "fake L4"), total_mb=(24_576, 24_576),
                free_mb=(24_000, 24_000),
            )
        )  # fmt: skip
        env_a = await _serve(svc, "r1", "a")
        env_b = await _serve(svc, "r2", "b")
        env_c = await _serve(svc, "r3", "c")  # no room left: a (least recently used) goes
        states = {v.model: v.state for v in svc.view.models.values()}
    finally:
        await svc.shutdown()
    assert env_a["CUDA_VISIBLE_DEVICES"] == UUIDS[0]
    assert env_b["CUDA_VISIBLE_DEVICES"] == "7"  # its own env pins it: left alone
    assert env_c["CUDA_VISIBLE_DEVICES"] == UUIDS[0]  # a's GPU, freed for it
    assert states == {"a": "stopped", "b": "ready", "c": "ready"}

    with open_log(db_path) as reader:
        report = verify(reader)
        assert report.ok, report.to_text()
        envelopes = list(iter_all(reader, log_facts(reader).first_seq, None))
        placed = [e for e in envelopes if isinstance(e.body, PlacementChosen)]
        assert [(p.body.model, p.body.devices, p.body.evict) for p in placed] == [
            ("a", (0,), ()),
            ("b", (1,), ()),
            ("c", (0,), ("a",)),
        ]
        eviction = next(
            e for e in envelopes if isinstance(e.body, StopProcess) and e.body.reason == "evict"
        )
        why = explain(reader, eviction.seq).text
        assert "GPU memory forced it: c needs 20,000 MiB on each of GPU0" in why
        assert "margin of 512 MiB; GPU0 had 4,000 MiB free" in why
        assert "a gives back 20,000 MiB there" in why
        traffic = extract_traffic(iter(envelopes))

    by_memory = simulate(traffic, {}, label="as recorded")
    by_groups = simulate(traffic, {"placement": "off"}, label="groups alone")
    assert sum(by_memory.loads.values()) == 3 and by_memory.swaps == {"c": 1}
    assert sum(by_groups.loads.values()) == 3 and not by_groups.swaps

    # the same comparison as a user runs it
    assert main(["replay", "whatif", "--db", str(db_path), "--placement", "off", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    recorded, _, groups = report["runs"]
    assert recorded["models"]["c"]["swaps"] == 1 and groups["models"]["TOTAL"]["swaps"] == 0
    notes = report["assumptions"]
    assert any("GPU memory: the first recorded sample (2 devices" in n for n in notes)
    assert main(["replay", "whatif", "--db", str(db_path), "--set", "placement=vram"]) == 2
    assert "--set placement=vram: expected off or memory" in capsys.readouterr().err

    # or under another config file: here the same models with placement off
    groups_only = tmp_path / "groups.yaml"
    groups_only.write_text(config_path.read_text().replace("mode: memory", "mode: off"))
    assert main(["replay", "whatif", "--db", str(db_path), "--config", str(groups_only)]) == 0
    total = next(line.split() for line in capsys.readouterr().out.splitlines() if "TOTAL" in line)
    assert total[3:5] == ["1", "0"]  # swaps: 1 recorded, none with the group alone
    missing = str(tmp_path / "absent.yaml")
    assert main(["replay", "whatif", "--db", str(db_path), "--config", missing]) == 2
    assert f"--config {missing}:" in capsys.readouterr().err
