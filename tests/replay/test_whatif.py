"""`replay whatif`: the recorded A B C A B C burst costs 3 loads under fifo and 6 under serial."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from llamaswap_es.config.schedule import GroupPlanner, GroupRule
from llamaswap_es.events.open_log import open_log
from llamaswap_es.events.types import (
    ConfigApplied,
    Dispatch,
    DispatchUnreachable,
    Envelope,
    RequestFinished,
    RequestReceived,
)
from llamaswap_es.replay.errors import ReplayError
from llamaswap_es.replay.traffic import Traffic, extract_traffic
from llamaswap_es.replay.whatif import apply_overrides, assumptions, simulate
from llamaswap_es.replay.whatif_table import summarise
from tests.replay.conftest import run_replay
from tests.replay.recording import Arrival, group_config, record


def _traffic(path: Path):  # type: ignore[no-untyped-def]
    with open_log(path) as reader:
        return extract_traffic(reader.iter_envelopes())


def test_fifo_batches_by_model_and_serial_swaps_for_every_request(abc_log: Path) -> None:
    traffic = _traffic(abc_log)
    fifo = summarise(simulate(traffic, {"policy": "fifo"}))["TOTAL"]
    serial = summarise(simulate(traffic, {"policy": "serial"}))["TOTAL"]
    recorded = summarise(traffic.recorded)["TOTAL"]
    assert (recorded["loads"], fifo["loads"], serial["loads"]) == (3, 3, 6)
    assert fifo == recorded  # the simulator reproduces the recorded run exactly
    assert serial["served"] == 6 and serial["wait_max_ms"] > fifo["wait_max_ms"]


def test_the_cli_prints_recorded_and_what_if_side_by_side(abc_log: Path) -> None:
    result = run_replay("whatif", "--db", abc_log, "--scheduler", "serial")
    assert result.rc == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "rec = recorded (fifo), from the log; sim = what-if (serial), simulated"
    total = next(line.split() for line in lines if line.startswith("TOTAL"))
    assert total[1:5] == ["3", "6", "2", "5"]  # loads rec/sim, swaps rec/sim
    assert "A: loads in 500 ms, stops in 40 ms (recorded medians)" in result.out

    as_json = run_replay("whatif", "--db", abc_log, "--scheduler", "fifo", "--json")
    runs = json.loads(as_json.out)["runs"]
    assert [r["models"]["TOTAL"]["loads"] for r in runs] == [3, 3, 3]
    assert runs[0]["models"]["A"]["wait_p95_ms"] == 500


def test_settings_change_the_outcome_and_bad_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "limit.db"
    arrivals = [Arrival(i, f"r{i}", "A", 1_000) for i in range(4)]
    record(path, group_config(("A", "B")), arrivals)
    traffic = _traffic(path)
    limited = summarise(simulate(traffic, {"A.concurrency_limit": "2"}))
    assert limited["A"]["rejected"] == 2 and limited["A"]["served"] == 2
    with pytest.raises(ReplayError, match="no model 'Z' in the recorded config"):
        apply_overrides(traffic.schedule, {"Z.ttl_ms": "1"})
    with pytest.raises(ReplayError, match="expected an integer"):
        apply_overrides(traffic.schedule, {"min_resident_ms": "soon"})
    result = run_replay("whatif", "--db", path, "--set", "bogus")
    assert result.rc == 2 and "--set 'bogus': expected key=value" in result.err
    result = run_replay("whatif", "--db", path, "--set", "colour=blue")
    assert result.rc == 2 and "--set colour=blue: unknown setting" in result.err


def test_a_client_that_gave_up_gives_up_again(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"
    arrivals = [Arrival(0, "r0", "A", 2_000), Arrival(10, "r1", "B", 100, cancel_after_ms=300)]
    record(path, group_config(("A", "B")), arrivals)
    traffic = _traffic(path)
    for policy in ("fifo", "serial"):
        figures = summarise(simulate(traffic, {"policy": policy}))
        assert "B" not in figures or figures["B"]["served"] == 0
        assert figures["TOTAL"]["loads"] == 1


def test_a_queue_timeout_what_if_rejects_the_requests_that_waited_too_long(abc_log: Path) -> None:
    traffic = _traffic(abc_log)
    recorded = summarise(traffic.recorded)
    timed = summarise(simulate(traffic, {"queue_timeout_ms": "1000"}))
    assert recorded["TOTAL"]["rejected"] == 0
    # B and C queue behind A's two requests (served 1000 ms each after a 500 ms load)
    assert timed["A"]["rejected"] == 0 and timed["B"]["rejected"] == 2
    assert timed["C"]["rejected"] == 2 and timed["TOTAL"]["served"] == 2


def test_recorded_ttl_overrides_are_replayed_in_the_what_if() -> None:
    """r0 asked for a 1 s ttl (configured: 60 s): A unloads before r1, which loads it again."""
    config = group_config(("A", "B"), ttl_ms=60_000).to_dict()

    def log(override: int | None) -> list[Envelope]:
        bodies = [
            (0, ConfigApplied(config_hash="c", schedule=config)),
            (1, RequestReceived(request_id="r0", model="A", ttl_override_ms=override)),
            (600, Dispatch(request_id="r0", model="A", instance=1)),
            (700, RequestFinished(request_id="r0", model="A", status=200)),
            (10_000, RequestReceived(request_id="r1", model="A")),
            (10_001, Dispatch(request_id="r1", model="A", instance=1)),
            (10_100, RequestFinished(request_id="r1", model="A", status=200)),
        ]
        return [Envelope(body=b, ts_ms=ts, seq=i + 1) for i, (ts, b) in enumerate(bodies)]

    with_override = extract_traffic(log(1_000))
    assert with_override.requests[0].ttl_override_ms == 1_000
    assert simulate(with_override, {}).loads == {"A": 2}
    assert simulate(extract_traffic(log(None)), {}).loads == {"A": 1}


def test_a_request_taken_back_counts_once_with_its_wait_to_the_last_dispatch() -> None:
    """r0 met a dead instance: it was taken back and served by the next one, 900 ms after it
    arrived. The recording counts one wait for it; the what-if says it does not repeat that."""
    config = group_config(("A",)).to_dict()
    bodies = [
        (0, ConfigApplied(config_hash="c", schedule=config)),
        (0, RequestReceived(request_id="r0", model="A")),
        (100, Dispatch(request_id="r0", model="A", instance=1)),
        (101, DispatchUnreachable(request_id="r0", model="A", instance=1, error="refused")),
        (900, Dispatch(request_id="r0", model="A", instance=2)),
        (1_000, RequestFinished(request_id="r0", model="A", status=200)),
    ]
    traffic = extract_traffic(
        [Envelope(body=b, ts_ms=ts, seq=i + 1) for i, (ts, b) in enumerate(bodies)]
    )
    assert dict(traffic.recorded.waits_ms) == {"A": [900]}
    assert traffic.requests[0].service_ms == 100, "served from its last dispatch"
    assert any("1 request(s) met an unreachable instance" in line for line in assumptions(traffic))


def _two_models_in_one_group(tmp_path: Path) -> Traffic:
    """A and B recorded in a non-exclusive group (both may run), placement off: no GPU sample."""
    config = dataclasses.replace(
        group_config(("A", "B")),
        planner=GroupPlanner(
            groups=(GroupRule(name="g", swap=False, exclusive=False, members=("A", "B")),)
        ),
    )
    arrivals = [Arrival(i * 1000, f"r{i}", "AB"[i % 2], 100) for i in range(6)]
    record(tmp_path / "groups.db", config, arrivals)
    with open_log(tmp_path / "groups.db") as reader:
        return extract_traffic(reader.iter_envelopes())


PLACE_BOTH = {"placement": "memory", "A.footprint_mb": "20000", "B.footprint_mb": "20000"}


def test_placement_on_a_log_without_a_gpu_sample_asks_for_the_gpus(tmp_path: Path) -> None:
    """A day recorded with placement off has no GPU sample: placing by memory then would change
    nothing, silently. It is refused with what to give; given the GPUs, memory decides (one
    24 GB GPU cannot hold both 20 GB models: they swap)."""
    traffic = _two_models_in_one_group(tmp_path)
    with pytest.raises(ReplayError, match="--set gpus="):
        simulate(traffic, PLACE_BOTH)
    together = summarise(simulate(traffic, {}))["TOTAL"]
    one_gpu = summarise(simulate(traffic, {**PLACE_BOTH, "gpus": "24000"}))["TOTAL"]
    two_gpus = summarise(simulate(traffic, {**PLACE_BOTH, "gpus": "24000,24000"}))["TOTAL"]
    assert together["loads"] == 2 and two_gpus["loads"] == 2
    assert one_gpu["loads"] > 2 and one_gpu["swaps"] > 0
    with pytest.raises(ReplayError, match="--set gpus=big"):
        simulate(traffic, {**PLACE_BOTH, "gpus": "big"})
