"""Plain-text pieces shared by the commands: local times, one-line event summaries, the state.

Summaries are generic (type, then the payload's non-empty fields as `name=value`), so a new event
type shows up readably without a change here; the timeline has its own, richer sentences.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from llamaswap_es.core.state import SchedulerState
from llamaswap_es.core.views import model_views, queue_view
from llamaswap_es.events import codec
from llamaswap_es.events.types import Envelope


def local_time(ts_ms: int) -> str:
    """`YYYY-MM-DD HH:MM:SS.mmm` in the machine's local time zone."""
    moment = datetime.fromtimestamp(ts_ms / 1000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts_ms % 1000:03d}"


def summary(env: Envelope) -> str:
    """`Type field=value …` with empty fields left out."""
    parts = [env.type]
    for name, value in codec.to_payload(env.body).items():
        if value in ("", None, [], {}, ()) or value is False:
            continue
        parts.append(f"{name}={_value_text(value)}")
    return " ".join(parts)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and '"' not in value else json.dumps(value)
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def envelope_line(env: Envelope, marker: str = " ") -> str:
    """`> seq  time  summary  (cause N)`: one row of a listing around a seq."""
    cause = f"  (cause {env.cause})" if env.cause is not None else ""
    return f"{marker} {env.seq:>8}  {local_time(env.ts_ms)}  {summary(env)}{cause}"


def state_json(st: SchedulerState) -> dict[str, Any]:
    """The parts of the reducer state a person reads to understand a decision."""
    return {
        "policy": st.config.policy if st.config is not None else None,
        "running": list(st.running_models()),
        "models": [
            {
                "model": v.model,
                "state": v.state,
                "instance": v.instance,
                "in_flight": v.in_flight,
                "queued": v.queue_depth,
                "waiting_on_swap": v.waiting,
                "reserved": v.reserved,
                "concurrency_limit": st.models[v.model].schedule.concurrency_limit,
                "ready_at_ms": v.ready_at_ms,
                "swapping": v.swapping,
                "retired": v.retired,
            }
            for v in model_views(st)
        ],
        "queue": [
            {
                "request_id": r.request_id,
                "model": r.model,
                "phase": r.phase,
                "position": r.position,
                "received_ms": r.received_ms,
            }
            for r in queue_view(st)
            if not r.is_load
        ],
        "swaps": [
            {"model": s.model, "evict": list(s.evict), "phase": s.phase, "waiters": s.waiters}
            for s in st.swaps_in_order()
        ],
        "timers": {t: st.timers[t] for t in sorted(st.timers)},
        "shutting_down": st.shutting_down,
    }


def state_text(st: SchedulerState, indent: str = "  ") -> str:
    """The state as a few indented lines: models, queue, swaps, timers."""
    data = state_json(st)
    if st.config is None:
        return f"{indent}(no configuration applied yet: every request is a 404)"
    lines = [f"{indent}policy {data['policy']}; running: {', '.join(data['running']) or 'none'}"]
    for m in data["models"]:
        extra = []
        if m["swapping"]:
            extra.append("swap in progress")
        if m["retired"]:
            extra.append("retired")
        lines.append(
            f"{indent}model {m['model']}: {m['state']} (instance {m['instance']}), "
            f"{m['in_flight']} in flight, {m['queued']} queued, {m['waiting_on_swap']} waiting on "
            f"its swap, {m['reserved']}/{m['concurrency_limit']} reserved"
            + (f" [{', '.join(extra)}]" if extra else "")
        )
    if data["queue"]:
        for r in data["queue"]:
            where = (
                f"queue #{r['position']}"
                if r["position"] is not None
                else f"waiting on the swap to {r['model']}"
            )
            lines.append(
                f"{indent}{where}: {r['request_id']} for {r['model']} "
                f"(since {local_time(r['received_ms'])})"
            )
    else:
        lines.append(f"{indent}queue: empty")
    for s in data["swaps"]:
        lines.append(
            f"{indent}swap to {s['model']}: {s['phase']}, evicting "
            f"{', '.join(s['evict']) or 'nothing'}; waiters {', '.join(s['waiters']) or 'none'}"
        )
    for timer, at in data["timers"].items():
        lines.append(f"{indent}timer {timer} at {local_time(at)}")
    if data["shutting_down"]:
        lines.append(f"{indent}shutting down")
    return "\n".join(lines)
