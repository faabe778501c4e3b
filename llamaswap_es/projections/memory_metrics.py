"""Prometheus gauges of placement by GPU memory: each GPU's memory and each model's footprint.

Read from the reducer's view at scrape time (`SchedulerView.gpus`, `ModelView.footprint`), so
they show exactly the numbers placement decides with. Both families are empty until the log
holds a `GpuMemorySampled` or a footprint, so a server without placement exports no series.
Bytes, as Prometheus prefers (the log counts MiB).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llamaswap_es.core.views import SchedulerView

MIB = 1024 * 1024


class MemoryCollector(Collector):
    """`llamaswap_es_gpu_memory_{total,free}_bytes` and `llamaswap_es_model_footprint_bytes`."""

    def __init__(self, state: Callable[[], SchedulerView | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        st = self._state()
        labels = ["gpu", "uuid", "name"]
        total = GaugeMetricFamily(
            "llamaswap_es_gpu_memory_total_bytes",
            "GPU memory in total, as placement by memory last sampled it.",
            labels=labels,
        )
        free = GaugeMetricFamily(
            "llamaswap_es_gpu_memory_free_bytes",
            "GPU memory free in the newest sample placement recorded (it is recorded again "
            "when free memory moves by more than placement.sampleStepMb).",
            labels=labels,
        )
        footprint = GaugeMetricFamily(
            "llamaswap_es_model_footprint_bytes",
            "A model's GPU memory need, all GPUs together, from its best known source "
            "(measured > declared > estimated).",
            labels=["model", "source"],
        )
        if st is not None:
            for gpu in st.gpus:
                values = [str(gpu.index), gpu.uuid, gpu.name]
                total.add_metric(values, gpu.total_mb * MIB)
                free.add_metric(values, gpu.sampled_free_mb * MIB)
            for view in st.models.values():
                if view.footprint is not None:
                    footprint.add_metric(
                        [view.model, view.footprint.source], view.footprint.mb * MIB
                    )
        yield from (total, free, footprint)
