"""The history sink on `/metrics`: alert on `llamaswap_es_history_up == 0` or a growing lag.

Every family carries the node's name as a `node` label (a fleet's Prometheus usually scrapes each
node, and the label says which history the figure is about even when re-exported), and
`llamaswap_es_node_info{node}` names the node for joins. The per-model families keep their labels
as they were: each node's `/metrics` is about that node, as `instance` already says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llamaswap_es.projections.history.status import HistoryStatus


class HistoryCollector(Collector):
    def __init__(self, status: Callable[[], HistoryStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        labels = ["node"]
        info = GaugeMetricFamily(
            "llamaswap_es_node_info", "This server's node name (llamaswap-es.nodeName).",
            labels=labels,
        )  # fmt: skip
        info.add_metric([s.node], 1.0)
        yield info
        if not s.enabled:
            return
        for name, help_text, value in (
            ("llamaswap_es_history_up",
             "1 while the history sink can write to its database, 0 while it cannot (the node "
             "serves as usual and catches up later).",
             0.0 if s.state in ("failing", "stopped") else 1.0),
            ("llamaswap_es_history_lag_events",
             "Committed events of this node not yet in the history database.", s.lag_events),
            ("llamaswap_es_history_lag_seconds",
             "Age of the oldest committed event not yet in the history database (0 when current).",
             s.lag_seconds),
            ("llamaswap_es_history_failing_seconds",
             "How long writes to the history database have been failing (0 when they are not).",
             s.failing_seconds),
        ):  # fmt: skip
            family = GaugeMetricFamily(name, help_text, labels=labels)
            family.add_metric([s.node], float(value))
            yield family
        rows = CounterMetricFamily(
            "llamaswap_es_history_rows_written",
            "Rows this server wrote to the history database since it started, by table.",
            labels=["node", "table"],
        )
        rows.add_metric([s.node, "history_requests"], s.requests_written)
        rows.add_metric([s.node, "history_decisions"], s.decisions_written)
        yield rows
        failures = CounterMetricFamily(
            "llamaswap_es_history_write_failures",
            "Failed attempts to reach or write the history database since this server started.",
            labels=labels,
        )
        failures.add_metric([s.node], s.write_failures)
        yield failures
