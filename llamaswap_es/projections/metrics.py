"""Prometheus metrics: per-model counters from the log, live gauges, and the host figures.

Everything lives in its own `CollectorRegistry` (never the process-global one, so two servers in
one test process do not collide). Three sources:

* `ModelMetrics`, an in-memory projection fed by the `ProjectionRunner`: requests by status,
  tokens in and out, queue-wait and swap-duration histograms, loads, start failures, crashes,
  hangs.
  Counters start when the server starts (Prometheus counters reset on restart by design; `rate()`
  copes), so start-up never replays the whole log for them.
* `SchedulerCollector`: each model's state, queue depth and in-flight count at scrape time, from
  the reducer's views.
* `MemoryCollector` (projections/memory_metrics.py): placement's GPU memory and footprints.
* `HostCollector`: llama-swap's `llamaswap_*` host and GPU families (spec/api.md §17) from the
  performance sampler's newest samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llamaswap_es.core.state import PROCESS_STATES
from llamaswap_es.core.views import SchedulerView
from llamaswap_es.events.types import (
    Dispatch,
    Envelope,
    ProcessExited,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    StartProcess,
    StopProcess,
    SwapPlanned,
)
from llamaswap_es.perf.sampler import PerformanceSampler
from llamaswap_es.projections.activity import AppliedRow
from llamaswap_es.projections.memory_metrics import MemoryCollector

WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
SWAP_BUCKETS_S = (0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600)
_MB = 1048576


class ModelMetrics:
    """The per-model counters and histograms, as a projection of the log."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry, seq: int = 0) -> None:
        self.seq = seq
        """Last seq applied; counters start at server start (Prometheus reset semantics)."""
        self._swap_started: dict[str, int] = {}
        self.requests = Counter(
            "llamaswap_es_requests", "Finished requests by model and HTTP status.",
            ["model", "status"], registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "llamaswap_es_tokens", "Tokens the upstreams reported, by direction (input, output).",
            ["model", "direction"], registry=registry,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "llamaswap_es_queue_wait_seconds", "Time from receiving a request to dispatching it.",
            ["model"], buckets=WAIT_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.swap_duration = Histogram(
            "llamaswap_es_swap_duration_seconds",
            "Time from planning a swap to its model being ready (evictions and load).",
            ["model"], buckets=SWAP_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.loads = Counter(
            "llamaswap_es_model_loads", "Times a model became ready.", ["model"], registry=registry
        )
        self.start_failures = Counter(
            "llamaswap_es_model_start_failures", "Failed starts (spawn, early exit, timeout).",
            ["model"], registry=registry,
        )  # fmt: skip
        self.crashes = Counter(
            "llamaswap_es_model_crashes", "Ready processes that exited without being asked to.",
            ["model"], registry=registry,
        )  # fmt: skip
        self.hangs = Counter(
            "llamaswap_es_model_hangs",
            "Ready processes declared hung (health probes unanswered) and killed.",
            ["model"], registry=registry,
        )  # fmt: skip

    def declare(self, models: Iterable[str]) -> None:
        """Give each model its counters at 0 before anything happens to it.

        A labelled counter is exported only once it has a child; one that first appears at 1
        hides that first crash or failed start from `increase()` and from alert rules
        (docs/grafana/), and a dashboard shows "No data" instead of 0. The `/metrics` handler
        declares the configured models before each scrape.
        """
        for model in models:
            self.loads.labels(model)
            self.start_failures.labels(model)
            self.crashes.labels(model)
            for direction in ("input", "output"):
                self.tokens.labels(model, direction)

    def apply(self, envelopes: Sequence[Envelope]) -> None:
        """Process events (loads, crashes, swap durations), straight from the log."""
        for env in envelopes:
            if env.seq <= self.seq:
                continue
            self.seq = env.seq
            self._swaps(env)

    def count_rows(self, rows: Sequence[AppliedRow], since_seq: int) -> None:
        """Requests, tokens and queue waits from the activity rows the projection just wrote
        (one fold of the log serves both); rows at or before `since_seq` predate this server."""
        for applied in rows:
            if int(applied.row.get("seq", 0)) > since_seq:
                self._count(applied.row)

    def _count(self, row: dict[str, object]) -> None:
        model = str(row["model_id"])
        self.requests.labels(model, str(row["resp_status_code"])).inc()
        for direction in ("input", "output"):
            value = row[f"{direction}_tokens"]
            if isinstance(value, int) and value > 0:
                self.tokens.labels(model, direction).inc(value)
        wait = row["queue_wait_ms"]
        if isinstance(wait, int):
            self.queue_wait.labels(model).observe(wait / 1000)

    def _swaps(self, env: Envelope) -> None:
        body = env.body
        if isinstance(body, SwapPlanned | StartProcess):
            self._swap_started.setdefault(body.model, env.ts_ms)
        elif isinstance(body, ProcessReady):
            self.loads.labels(body.model).inc()
            started = self._swap_started.pop(body.model, None)
            if started is not None:
                self.swap_duration.labels(body.model).observe((env.ts_ms - started) / 1000)
        elif isinstance(body, ProcessStartFailed):
            self.start_failures.labels(body.model).inc()
            self._swap_started.pop(body.model, None)
        elif isinstance(body, ProcessExited):
            self.crashes.labels(body.model).inc()
            self._swap_started.pop(body.model, None)
        elif isinstance(body, StopProcess) and body.reason == "hung":
            self.hangs.labels(body.model).inc()
        elif isinstance(body, ProcessStopped | Dispatch):
            self._swap_started.pop(body.model, None)


class SchedulerCollector(Collector):
    """Model state, queue depth and in-flight requests, read from the reducer at scrape time."""

    def __init__(self, state: Callable[[], SchedulerView | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        st = self._state()
        state = GaugeMetricFamily(
            "llamaswap_es_model_state", "1 for the model's current process state.",
            labels=["model", "state"],
        )  # fmt: skip
        depth = GaugeMetricFamily(
            "llamaswap_es_queue_depth", "Requests waiting for the model (queued or on a swap).",
            labels=["model"],
        )  # fmt: skip
        in_flight = GaugeMetricFamily(
            "llamaswap_es_in_flight", "Requests being served by the model.", labels=["model"]
        )
        for view in st.models.values() if st is not None else []:
            for name in PROCESS_STATES:
                state.add_metric([view.model, name], 1.0 if view.state == name else 0.0)
            depth.add_metric([view.model], view.queue_depth + view.waiting)
            in_flight.add_metric([view.model], view.in_flight)
        yield from (state, depth, in_flight)


class HealthFacts(Protocol):
    """What the health families read (runtime's HealthReport has these fields)."""

    @property
    def ok(self) -> bool: ...
    @property
    def heartbeat_age_s(self) -> float: ...
    @property
    def degraded_since_s(self) -> float | None: ...


class HealthCollector(Collector):
    """What `/health` says, as numbers: alert on them (docs/architecture.md, Failure modes)."""

    def __init__(self, report: Callable[[], HealthFacts]) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        report = self._report()
        yield GaugeMetricFamily(
            "llamaswap_es_healthy", "1 while /health answers 200, 0 while it answers 503.",
            value=1.0 if report.ok else 0.0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "llamaswap_es_loop_heartbeat_age_seconds",
            "Seconds since the scheduler's run loop last turned (it beats at least every second).",
            value=report.heartbeat_age_s,
        )
        yield GaugeMetricFamily(
            "llamaswap_es_event_log_writable",
            "1 while the event log can be written; 0 while new requests are refused for it.",
            value=0.0 if report.degraded_since_s is not None else 1.0,
        )
        yield GaugeMetricFamily(
            "llamaswap_es_event_log_unwritable_seconds",
            "How long the event log has not been writable (0 while it is).",
            value=report.degraded_since_s or 0.0,
        )


class LogGauges:
    """Event-log size and projection lag, set just before each scrape (they need awaits)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.log_bytes = Gauge(
            "llamaswap_es_event_log_bytes", "Size of the event log database file and its WAL.",
            registry=registry,
        )  # fmt: skip
        self.last_seq = Gauge(
            "llamaswap_es_event_log_last_seq", "Seq of the newest committed event.",
            registry=registry,
        )  # fmt: skip
        self.lag = Gauge(
            "llamaswap_es_projection_lag_events", "Committed events not yet in the projections.",
            registry=registry,
        )  # fmt: skip

    def update(self, db_path: Path, last_seq: int, lag: int) -> None:
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(f"{db_path}{suffix}")
            except OSError:
                pass
        self.log_bytes.set(size)
        self.last_seq.set(last_seq)
        self.lag.set(lag)


class HostCollector(Collector):
    """llama-swap's host and GPU families from the sampler's newest samples (§17)."""

    def __init__(self, sampler: PerformanceSampler) -> None:
        self._sampler = sampler

    def collect(self) -> Iterator[Metric]:
        if not self._sampler.enabled:  # monitoring turned off, maybe by a reload: no families
            return
        sys = self._sampler.latest_sys()
        if sys is not None:
            cpu = GaugeMetricFamily(
                "llamaswap_cpu_util_percent", "CPU utilisation per core (0-100).", labels=["core"]
            )
            for i, pct in enumerate(sys.cpu_util_per_core):
                cpu.add_metric([str(i)], pct)
            yield cpu
            for name, help_text, value in (
                ("llamaswap_memory_total_bytes", "Total memory.", sys.mem_total_mb),
                ("llamaswap_memory_used_bytes", "Used memory.", sys.mem_used_mb),
                ("llamaswap_memory_free_bytes", "Free (available) memory.", sys.mem_free_mb),
                ("llamaswap_swap_total_bytes", "Total swap.", sys.swap_total_mb),
                ("llamaswap_swap_used_bytes", "Used swap.", sys.swap_used_mb),
            ):
                yield GaugeMetricFamily(name, help_text, value=value * _MB)
            load = GaugeMetricFamily("llamaswap_load_average", "Load average.", labels=["interval"])
            load.add_metric(["1m"], sys.load_avg_1)
            load.add_metric(["5m"], sys.load_avg_5)
            load.add_metric(["15m"], sys.load_avg_15)
            yield load
            if sys.net_io:
                net = CounterMetricFamily(
                    "llamaswap_network_bytes", "Network bytes by interface and direction.",
                    labels=["interface", "direction"],
                )  # fmt: skip
                for nic in sys.net_io:
                    net.add_metric([nic.name, "recv"], nic.bytes_recv)
                    net.add_metric([nic.name, "sent"], nic.bytes_sent)
                yield net
        yield from self._gpu_families()

    def _gpu_families(self) -> Iterator[Metric]:
        gpus = self._sampler.latest_gpus()
        if not gpus:
            return
        fields = (
            ("llamaswap_gpu_temperature_celsius", "GPU temperature.", "temp_c", 1),
            ("llamaswap_gpu_vram_temperature_celsius", "GPU memory temperature.", "vram_temp_c", 1),
            ("llamaswap_gpu_util_percent", "GPU utilisation.", "gpu_util_pct", 1),
            ("llamaswap_gpu_memory_util_percent", "GPU memory utilisation.", "mem_util_pct", 1),
            ("llamaswap_gpu_memory_used_bytes", "GPU memory used.", "mem_used_mb", _MB),
            ("llamaswap_gpu_memory_total_bytes", "GPU memory total.", "mem_total_mb", _MB),
            ("llamaswap_gpu_fan_speed_percent", "GPU fan speed.", "fan_speed_pct", 1),
            ("llamaswap_gpu_power_draw_watts", "GPU power draw.", "power_draw_w", 1),
        )
        for name, help_text, attr, scale in fields:
            family = Metric(name, help_text, "gauge")
            for gpu in gpus:
                labels = {"id": str(gpu.id), "name": gpu.name}
                if gpu.uuid:
                    labels["uuid"] = gpu.uuid
                family.add_sample(name, labels, float(getattr(gpu, attr)) * scale)
            yield family


def metrics_registry(
    *,
    state: Callable[[], SchedulerView | None],
    sampler: PerformanceSampler | None,
    health: Callable[[], HealthFacts] | None = None,
) -> tuple[CollectorRegistry, ModelMetrics, LogGauges]:
    """A fresh registry with every family registered; feed `ModelMetrics` to the runner."""
    registry = CollectorRegistry(auto_describe=True)
    model_metrics = ModelMetrics(registry)
    log_gauges = LogGauges(registry)
    registry.register(SchedulerCollector(state))
    registry.register(MemoryCollector(state))
    if health is not None:
        registry.register(HealthCollector(health))
    if sampler is not None:  # its families appear only while monitoring is enabled
        registry.register(HostCollector(sampler))
    return registry, model_metrics, log_gauges
