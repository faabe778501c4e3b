"""`/api/metrics/activity` and `/api/metrics/stats` over real HTTP, in llama-swap's shapes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from llamaswap_es.events.open_log import open_log
from llamaswap_es.projections.activity import ActivityProjection
from llamaswap_es.projections.activity_queries import histogram
from llamaswap_es.projections.captures import CaptureStore
from llamaswap_es.projections.database import ProjectionDatabase
from llamaswap_es.projections.history.lifecycle import History
from llamaswap_es.web import activity_routes
from tests.projections.http_app import serve_routes
from tests.projections.logs import write_story


@pytest.fixture
async def api(db_path: Path):
    await write_story(db_path)  # rows r1..r5: ids 1..5, a a a b b, finished at 4..9 s
    db = ProjectionDatabase(db_path)
    projection = ActivityProjection(db.path)
    with open_log(db_path) as reader:
        envelopes = list(reader.iter_envelopes())
    await db.run(lambda conn: projection.apply(conn, envelopes))
    deps = SimpleNamespace(
        db=db, captures=CaptureStore(db, budget_mib=1), history=History("node-a")
    )
    async with serve_routes(deps, activity_routes.register_routes) as (base, http):

        async def get(path: str) -> tuple[int, dict]:
            async with http.get(base + path) as resp:
                return resp.status, await resp.json()

        yield get
    db.close()


async def test_default_listing_is_newest_first_with_paging_fields(api) -> None:
    status, body = await api("/api/metrics/activity")
    assert status == 200
    assert [e["id"] for e in body["data"]] == [5, 4, 3, 2, 1]
    assert (body["page"], body["limit"], body["total"], body["total_pages"]) == (1, 25, 5, 1)
    first = body["data"][-1]
    assert first["timestamp"] == "1970-01-01T00:00:04Z"
    assert first["tokens"] == {
        "cache_tokens": 3,
        "draft_tokens": -1,
        "draft_acc_tokens": -1,
        "input_tokens": 11,
        "output_tokens": 20,
        "prompt_per_second": 110.0,
        "tokens_per_second": 50.0,
    }
    assert first["metadata"] == {"session_id": "s-1"} and "error_msg" not in first
    assert (first["queue_wait_ms"], first["swap_wait_ms"], first["request_id"]) == (
        3000,
        3000,
        "r1",
    )
    assert body["data"][0]["error_msg"] == "Too many requests"


@pytest.mark.parametrize(
    ("query", "ids", "total"),
    [
        ("?model=b", [5, 4], 2),
        ("?model=a&model=b&model=", [5, 4, 3, 2, 1], 5),
        ("?sort=generated&order=ASC", [5, 1, 2, 3, 4], 5),  # r5 generated 0 tokens
        ("?sort=model&order=asc", [1, 2, 3, 4, 5], 5),
        ("?min_id=2&max_id=3", [3, 2], 2),
        ("?start=1970-01-01T00:00:05Z&end=1970-01-01T00:00:09%2B00:00", [5, 4, 3], 3),
        ("?limit=2&page=2", [3, 2], 5),
        ("?limit=2&page=9", [], 5),
        ("?model=nothing", [], 0),
    ],
)
async def test_filters_sorting_and_paging(api, query: str, ids: list[int], total: int) -> None:
    status, body = await api("/api/metrics/activity" + query)
    assert status == 200
    assert [e["id"] for e in body["data"]] == ids
    assert body["total"] == total
    assert body["total_pages"] == (0 if total == 0 else -(-total // body["limit"]))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?limit=x", "invalid limit"),
        ("?limit=1000", "limit must be between 1 and 999"),
        ("?limit=0", "limit must be between 1 and 999"),
        ("?page=0", "page must be >= 1"),
        ("?sort=tokens", "invalid sort column"),
        ("?order=up", "order must be asc or desc"),
        ("?start=yesterday", "invalid 'start' timestamp, use RFC3339 format"),
        ("?end=2024-01-01", "invalid 'end' timestamp, use RFC3339 format"),
        ("?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z", "start must be before end"),
        ("?min_id=0", "min_id must be >= 1"),
        ("?max_id=-3", "max_id must be >= 1"),
        ("?min_id=4&max_id=2", "min_id must be <= max_id"),
    ],
)
async def test_bad_parameters_get_llama_swaps_messages(api, query: str, message: str) -> None:
    status, body = await api("/api/metrics/activity" + query)
    assert status == 400
    assert body["error"]["message"] == message


async def test_stats_totals_and_histograms(api) -> None:
    status, body = await api("/api/metrics/stats")
    assert status == 200
    assert body["total_requests"] == 5
    assert body["total_input_tokens"] == 11 + 12 + 13 + 14
    assert body["total_output_tokens"] == 20 + 21 + 22 + 23
    assert body["total_cache_tokens"] == 12
    gen = body["gen_histogram"]
    assert gen["min"] == 50.0 and gen["max"] == 57.5 and sum(gen["bins"]) == 4
    assert len(gen["bins"]) == 5  # clamp(ceil(log2 4) + 1, 5, 20)
    status, only_b = await api("/api/metrics/stats?model=b")
    assert only_b["total_requests"] == 2
    assert only_b["prompt_histogram"]["bins"] == [1] and only_b["prompt_histogram"]["binSize"] == 0
    _, none = await api("/api/metrics/stats?model=zzz")
    assert none["prompt_histogram"] is None and none["total_requests"] == 0


def test_histogram_bins_and_percentiles_match_llama_swaps_rules() -> None:
    values = [float(v) for v in range(1, 101)]
    h = histogram(values)
    assert h is not None
    assert len(h["bins"]) == 8  # ceil(log2 100) + 1
    assert sum(h["bins"]) == 100 and h["bins"][-1] >= 1  # the maximum lands in the last bin
    assert h["binSize"] == pytest.approx(99 / 8)
    assert h["p50"] == pytest.approx(50.5) and h["p95"] == pytest.approx(95.05)
    assert histogram([]) is None


async def test_a_database_error_is_a_500_with_llama_swaps_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # an SQLite file without the activity table
    db = ProjectionDatabase(empty)
    try:
        deps = SimpleNamespace(db=db)
        async with (
            serve_routes(deps, activity_routes.register_routes) as (b, http),
            http.get(f"{b}/api/metrics/activity") as resp,
        ):
            assert resp.status == 500
            assert (await resp.json())["error"]["message"] == "failed to get activity"
    finally:
        db.close()
