"""What the UI and the API show of the scheduler right now: the queue view and `modelStatus`.

Both are built on demand from the reducer's read-only views (`core.views`) and the config, so they
can never drift from what the scheduler decides; there is nothing to checkpoint or rebuild.
"""

from __future__ import annotations

from typing import Any

from llamaswap_es.config.capabilities import aliases_of, capability_fields
from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.core.memory import Footprint
from llamaswap_es.core.views import GpuView, SchedulerView

UI_STATES = {"failed": "stopped"}
"""Our states the llama-swap UI does not know, shown as the nearest one it does."""


def queue_payload(st: SchedulerView | None, now_ms: int) -> dict[str, Any]:
    """`GET /api/queue`: every model's state, depth and in-flight count, and every waiter."""
    if st is None:
        return {"models": [], "requests": [], "gpus": []}
    models = [
        {
            "id": v.model,
            "state": v.state,
            "queue_depth": v.queue_depth + v.waiting,
            "in_flight": v.in_flight,
            "swapping": v.swapping,
            **placement_fields(v.footprint, v.devices),
        }
        for v in st.models.values()
        if not v.retired or v.state != "stopped"
    ]
    requests = [
        {
            "request_id": r.request_id,
            "model": r.model,
            "phase": r.phase,
            "position": r.position,
            "waited_ms": max(0, now_ms - r.received_ms),
            "is_load": r.is_load,
        }
        for r in st.queue
    ]
    return {"models": models, "requests": requests, "gpus": [gpu_json(g) for g in st.gpus]}


def gpu_json(gpu: GpuView) -> dict[str, Any]:
    """One GPU of the newest memory sample (`gpus` in `/api/queue`; MiB)."""
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "total_mb": gpu.total_mb,
        "free_mb": gpu.free_mb,
        "sampled_free_mb": gpu.sampled_free_mb,
    }


def placement_fields(footprint: Footprint | None, devices: tuple[int, ...]) -> dict[str, Any]:
    """A model's `footprint` (when known) and `devices` (when placed), for the API and the UI."""
    out: dict[str, Any] = {}
    if footprint is not None:
        out["footprint"] = {
            "mb": footprint.mb,
            "source": footprint.source,
            "devices": footprint.span,
            "per_device_mb": list(footprint.per_device_mb),
            "need_mb": footprint.need_mb,
            "detail": footprint.detail,
        }
    if devices:
        out["devices"] = list(devices)
    return out


def model_status_payload(
    config: LlamaSwapConfig, st: SchedulerView | None
) -> list[dict[str, Any]]:
    """The `modelStatus` SSE payload (spec/api.md §12): local models by id, then peer models."""
    states = {v.model: v.state for v in st.models.values()} if st is not None else {}
    views = st.models if st is not None else {}
    shutting_down = st is not None and st.shutting_down
    out: list[dict[str, Any]] = []
    for model_id in sorted(config.models):
        model = config.models[model_id]
        state = UI_STATES.get(states.get(model_id, "stopped"), states.get(model_id, "stopped"))
        if shutting_down and state == "stopped":
            state = "shutdown"
        entry: dict[str, Any] = {
            "id": model_id,
            "name": model.name,
            "description": model.description,
            "state": state,
            "unlisted": model.unlisted,
            "peerID": "",
        }
        if states.get(model_id) == "failed":  # ours: its last start failed (the UI says why)
            entry["failed"] = True
        if (view := views.get(model_id)) is not None:  # ours: placement by GPU memory
            entry.update(placement_fields(view.footprint, view.devices))
        aliases = aliases_of(config, model_id)
        if aliases:
            entry["aliases"] = aliases
        fields = capability_fields(model)
        for key in ("capabilities", "context_length"):
            if key in fields:
                entry[key] = fields[key]
        out.append(entry)
    for peer_id in sorted(config.peers):
        for name in config.peers[peer_id].models:
            out.append(
                {
                    "id": f"{peer_id}/{name}",
                    "name": "",
                    "description": "",
                    "state": "",
                    "unlisted": False,
                    "peerID": peer_id,
                }
            )
    return out
