"""Host and GPU sampling (GPUs through a fake NVML module), `/metrics`, `/api/performance` and
`/api/hardware` over real HTTP."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from llamaswap_es.perf.hardware import detect_hardware
from llamaswap_es.perf.nvml import NvmlGpus, load_nvml
from llamaswap_es.perf.sampler import PerformanceSampler
from llamaswap_es.projections.metrics import metrics_registry
from llamaswap_es.web import metrics_routes
from tests.perf.fake_nvml import FakeNvml
from tests.projections.http_app import serve_routes


class SteppingClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 5.0
        return self.now


def make_deps(sampler: PerformanceSampler, hardware: dict | None = None) -> SimpleNamespace:
    registry, model_metrics, log_gauges = metrics_registry(state=lambda: None, sampler=sampler)

    class Store:
        async def last_seq(self) -> int:
            return 0

    return SimpleNamespace(
        registry=registry, log_gauges=log_gauges, runner=SimpleNamespace(applied_seq=0),
        model_metrics=model_metrics, state=lambda: None, store=Store(),
        db_path="/nonexistent/events.db", sampler=sampler, hardware=hardware,
    )  # fmt: skip


def test_gpu_samples_come_from_nvml_and_missing_figures_read_zero() -> None:
    fake = FakeNvml()
    gpus = NvmlGpus.open(fake)
    assert gpus is not None and gpus.count == 2
    h100, l4 = gpus.sample(now=1_700_000_000.0)
    assert (h100.id, h100.name, h100.uuid) == (0, "NVIDIA H100 80GB HBM3", "GPU-aaaa")
    assert (h100.temp_c, h100.gpu_util_pct, h100.mem_util_pct) == (61, 87, 40)
    assert (h100.mem_used_mb, h100.mem_total_mb) == (40 * 1024, 80 * 1024)
    assert (h100.fan_speed_pct, h100.power_draw_w) == (35, 312.5)
    assert (l4.name, l4.uuid, l4.fan_speed_pct) == ("NVIDIA L4", "", 0)  # bytes decoded
    gpus.close()
    assert fake.shut_down


def test_no_driver_means_no_gpus_quietly(caplog) -> None:
    assert NvmlGpus.open(FakeNvml(fail_init=True)) is None
    assert NvmlGpus.open(None) is None
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    if load_nvml() is not None:  # the real library on this machine (no GPU here): also quiet
        real = NvmlGpus.open(load_nvml())
        if real is not None:
            real.close()


async def test_metrics_show_host_and_gpu_families_with_llama_swaps_labels() -> None:
    sampler = PerformanceSampler(gpus=NvmlGpus.open(FakeNvml()), clock=SteppingClock(1e9))
    sampler.sample_once()
    deps = make_deps(sampler)
    async with (
        serve_routes(deps, metrics_routes.register_routes) as (base, http),
        http.get(f"{base}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    temps = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["llamaswap_gpu_temperature_celsius"].samples
    }
    assert temps == {
        (("id", "0"), ("name", "NVIDIA H100 80GB HBM3"), ("uuid", "GPU-aaaa")): 61,
        (("id", "1"), ("name", "NVIDIA L4")): 44,  # an empty uuid is left out
    }
    used = families["llamaswap_gpu_memory_used_bytes"].samples[0].value
    assert used == 40 * 1024**3
    assert families["llamaswap_gpu_power_draw_watts"].samples[0].value == 312.5
    cores = [s for s in families["llamaswap_cpu_util_percent"].samples]
    assert len(cores) >= 1 and all(0 <= s.value <= 100 for s in cores)
    mem_total = families["llamaswap_memory_total_bytes"].samples[0].value
    assert mem_total > 0 and mem_total % 1048576 == 0
    assert {s.labels["interval"] for s in families["llamaswap_load_average"].samples} == {
        "1m",
        "5m",
        "15m",
    }
    net = families.get("llamaswap_network_bytes")
    if net is not None:  # counters, loopback excluded
        assert all(s.labels["interface"] != "lo" for s in net.samples)
        assert net.type == "counter"


async def test_performance_history_filters_by_after_and_answers_disabled_with_503() -> None:
    sampler = PerformanceSampler(gpus=NvmlGpus.open(FakeNvml()), clock=SteppingClock(1e9))
    empty_deps = make_deps(sampler)
    async with serve_routes(empty_deps, metrics_routes.register_routes) as (base, http):
        async with http.get(f"{base}/api/performance") as resp:
            assert await resp.json() == {"enabled": True, "sys_stats": None, "gpu_stats": None}
        for _ in range(3):
            sampler.sample_once()  # at 1e9+5, +10, +15
        async with http.get(f"{base}/api/performance") as resp:
            body = await resp.json()
        assert len(body["sys_stats"]) == 3 and len(body["gpu_stats"]) == 6
        assert body["sys_stats"][0]["timestamp"] == "2001-09-09T01:46:45Z"
        assert set(body["gpu_stats"][0]) >= {"id", "name", "uuid", "temp_c", "power_draw_w"}
        async with http.get(f"{base}/api/performance?after=2001-09-09T01:46:50Z") as resp:
            later = await resp.json()
        assert [s["timestamp"] for s in later["sys_stats"]] == ["2001-09-09T01:46:55Z"]
        async with http.get(f"{base}/api/performance?after=2001-09-09T09:00:00Z") as resp:
            assert await resp.json() == {"enabled": True, "sys_stats": [], "gpu_stats": []}
        async with http.get(f"{base}/api/performance?after=soon") as resp:
            assert resp.status == 400
            message = (await resp.json())["error"]["message"]
            assert message == "invalid 'after' timestamp, use RFC3339 format"
    disabled = PerformanceSampler(disabled=True)
    async with serve_routes(make_deps(disabled), metrics_routes.register_routes) as (base, http):
        async with http.get(f"{base}/api/performance") as resp:
            assert resp.status == 503 and await resp.json() == {"enabled": False}
        async with http.get(f"{base}/metrics") as resp:  # per-model metrics, no host families
            assert resp.status == 200
            assert "llamaswap_cpu_util_percent" not in await resp.text()


async def test_hardware_snapshot_lists_the_gpus_and_503_when_unknown() -> None:
    snapshot = detect_hardware(NvmlGpus.open(FakeNvml()))
    sampler = PerformanceSampler(disabled=True)
    async with (
        serve_routes(make_deps(sampler, snapshot), metrics_routes.register_routes) as (
            base,
            http,
        ),
        http.get(f"{base}/api/hardware") as resp,
    ):
        body = await resp.json()
    assert body["schema_version"] == 1 and body["capture"]["scope"] == "inference_host"
    assert body["architecture"]["name"] in ("x86_64", "arm64", "other")
    assert body["operating_system"]["family"] == "linux"
    assert body["memory"]["capacity_bytes"] > 0
    assert body["cpu"]["logical_thread_count"] >= 1
    first, second = body["accelerators"]
    assert (first["index"], first["kind"], first["vendor"]) == (0, "gpu", "nvidia")
    assert first["memory"] == {"kind": "dedicated", "capacity_bytes": 80 * 1024**3}
    assert first["driver"] == {"name": "nvidia", "version": "550.54.15"}
    assert (first["power_limit_watts"], second["model"]) == (700.0, "NVIDIA L4")
    async with (
        serve_routes(make_deps(sampler, None), metrics_routes.register_routes) as (b, http),
        http.get(f"{b}/api/hardware") as resp,
    ):
        assert resp.status == 503
        assert (await resp.json())["error"]["message"] == "hardware detection unavailable"


def test_the_ring_buffer_keeps_one_hour() -> None:
    sampler = PerformanceSampler(every_s=1, clock=SteppingClock(0))  # raised to the 5 s minimum
    assert sampler.every_s == 5
    for _ in range(800):
        sampler.sample_once()
    assert len(sampler.sys_stats()) == 720


async def test_a_reload_that_disables_monitoring_closes_the_gpus_and_one_that_enables_reopens() -> (
    None
):
    opened: list[FakeNvml] = []

    def open_gpus() -> NvmlGpus | None:
        opened.append(FakeNvml())
        return NvmlGpus.open(opened[-1])

    async def sampled() -> None:
        async with asyncio.timeout(10):
            while not sampler.latest_gpus():
                await asyncio.sleep(0.01)

    sampler = PerformanceSampler(every_s=3600, open_gpus=open_gpus)
    sampler.start()
    try:
        await sampled()
        await sampler.reconfigure(every_s=3600, disabled=True)
        assert not sampler.enabled and opened[0].shut_down
        assert sampler.latest_gpus() == [] and sampler.sys_stats() == []
        await sampler.reconfigure(every_s=3600, disabled=False)
        await sampled()
        assert len(opened) == 2 and not opened[1].shut_down
    finally:
        await sampler.stop()
    assert opened[1].shut_down
