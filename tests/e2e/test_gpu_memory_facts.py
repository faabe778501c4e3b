"""GPU memory facts end to end: a real server with placement on, the fake upstream, and the fake
NVML driver (tests/fixtures/fake_pynvml) told through its state file that the upstream of model
`a` uses 3,000 MiB on GPU1. The server estimates the GGUF model from its file, samples the two
fake GPUs, measures `a` once it is ready, and its log replays with no divergence (the
server_factory fixture verifies every log it started)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llamaswap_es.events.open_log import open_log
from tests.fixtures.net import free_port
from tests.fixtures.server import REPO_ROOT, config_text, fake_model, wait_json
from tests.fixtures.tiny_gguf import tiny_gguf

FAKE_PYNVML = REPO_ROOT / "tests" / "fixtures" / "fake_pynvml"
PLACEMENT_ON = "llamaswap-es:\n  placement: {mode: memory, sampleStepMb: 256}"


def gguf_model(name: str, gguf: Path, ctx: int) -> str:
    """A llama-server entry on a GGUF file: estimated from the file, never started here."""
    return (
        f"  {name}:\n"
        f"    cmd: /nowhere/llama-server --port ${{PORT}} -m {gguf} -c {ctx}\n"
        "    proxy: http://127.0.0.1:${PORT}\n"
    )


def fake_nvml_env(state: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join([str(FAKE_PYNVML), str(REPO_ROOT)]),
        "FAKE_NVML_STATE": str(state),
    }


def facts(doc: dict, kind: str) -> list[dict]:
    return [e["payload"] for e in doc["events"] if e["type"] == kind]


async def test_estimate_samples_and_measurement_reach_the_log(
    server_factory, tmp_path: Path
) -> None:
    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"models": {"a": {"1": 3000}}}))
    config = config_text(
        [fake_model("a"), gguf_model("tiny", tiny_gguf("tiny-c.gguf"), 1024)], PLACEMENT_ON
    )
    server = server_factory(config, env=fake_nvml_env(state))
    log_url = f"{server.url}/api/log/events?type=FootprintKnown&type=GpuMemorySampled"
    async with aiohttp.ClientSession() as http:
        body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{server.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
        doc = await wait_json(
            http, log_url,
            lambda d: any(f["source"] == "measured" for f in facts(d, "FootprintKnown"))
            and len(facts(d, "GpuMemorySampled")) >= 2,
        )  # fmt: skip
        async with http.get(f"{server.url}/metrics") as response:
            metrics = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(await response.text())
                for sample in family.samples
                if sample.name.startswith(("llamaswap_es_gpu_memory", "llamaswap_es_model_foot"))
            }
        async with http.get(f"{server.url}/api/queue") as response:
            queue = await response.json()
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "numpy" not in maps, "the GGUF file is read in a subprocess: no numpy in the server"
    footprints = {f["model"]: f for f in facts(doc, "FootprintKnown")}
    assert footprints["tiny"]["source"] == "estimated"
    assert footprints["tiny"]["mb"] == 513  # 466,688 B weights + 524,288 B KV (ctx 1024), + 512
    assert "at ctx 1,024 (f16/f16)" in footprints["tiny"]["detail"]
    measured = footprints["a"]
    assert (measured["source"], measured["mb"], measured["per_device_mb"]) == (
        "measured", 3000, [3000],
    )  # fmt: skip
    assert "on GPU1 after ready" in measured["detail"]
    samples = facts(doc, "GpuMemorySampled")
    assert samples[0]["total_mb"] == [81920, 24576]
    assert samples[0]["free_mb"] == [40960, 23552]
    assert samples[-1]["free_mb"] == [40960, 23552 - 3000]
    assert samples[0]["uuids"][0] == "GPU-aaaa"

    mib = 1024 * 1024
    gpu1 = (("gpu", "1"), ("name", "NVIDIA L4"), ("uuid", ""))
    assert metrics[("llamaswap_es_gpu_memory_total_bytes", gpu1)] == 24576 * mib
    assert metrics[("llamaswap_es_gpu_memory_free_bytes", gpu1)] == (23552 - 3000) * mib
    footprint = "llamaswap_es_model_footprint_bytes"
    assert metrics[(footprint, (("model", "a"), ("source", "measured")))] == 3000 * mib
    assert metrics[(footprint, (("model", "tiny"), ("source", "estimated")))] == 513 * mib
    by_id = {m["id"]: m for m in queue["models"]}
    assert by_id["a"]["footprint"]["source"] == "measured"
    assert by_id["a"]["footprint"]["mb"] == 3000
    assert [g["total_mb"] for g in queue["gpus"]] == [81920, 24576]
    assert queue["gpus"][1]["sampled_free_mb"] == 23552 - 3000


async def test_a_model_adopted_after_a_crash_is_measured_again(
    server_factory, tmp_path: Path
) -> None:
    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"models": {"a": {"0": 1200}}}))
    config = config_text([fake_model("a", port=free_port())], PLACEMENT_ON)
    first = server_factory(config, env=fake_nvml_env(state))

    def measured(doc: dict) -> list[dict]:
        return [f for f in facts(doc, "FootprintKnown") if f["source"] == "measured"]

    async with aiohttp.ClientSession() as http:
        body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{first.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
        url = "/api/log/events?type=FootprintKnown"
        await wait_json(http, first.url + url, lambda d: len(measured(d)) == 1)
        first.stop(signal.SIGKILL)
        state.write_text(json.dumps({"models": {"a": {"0": 1300}}}))  # it grew meanwhile
        second = server_factory(
            config, db_path=first.db_path, name="config2.yaml", env=fake_nvml_env(state)
        )
        doc = await wait_json(http, second.url + url, lambda d: len(measured(d)) == 2)
    again = measured(doc)[-1]
    assert again["mb"] == 1300
    assert "on GPU0 after ready (instance 1)" in again["detail"], "the same instance, adopted"
    second.stop()
    with open_log(first.db_path) as reader:
        types = [e.type for e in reader.iter_envelopes()]
    assert "ProcessAdopted" in types and types.count("StartProcess") == 1


async def test_a_measured_footprint_places_the_next_start_on_a_gpu(
    server_factory, tmp_path: Path
) -> None:
    """The loop closed: measured on its first run, the model is placed by memory on its second,
    and the GPU chosen reaches its process as CUDA_VISIBLE_DEVICES."""
    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"models": {"a": {"0": 3000}}}))
    server = server_factory(config_text([fake_model("a")], PLACEMENT_ON), env=fake_nvml_env(state))
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    log_url = f"{server.url}/api/log/events?type=FootprintKnown&type=PlacementChosen"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
        await wait_json(http, log_url, lambda d: bool(facts(d, "FootprintKnown")))
        async with http.post(f"{server.url}/api/models/unload/a") as response:
            assert response.status == 200
        async with http.post(f"{server.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
        async with http.get(f"{server.url}/upstream/a/fake/info") as response:
            gpu_env = (await response.json())["gpu_env"]
        doc = await wait_json(http, log_url, lambda d: bool(facts(d, "PlacementChosen")))
    (placed,) = facts(doc, "PlacementChosen")
    assert (placed["source"], placed["need_mb"]) == ("measured", 3000)
    (device,) = placed["devices"]
    uuid = ["GPU-aaaa", ""][device]  # the fake's GPU1 reports no UUID: its index is used
    expected = {"CUDA_VISIBLE_DEVICES": uuid} if uuid else {
        "CUDA_VISIBLE_DEVICES": str(device), "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }  # fmt: skip
    assert gpu_env == expected
