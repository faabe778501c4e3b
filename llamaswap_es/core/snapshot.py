"""Snapshots of the reducer state: a stable encoding, its digest, and the way back.

A snapshot is a cache (the log is the truth): `restore(snapshot(s))` decides exactly like `s`
on any tail of inputs, and `digest` is the same for equal states on any machine and run. The
encoding is canonical JSON (sorted keys, no spaces, ASCII), with every collection that has an
order kept in that order and every unordered one sorted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llamaswap_es.config.schedule import SchedulerConfig
from llamaswap_es.core.control import install_config
from llamaswap_es.core.memory import Footprint, GpuSample
from llamaswap_es.core.reducer import REDUCER_VERSION
from llamaswap_es.core.state import ModelProc, Request, SchedulerState, Swap

FORMAT = 1


class SnapshotError(ValueError):
    """A snapshot cannot be restored (another reducer version, or damaged)."""


def state_to_dict(st: SchedulerState) -> dict[str, Any]:
    """The state as plain JSON-ready data (what `snapshot` encodes)."""
    return {
        "format": FORMAT,
        "reducer_version": REDUCER_VERSION,
        "config": None if st.config is None else st.config.to_dict(),
        "config_hash": st.config_hash,
        "config_error": st.config_error,
        "seq": st.seq,
        "now_ms": st.now_ms,
        "shutting_down": st.shutting_down,
        "in_flight_total": st.in_flight_total,
        "models": [st.models[m].to_dict() for m in sorted(st.models)],
        "requests": [st.requests[r].to_dict() for r in sorted(st.requests)],
        "queue": list(st.queue),
        "swaps": [s.to_dict() for s in st.swaps_in_order()],
        "timers": [[t, st.timers[t]] for t in sorted(st.timers)],
        "active_profile": st.active_profile,
        "gpu": None if st.gpu is None else st.gpu.to_dict(),
        "footprints": {
            model: {source: facts[source].to_dict() for source in sorted(facts)}
            for model, facts in sorted(st.footprints.items())
        },
    }


def snapshot(st: SchedulerState) -> bytes:
    """A canonical encoding of the state (same state, same bytes)."""
    return json.dumps(state_to_dict(st), sort_keys=True, separators=(",", ":")).encode("ascii")


def digest(st: SchedulerState) -> str:
    """SHA-256 of the snapshot: equal states have equal digests on any machine."""
    return hashlib.sha256(snapshot(st)).hexdigest()


def restore(data: bytes) -> SchedulerState:
    """The state a snapshot was taken of. Raises SnapshotError naming what does not fit."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"snapshot is not valid JSON: {exc}") from None
    if raw.get("reducer_version") != REDUCER_VERSION or raw.get("format") != FORMAT:
        raise SnapshotError(
            f"snapshot was taken by reducer {raw.get('reducer_version')!r} "
            f"(format {raw.get('format')!r}); this is {REDUCER_VERSION!r} (format {FORMAT}): "
            "rebuild the state from the log instead"
        )
    try:
        return _build(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot is damaged: {exc!r}") from None


def _build(raw: dict[str, Any]) -> SchedulerState:
    st = SchedulerState()
    if raw["config"] is not None:
        install_config(st, SchedulerConfig.from_dict(raw["config"]))
    st.config_hash = raw["config_hash"]
    st.config_error = raw["config_error"]
    st.seq = raw["seq"]
    st.now_ms = raw["now_ms"]
    st.shutting_down = raw["shutting_down"]
    st.active_profile = raw.get("active_profile")  # absent in snapshots from before it
    st.in_flight_total = raw["in_flight_total"]
    for data in raw["models"]:
        proc = ModelProc.from_dict(data)
        st.models[proc.model] = proc
    for data in raw["requests"]:
        req = Request.from_dict(data)
        st.requests[req.request_id] = req
    st.queue = list(raw["queue"])
    for data in raw["swaps"]:
        swap = Swap.from_dict(data)
        st.swaps[swap.model] = swap
    st.timers = {t: at for t, at in raw["timers"]}
    gpu = raw.get("gpu")
    st.gpu = None if gpu is None else GpuSample.from_dict(gpu)
    st.footprints = {
        model: {source: Footprint.from_dict(fact) for source, fact in facts.items()}
        for model, facts in raw.get("footprints", {}).items()
    }
    st.touch_processes()
    return st
