"""Timeline and explain show what a user needs: waits, load times, the rule, the queue."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import (
    ConfigApplied,
    PeerRequestFinished,
    ProcessStartFailed,
    RequestFinished,
    RequestReceived,
    TimerFired,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.explain import explain, explain_log
from tests.replay.conftest import ABC_ABC, run_replay
from tests.replay.recording import group_config
from tests.replay.recording import record as record_log
from tests.runtime.log_builder import LogBuilder


def _seq(path: Path, type_name: str, nth: int = 0) -> int:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT seq FROM events WHERE type = ? ORDER BY seq", (type_name,))
        return [r[0] for r in rows][nth]


def test_timeline_lines_carry_local_time_and_the_waits(abc_log: Path) -> None:
    result = run_replay("timeline", "--db", abc_log)
    assert result.rc == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("2023-11-14 22:13:20.000         1  the server started (boot ")
    text = result.out
    assert "A ready (instance 1) after 500 ms loading" in text
    assert "request r1 dispatched to B (instance 1), queue wait 2030 ms" in text
    assert "A stopped (instance 1) after 40 ms" in text
    assert "request r1 finished on B: status 200 in 1000 ms" in text
    assert "swap to B planned for r1: evict A (rule: group g: swap=true evicts A)" in text
    assert "queue:" not in text  # no QueuePositions since core-4 (old logs: test_derived_decisions)


def test_timeline_filters_by_model_and_window(abc_log: Path) -> None:
    only_c = run_replay("timeline", "--db", abc_log, "--model", "C").out
    assert "request r2 for C received" in only_c and "request r1" not in only_c
    # a window after r2's arrival still knows when it arrived
    late = run_replay("timeline", "--db", abc_log, "--from", "25").out.splitlines()
    assert late[0].split()[2] == "25"
    assert any("request r2 dispatched to C (instance 1), queue wait 3560 ms" in x for x in late)
    since = run_replay("timeline", "--db", abc_log, "--since", "1s").out.splitlines()
    assert since and all(x[11:23] >= "22:13:23.580" for x in since)  # the log's last second
    assert len(since) < len(late)
    bad = run_replay("timeline", "--db", abc_log, "--since", "soon")
    assert bad.rc == 2 and "--since 'soon': expected a positive duration" in bad.err


def test_explain_a_swap_names_the_rule_and_the_queue(abc_log: Path) -> None:
    seq = _seq(abc_log, "SwapPlanned", 1)
    with open_log(abc_log) as reader:
        why = explain(reader, seq)
    text = why.to_text()
    assert "At 2023-11-14" in text and "request r3 finished on A: status 200" in text
    assert 'By the rule "group g: swap=true evicts A", A cannot run beside B' in text
    assert "queue #1: r1 for B" in text and "queue #4: r5 for C" in text
    data = explain_log(abc_log, seq)
    assert set(data) == {"seq", "decision", "cause", "explanation", "state_before"}
    assert set(data["decision"]) == {
        "seq", "ts_ms", "type", "key", "boot", "cause", "payload", "text"
    }  # fmt: skip
    assert data["decision"]["text"] == (  # the same words as the timeline and the UI
        "swap to B planned for r1: evict A (rule: group g: swap=true evicts A)"
    )
    assert data["decision"]["payload"]["evict"] == ["A"]
    assert data["cause"]["seq"] == data["decision"]["cause"]
    assert [q["request_id"] for q in data["state_before"]["queue"]] == ["r1", "r2", "r4", "r5"]


def test_explain_a_dispatch_gives_the_wait(abc_log: Path) -> None:
    result = run_replay("explain", "--db", abc_log, "--seq", _seq(abc_log, "Dispatch", 2))
    assert result.rc == 0, result.err
    assert "Request r1 had waited 2030 ms" in result.out
    assert "waiting on the swap to B" in result.out


def test_explain_a_queue_timeout_gives_the_wait_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "timeout.db"
    record_log(path, group_config(("A", "B", "C"), queue_timeout_ms=1_000), ABC_ABC, load_ms=500)
    data = explain_log(path, _seq(path, "Reject"))
    assert data["decision"]["payload"]["code"] == "queue_timeout"
    assert data["cause"]["type"] == "TimerFired"
    text = data["explanation"]
    assert "Request r1 is answered 503 (queue_timeout)" in text
    assert "queue (#1)" in text and "queueTimeoutSeconds (1000 ms)" in text


def test_explain_refuses_inputs_and_seqs_out_of_range(abc_log: Path) -> None:
    with open_log(abc_log) as reader, pytest.raises(ReplayError, match="an input, not a decision"):
        explain(reader, _seq(abc_log, "RequestReceived"))
    result = run_replay("explain", "--db", abc_log, "--seq", "1000")
    assert result.rc == 2 and "--seq 1000 is out of range" in result.err


def test_timeline_shows_a_peer_request_and_filters_it_by_its_requested_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "peer.db"
    record = PeerRequestFinished(
        request_id="p1", model="openrouter/m", peer="openrouter", path="/v1/chat/completions",
        status=502, duration_ms=12, error="peer proxy error: unreachable",
    )  # fmt: skip
    record_log(path, group_config(("A", "B", "C")), ABC_ABC, load_ms=500, extra=[(5, record)])
    only_peer = run_replay("timeline", "--db", path, "--model", "openrouter/m")
    assert only_peer.rc == 0, only_peer.err
    lines = only_peer.out.splitlines()
    assert not [line for line in lines if "request r" in line], "local requests are filtered out"
    [line] = [line for line in lines if "peer request" in line]
    assert line.endswith(
        "peer request p1 for openrouter/m finished on peer openrouter: "
        "POST /v1/chat/completions status 502 in 12 ms, error: peer proxy error: unreachable"
    )


def test_a_ttl_stop_is_explained_with_the_ttl_a_request_set(tmp_path: Path) -> None:
    builder = LogBuilder(tmp_path / "ttl.db", models=("a",))
    builder.at(0).load("a")
    builder.input(RequestReceived(request_id="r1", model="a", ttl_override_ms=5_000))
    [armed] = builder.input(RequestFinished(request_id="r1", model="a", status=200))
    builder.now_ms = armed.at_ms
    [stop] = builder.input(TimerFired(timer_id=armed.timer_id))
    builder.close()
    assert stop.reason == "ttl"
    with open_log(tmp_path / "ttl.db") as reader:
        text = explain(reader, reader.last_seq()).text
    assert "ttl of 5000 ms (set by a request's ttl/keep_alive)" in text, text


def test_a_start_backoff_answer_is_explained_with_the_window_and_the_failure(
    tmp_path: Path,
) -> None:
    builder = LogBuilder(tmp_path / "backoff.db", models=("a",))
    backoff = replace(group_config(("a",)), start_backoff_ms=2_000, start_backoff_max_ms=8_000)
    builder.input(ConfigApplied(config_hash="b", schedule=backoff.to_dict(), reason="reload"))
    builder.input(RequestReceived(request_id="r1", model="a"))
    failed = ProcessStartFailed(model="a", instance=1, error="failed to start", kind="command")
    builder.input(failed)
    [reject] = builder.input(RequestReceived(request_id="r2", model="a"))
    builder.close()
    assert (reject.code, reject.permanent, reject.retry_after_ms) == ("start_backoff", True, 2000)
    with open_log(tmp_path / "backoff.db") as reader:
        text = explain(reader, reader.last_seq()).text
    assert "Request r2 is answered 503 (start_backoff)" in text
    assert "Model a had failed to start (once); the start backoff (startBackoffSeconds: 2" in text
    assert "so the client was told not to retry" in text
