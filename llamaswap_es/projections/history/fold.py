"""From events to history rows: the pure part of the history sink.

`HistoryFold.step(envelope)` returns what one committed envelope adds to the history database:
a request row (the activity fold's row, so the fleet's history and the node's own `activity`
table always agree) and/or a decision row (a swap, load, ready, failed start, stop, crash). Its
state is plain JSON, saved in the shared database with the node's checkpoint, so the sink
continues exactly where the database says it stopped, whichever process wrote last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llamaswap_es.events.types import (
    Envelope,
    ProcessExited,
    ProcessReady,
    ProcessStartFailed,
    ProcessStopped,
    StartProcess,
    StopProcess,
    SwapPlanned,
)
from llamaswap_es.projections.activity_fold import ActivityFold

Row = dict[str, Any]


def utc_day(ts_ms: int) -> str:
    """'YYYY-MM-DD' of a timestamp in UTC (the `day` column)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


def _instance_key(model: str, instance: int) -> str:
    return f"{instance}:{model}"


@dataclass(slots=True)
class DecisionFold:
    """Loads, stops and failures as rows; remembers when each load or stop began (JSON state)."""

    loading: dict[str, int] = field(default_factory=dict)
    """`instance:model` → when its StartProcess was decided (ts_ms)."""
    stopping: dict[str, int] = field(default_factory=dict)
    """`instance:model` → when its StopProcess was decided (ts_ms)."""

    def to_state(self) -> dict[str, Any]:
        return {"loading": dict(sorted(self.loading.items())),
                "stopping": dict(sorted(self.stopping.items()))}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DecisionFold:
        return cls(dict(state.get("loading", {})), dict(state.get("stopping", {})))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, int, int]]) -> DecisionFold:
        """The state after the rows it wrote, `(kind, model_id, instance, ts_ms)` in seq order.

        The state is exactly what the rows record (a load or stop begins at its row's time and
        ends at the row that closes it), so a log whose older events retention pruned can be
        folded again from where it starts without losing the durations of loads and stops
        that began before that (`rebuild-projections`)."""
        fold = cls()
        for kind, model, instance, ts_ms in rows:
            key = _instance_key(model, instance)
            if kind == "load":
                fold.loading[key] = ts_ms
            elif kind in ("ready", "start_failed", "crash"):
                fold.loading.pop(key, None)
            elif kind == "stop":
                fold.stopping[key] = ts_ms
            elif kind == "stopped":
                fold.stopping.pop(key, None)
        return fold

    def step(self, env: Envelope) -> Row | None:
        body = env.body
        if isinstance(body, SwapPlanned):
            return _decision(env, "swap", body.model, reason=body.rule, detail=",".join(body.evict))
        if isinstance(body, StartProcess):
            self.loading[_instance_key(body.model, body.instance)] = env.ts_ms
            return _decision(env, "load", body.model, body.instance, reason=body.reason)
        if isinstance(body, ProcessReady):
            began = self.loading.pop(_instance_key(body.model, body.instance), None)
            took = None if began is None else env.ts_ms - began
            return _decision(env, "ready", body.model, body.instance, duration_ms=took)
        if isinstance(body, ProcessStartFailed):
            began = self.loading.pop(_instance_key(body.model, body.instance), None)
            took = None if began is None else env.ts_ms - began
            return _decision(
                env, "start_failed", body.model, body.instance, detail=body.error, duration_ms=took
            )
        if isinstance(body, StopProcess):
            self.stopping[_instance_key(body.model, body.instance)] = env.ts_ms
            return _decision(env, "stop", body.model, body.instance, reason=body.reason)
        if isinstance(body, ProcessStopped):
            began = self.stopping.pop(_instance_key(body.model, body.instance), None)
            took = None if began is None else env.ts_ms - began
            detail = "forced" if body.forced else ""
            return _decision(
                env, "stopped", body.model, body.instance, detail=detail, duration_ms=took
            )
        if isinstance(body, ProcessExited):
            self.loading.pop(_instance_key(body.model, body.instance), None)
            if body.signal is not None:
                detail = f"signal {body.signal}"
            else:
                detail = f"exit code {body.exit_code}" if body.exit_code is not None else ""
            return _decision(env, "crash", body.model, body.instance, detail=detail)
        return None


def _decision(
    env: Envelope,
    kind: str,
    model: str,
    instance: int = 0,
    *,
    reason: str = "",
    detail: str = "",
    duration_ms: int | None = None,
) -> Row:
    return {
        "seq": env.seq, "day": utc_day(env.ts_ms), "ts_ms": env.ts_ms, "kind": kind,
        "model_id": model, "instance": instance, "reason": reason, "detail": detail,
        "duration_ms": duration_ms,
    }  # fmt: skip


@dataclass(slots=True)
class HistoryFold:
    """The activity fold and the decision fold, stepped together over one node's log."""

    activity: ActivityFold = field(default_factory=ActivityFold)
    decisions: DecisionFold = field(default_factory=DecisionFold)

    def to_state(self) -> dict[str, Any]:
        return {"activity": self.activity.to_state(), "decisions": self.decisions.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HistoryFold:
        return cls(
            ActivityFold.from_state(state.get("activity", {})),
            DecisionFold.from_state(state.get("decisions", {})),
        )

    def step(self, env: Envelope) -> tuple[Row | None, Row | None]:
        """(request row, decision row) that `env` adds; either may be None."""
        row = self.activity.step(env)
        request = None
        if row is not None:
            request = {k: v for k, v in row.items() if k != "ts_created"}
            request["day"] = utc_day(row["ts_ms"])
        return request, self.decisions.step(env)
