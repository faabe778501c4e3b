"""Every query in docs/sql.md runs as written against a real log and answers something.

The log is the hand-written story (tests/projections/logs.py) with the doc's model names and a
2025 date, plus a crash and an abandoned request, with `activity` built by the rebuild command.
Each query runs through Python's sqlite3 module and, where installed, the `sqlite3` shell.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from llamaswap_es.events.types import (
    PeerRequestFinished,
    ProcessExited,
    RequestAbandoned,
    RequestReceived,
    SelectorChose,
    SelectorRequested,
)
from llamaswap_es.projections.rebuild import rebuild_projections
from tests.conftest import REPO_ROOT
from tests.projections.logs import STORY, write_story

DOC = REPO_ROOT / "docs" / "sql.md"
BASE_MS = 1_748_779_200_000  # 2025-06-01 12:00:00 UTC, the moment question 4 asks about
NAMES = {"a": "llama-8b", "b": "qwen-7b"}


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def renamed(body):
    changes = {}
    if isinstance(getattr(body, "model", None), str):
        changes["model"] = NAMES.get(body.model, body.model)
    if hasattr(body, "evict"):
        changes["evict"] = tuple(NAMES.get(m, m) for m in body.evict)
    return dataclasses.replace(body, **changes)


def _peer(rid: str, status: int, metrics: dict | None = None, **fields) -> PeerRequestFinished:
    return PeerRequestFinished(
        request_id=rid, model="openrouter/gpt-4o-mini", peer="openrouter", status=status,
        path="/v1/chat/completions", received_ms=BASE_MS + 12_500, duration_ms=300,
        metrics=metrics or {}, **fields,
    )  # fmt: skip


def _chose(rid: str, target: str, rule: str) -> SelectorChose:
    reason = "spillover: llama-8b has 1 reserved ≥ spillover 1, qwen-7b cold"
    return SelectorChose(
        request_id=rid, selector="chat", target=target, model=target, rule=rule, reason=reason
    )


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    path = tmp_path_factory.mktemp("sqldoc") / "events.db"
    story = [(BASE_MS + ts, renamed(body)) for ts, body in STORY]
    story += [
        (BASE_MS + 10_000, ProcessExited(model="qwen-7b", instance=1, exit_code=139)),
        (BASE_MS + 11_000, RequestReceived(request_id="r9", model="qwen-7b")),
        (BASE_MS + 12_000, RequestAbandoned(request_id="r9")),
        (BASE_MS + 13_000, _peer("p1", 200, {"input_tokens": 4, "output_tokens": 6})),
        (BASE_MS + 14_000, _peer("p2", 502, error="peer proxy error: unreachable")),
        (BASE_MS + 15_000, SelectorRequested(request_id="s1", selector="chat")),
        (BASE_MS + 15_000, _chose("s1", "qwen-7b", "spillover-cold")),
    ]
    asyncio.run(write_story(path, story))
    rebuild_projections(path)
    return path


def test_the_doc_has_at_least_ten_queries() -> None:
    assert len(doc_queries()) >= 10


@pytest.mark.parametrize("number", range(len(doc_queries())), ids=lambda n: f"query-{n + 1}")
def test_each_query_runs_and_answers(populated: Path, number: int) -> None:
    query = doc_queries()[number]
    with sqlite3.connect(f"{populated.as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute(query).fetchall()
    assert rows, f"docs/sql.md query {number + 1} returned nothing:\n{query}"
    shell = shutil.which("sqlite3")
    if shell is not None:
        done = subprocess.run(
            [shell, "-readonly", "-bail", str(populated)],
            input=query, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and not done.stderr, done.stderr
        assert done.stdout.strip()


def test_question_four_explains_the_eviction(populated: Path) -> None:
    query = doc_queries()[3]
    with sqlite3.connect(populated) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute(query).fetchone())
    assert row["reason"] == "evict" and row["to_make_room_for"] == "qwen-7b"
    assert row["for_request"] == "r4" and row["stopped_at"] == "2025-06-01 12:00:07"


def test_the_peer_query_counts_peer_requests_per_peer_and_model(populated: Path) -> None:
    query = doc_queries()[12]
    with sqlite3.connect(populated) as conn:
        rows = conn.execute(query).fetchall()
    assert rows == [("openrouter", "openrouter/gpt-4o-mini", 2, 1, 4, 6, 300)]
