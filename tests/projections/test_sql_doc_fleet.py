"""Every fleet query in docs/sql.md (the ```sql fleet blocks) runs as written on SQLite and on
PostgreSQL, answers something, and both databases give the same answer.

The fleet: node `gpu-a` (the hand-written story, on 2025-06-01), node `gpu-b` (the same story a
day later with other models, a failed start and a crash) and a `front` node that forwarded
requests to both; each has its own real event log, and the real history sink writes all three
into an SQLite file and into a PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from llamaswap_es.events.types import (
    Decision,
    Event,
    PeerRequestFinished,
    ProcessExited,
    ProcessStartFailed,
    StartProcess,
)
from llamaswap_es.projections.history.engine import open_history_database
from llamaswap_es.projections.history.sink import HistorySink
from llamaswap_es.projections.history.writer import HistoryWriter
from tests.conftest import REPO_ROOT
from tests.fixtures.event_store import open_booted_store
from tests.fixtures.postgres import PostgresServer
from tests.projections.logs import STORY, write_story

DOC = REPO_ROOT / "docs" / "sql.md"
BASE_MS = 1_748_779_200_000  # 2025-06-01 12:00:00 UTC
DAY_MS = 86_400_000
VOLATILE = {"updated_ms", "worst_delay_ms"}
"""Columns that say when something was written: they differ between the two databases."""


def fleet_queries() -> list[str]:
    return re.findall(r"```sql fleet\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _renamed(body: Event | Decision, names: dict[str, str]) -> Event | Decision:
    changes: dict[str, object] = {}
    if isinstance(getattr(body, "model", None), str):
        changes["model"] = names.get(body.model, body.model)
    if hasattr(body, "evict"):
        changes["evict"] = tuple(names.get(m, m) for m in body.evict)
    return dataclasses.replace(body, **changes)  # type: ignore[type-var]


def _stories() -> dict[str, list[tuple[int, Event | Decision]]]:
    a = {"a": "llama-8b", "b": "qwen-7b"}
    b = {"a": "llama-8b", "b": "mistral-7b"}
    gpu_a = [(BASE_MS + ts, _renamed(body, a)) for ts, body in STORY]
    gpu_b = [(BASE_MS + DAY_MS + ts, _renamed(body, b)) for ts, body in STORY]
    gpu_b += [
        (BASE_MS + DAY_MS + 20_000, ProcessExited(model="mistral-7b", instance=1, exit_code=139)),
        (BASE_MS + DAY_MS + 21_000, StartProcess(model="mistral-7b", instance=2)),
        (BASE_MS + DAY_MS + 22_000,
         ProcessStartFailed(model="mistral-7b", instance=2, error="CUDA out of memory")),
    ]  # fmt: skip
    front = [
        (BASE_MS + 30_000 + i * 1000, PeerRequestFinished(
            request_id=f"f{i}", model=model, peer=peer, status=status, received_ms=BASE_MS,
            path="/v1/chat/completions", duration_ms=100 * (i + 1),
            metrics={"input_tokens": 5, "output_tokens": 7},
        ))
        for i, (model, peer, status) in enumerate(
            [("llama-8b", "gpu-a", 200), ("qwen-7b", "gpu-a", 200), ("mistral-7b", "gpu-b", 502)]
        )
    ]  # fmt: skip
    return {"gpu-a": gpu_a, "gpu-b": gpu_b, "front": front}


async def _write_fleet(logs: Path, urls: list[str]) -> None:
    for node, story in _stories().items():
        path = logs / f"{node}.db"
        await write_story(path, story)
        with sqlite3.connect(path) as conn:
            log_id = conn.execute("SELECT id FROM log_identity").fetchone()[0]
        async with await open_booted_store(path) as store:
            for url in urls:
                db = open_history_database(url, path)
                sink = HistorySink(HistoryWriter(db, node=node, log_id=log_id), store)
                await sink.start()
                await sink.flush()
                await sink.stop()
                await db.close()


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> tuple[Path, PostgresServer, str]:
    root = tmp_path_factory.mktemp("fleet-sql")
    history = root / "history.db"
    database = postgres_server.create_database()
    asyncio.run(_write_fleet(root, [f"sqlite:///{history}", postgres_server.url(database)]))
    return history, postgres_server, database


def _normal(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _answers(columns: list[str], rows: list[tuple]) -> list[tuple]:
    keep = [i for i, name in enumerate(columns) if name not in VOLATILE]
    return [tuple(_normal(row[i]) for i in keep) for row in rows]


def test_the_doc_has_fleet_queries_per_node_model_and_day() -> None:
    queries = fleet_queries()
    assert len(queries) >= 8
    assert any("GROUP BY day" in q for q in queries)
    assert any("GROUP BY node" in q for q in queries)
    assert any("GROUP BY r.model_id, r.node" in q for q in queries)


@pytest.mark.parametrize("number", range(len(fleet_queries())), ids=lambda n: f"F{n + 1}")
def test_each_fleet_query_gives_the_same_answer_on_sqlite_and_postgresql(
    fleet: tuple[Path, PostgresServer, str], number: int
) -> None:
    import psycopg

    history, server, database = fleet
    query = fleet_queries()[number]
    with sqlite3.connect(f"{history.as_uri()}?mode=ro", uri=True) as conn:
        cursor = conn.execute(query)
        on_sqlite = _answers([d[0] for d in cursor.description], cursor.fetchall())
    with psycopg.connect(server.url(database)) as conn:
        cursor = conn.execute(query)  # type: ignore[arg-type]
        assert cursor.description is not None
        on_postgres = _answers([d.name for d in cursor.description], cursor.fetchall())
    assert on_sqlite, f"docs/sql.md fleet query F{number + 1} returned nothing:\n{query}"
    assert on_sqlite == on_postgres


def test_the_per_node_query_counts_each_nodes_answered_requests(
    fleet: tuple[Path, PostgresServer, str],
) -> None:
    history, _, _ = fleet
    with sqlite3.connect(history) as conn:
        rows = conn.execute(fleet_queries()[0]).fetchall()
    # r1..r4 answered, r5 refused (429) on each GPU node; the front's forwards are not counted
    assert [(node, requests, errors) for node, requests, errors, *_ in rows] == [
        ("gpu-a", 5, 1),
        ("gpu-b", 5, 1),
    ]


def test_the_failure_query_finds_the_crash_and_the_failed_start(
    fleet: tuple[Path, PostgresServer, str],
) -> None:
    history, _, _ = fleet
    with sqlite3.connect(history) as conn:
        rows = conn.execute(fleet_queries()[5]).fetchall()
    assert [(node, model, kind, detail) for _, _, node, model, kind, detail in rows] == [
        ("gpu-b", "mistral-7b", "start_failed", "CUDA out of memory"),
        ("gpu-b", "mistral-7b", "crash", "exit code 139"),
    ]
