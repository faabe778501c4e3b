"""What the server says about its models: `/v1/models` (spec/api.md §8), `/running` (§9), and
the `modelStatus` payload of `/api/events` (§12)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from llamaswap_es.config.capabilities import aliases_of, capability_fields, has_capabilities
from llamaswap_es.projections.queue_view import model_status_payload
from llamaswap_es.web.context import CTX, AppContext
from llamaswap_es.web.cors import echo_origin

_CAPABILITY_META_KEYS = ("architecture", "capabilities", "supported_parameters", "context_length")


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/models", list_models)
    router.add_get("/models", list_models)
    router.add_get("/running", running)


def _status(loaded: bool) -> dict[str, str]:
    return {"value": "loaded" if loaded else "unloaded"}


def _model_record(
    ctx: AppContext, model_id: str, record_id: str, created: int, *, alias_of: str | None = None
) -> dict[str, Any]:
    model = ctx.config.models[model_id]
    record: dict[str, Any] = {"id": record_id, "object": "model", "created": created}
    record["owned_by"] = "llama-swap"
    if model.name.strip():
        record["name"] = model.name.strip()
    if model.description.strip():
        record["description"] = model.description.strip()
    caps = capability_fields(model)
    record.update(caps)
    meta = dict(model.metadata)
    if has_capabilities(model):
        for key in _CAPABILITY_META_KEYS:
            meta.pop(key, None)
    if alias_of is None:
        meta["type"] = "model"
        aliases = aliases_of(ctx.config, model_id)
        if aliases:
            meta["aliases"] = aliases
    else:
        meta["type"] = "alias"
        meta["modelID"] = alias_of
    meta_block: dict[str, Any] = {"llamaswap": meta}
    if model.capabilities.context > 0:
        meta_block["n_ctx"] = model.capabilities.context
    record["meta"] = meta_block
    record["status"] = _status(ctx.model_state(model_id) not in ("stopped", "failed"))
    return record


def model_list(ctx: AppContext) -> list[dict[str, Any]]:
    created = int(time.time())
    config = ctx.config
    records: list[dict[str, Any]] = []
    for model_id, model in config.models.items():
        if model.unlisted:
            continue
        records.append(_model_record(ctx, model_id, model_id, created))
        if config.include_aliases_in_list:
            for alias in aliases_of(ctx.config, model_id):
                records.append(_model_record(ctx, model_id, alias, created, alias_of=model_id))
    for fqn, (peer_id, peer_model) in sorted(ctx.resolver.fqns.items()):
        records.append(
            {
                "id": fqn,
                "object": "model",
                "created": created,
                "owned_by": "llama-swap",
                "name": f"{peer_id}: {peer_model}",
                "meta": {"llamaswap": {"type": "peer", "peerID": peer_id}},
                "status": _status(False),
            }
        )
    for selector_id, selector in config.selectors.items():
        if selector.unlisted:
            continue
        meta = dict(selector.metadata)
        meta.update(type="selector", strategy=selector.strategy, targets=list(selector.targets))
        if selector.strategy == "spillover":
            meta["spillover"] = selector.settings.spillover
        record: dict[str, Any] = {
            "id": selector_id,
            "object": "model",
            "created": created,
            "owned_by": "llama-swap",
        }
        if selector.name.strip():
            record["name"] = selector.name.strip()
        if selector.description.strip():
            record["description"] = selector.description.strip()
        record["meta"] = {"llamaswap": meta}
        targets = list(selector.targets)[:1] if selector.strategy == "pin" else selector.targets
        loaded = any(
            (local := ctx.resolver.local(t)) is not None
            and ctx.model_state(local) in ("ready", "starting")
            for t in targets
        )
        record["status"] = _status(loaded)
        records.append(record)
    known = {r["id"] for r in records} | set(config.models) | set(config.alias_table)
    if ctx.active_profile and ctx.active_profile in config.profiles:
        for pin, target in config.profiles[ctx.active_profile].pins.items():
            if target and pin not in known and ctx.resolver.peer(pin) is None:
                records.append(
                    {
                        "id": pin,
                        "object": "model",
                        "created": created,
                        "owned_by": "llama-swap",
                        "meta": {"llamaswap": {"type": "profile"}},
                        "status": _status(False),
                    }
                )
    records.sort(key=lambda r: r["id"])
    return records


async def list_models(request: web.Request) -> web.Response:
    response = web.json_response({"data": model_list(request.app[CTX]), "object": "list"})
    echo_origin(request, response)
    return response


async def running(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    entries = []
    for model_id in sorted(ctx.config.models):
        state = ctx.model_state(model_id)
        if state in ("stopped", "failed"):
            continue
        model = ctx.config.models[model_id]
        view = ctx.service.view.model(model_id)
        entries.append(
            {
                "model": model_id,
                "state": state,
                "cmd": model.cmd,
                "proxy": model.proxy,
                "ttl": _ttl_seconds(view.idle_ttl_ms if view is not None else None),
                "name": model.name,
                "description": model.description,
            }
        )
    return web.json_response({"running": entries})


def _ttl_seconds(idle_ttl_ms: int | None) -> int:
    """llama-swap's `ttl`: effective whole seconds, 0 meaning never. A request's override
    shorter than a second (or "as soon as idle") still shows as 1, never as "never"."""
    if idle_ttl_ms is None:
        return 0
    return max(1, -(-idle_ttl_ms // 1000))


def model_status(ctx: AppContext) -> list[dict[str, Any]]:
    """The `modelStatus` event payload for this server right now."""
    return model_status_payload(ctx.config, ctx.service.view)
