"""The per-model metrics as a projection: counts from the log, no double counting, any batching."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llamaswap_es.events.open_log import open_log
from llamaswap_es.projections.activity import AppliedRow
from llamaswap_es.projections.activity_fold import ActivityFold
from llamaswap_es.projections.metrics import ModelMetrics
from tests.projections.logs import write_story


def scrape(registry: CollectorRegistry) -> dict[tuple, float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.name.endswith("_created")
    }


async def test_counts_follow_the_log_and_replays_are_ignored(db_path: Path) -> None:
    await write_story(db_path)
    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    fold = ActivityFold()  # the activity projection's fold: its rows feed the request counters
    rows = [AppliedRow(i, r["request_id"], r["model_id"], r) for i, e in enumerate(envelopes)
            if (r := fold.step(e)) is not None]  # fmt: skip
    whole = CollectorRegistry()
    whole_metrics = ModelMetrics(whole)
    whole_metrics.apply(envelopes)
    whole_metrics.count_rows(rows, since_seq=0)
    chunked = CollectorRegistry()
    metrics = ModelMetrics(chunked)
    for i in range(0, len(envelopes), 3):
        metrics.apply(envelopes[: i + 3])  # every batch repeats what came before
    metrics.count_rows(rows, since_seq=0)
    values = scrape(whole)
    assert values == scrape(chunked)
    assert values[("llamaswap_es_requests_total", (("model", "a"), ("status", "200")))] == 3
    assert values[("llamaswap_es_requests_total", (("model", "b"), ("status", "429")))] == 1
    assert values[("llamaswap_es_tokens_total", (("direction", "input"), ("model", "a")))] == 36
    # a's swap took 3 s (1000 → 4000), b's 2 s (7000 → 9000).
    assert values[("llamaswap_es_swap_duration_seconds_sum", (("model", "a"),))] == 3.0
    assert values[("llamaswap_es_swap_duration_seconds_sum", (("model", "b"),))] == 2.0
    assert values[("llamaswap_es_queue_wait_seconds_sum", (("model", "a"),))] == 5.5
    assert values[("llamaswap_es_model_loads_total", (("model", "b"),))] == 1


async def test_rows_from_before_this_server_started_are_not_counted(db_path: Path) -> None:
    await write_story(db_path)
    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    fold = ActivityFold()
    rows = [AppliedRow(i, r["request_id"], r["model_id"], r) for i, e in enumerate(envelopes)
            if (r := fold.step(e)) is not None]  # fmt: skip
    registry = CollectorRegistry()
    ModelMetrics(registry).count_rows(rows, since_seq=envelopes[-1].seq)
    assert not any(name == "llamaswap_es_requests_total" for name, _ in scrape(registry))
