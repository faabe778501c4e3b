"""The model-dispatched routes (spec/api.md §3, §6) and `/upstream/<model>/…` passthrough (§21)."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from llamaswap_es.errors import InputRefusedError
from llamaswap_es.events.types import Reject
from llamaswap_es.web import request_ids
from llamaswap_es.web.boundary import check_request
from llamaswap_es.web.context import CTX, AppContext
from llamaswap_es.web.dispatch import (
    DOOR_REFUSALS,
    LocalRequest,
    is_json,
    local_filters,
    refused_response,
    serve_local,
)
from llamaswap_es.web.errors import RequestError, error_response
from llamaswap_es.web.filters import RequestFilters, filter_json
from llamaswap_es.web.json_body import JsonBody
from llamaswap_es.web.keep_alive import ttl_override_ms
from llamaswap_es.web.model_selection import (
    ModelSelection,
    read_body,
    select_model,
    split_upstream_path,
)
from llamaswap_es.web.naming import (
    pinned_name,
    rewrite_model_in_multipart,
    rewrite_model_in_query,
    strip_route_prefix,
)
from llamaswap_es.web.peer_dispatch import serve_peer
from llamaswap_es.web.request_priority import request_priority
from llamaswap_es.web.selector_choice import choose, release
from llamaswap_es.web.websocket_tunnel import TunnelTimeouts, is_websocket_upgrade, tunnel

JSON_ROUTES = (
    "/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/messages",
    "/v1/messages/count_tokens", "/v1/embeddings", "/reranking", "/rerank", "/v1/rerank",
    "/v1/reranking", "/infill", "/completion", "/v1/audio/speech", "/v1/audio/voices",
    "/v1/images/generations", "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/audioapi/v1/tasks/run",
    "/v/chat/completions", "/v/responses", "/v/completions", "/v/messages",
    "/v/messages/count_tokens", "/v/embeddings", "/v/rerank", "/v/reranking",
)  # fmt: skip
MULTIPART_ROUTES = ("/v1/audio/transcriptions", "/v1/images/edits")
QUERY_ROUTES = ("/v1/audio/voices", "/sdapi/v1/loras", "/props")
MODEL_DISPATCHED = frozenset(JSON_ROUTES + MULTIPART_ROUTES + QUERY_ROUTES)

DEFAULT_IGNORE_PATHS = (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)


def register(router: web.UrlDispatcher) -> None:
    for path in JSON_ROUTES + MULTIPART_ROUTES:
        router.add_post(path, model_request)
    for path in QUERY_ROUTES:
        router.add_get(path, model_request)
    router.add_route("*", "/upstream/{tail:.*}", upstream_request)
    router.add_route("*", "/comfyui", comfyui_redirect)
    router.add_route("*", "/comfyui/{tail:.*}", comfyui_request)


def _metadata(
    ctx: AppContext, model_id: str, session: dict[str, str], priority: int | None = None
) -> dict[str, str]:
    schedule = ctx.service.schedule.models.get(model_id)
    if priority is None:
        priority = schedule.priority if schedule else 0
    metadata = {"fifo_priority": str(priority)}
    metadata.update(session)
    return metadata


def _checked(ctx: AppContext, request: web.BaseRequest) -> dict[str, str]:
    """What the client says about itself (its session id from the first configured header it
    sent, its own `X-Request-ID`: web/request_ids.py), once what the request will record has
    passed the boundary (a `RequestError` 400 otherwise, naming the header or the path)."""
    return {
        **request_ids.client_metadata(request),
        **check_request(request, ctx.config.ui.activity.session_id),
    }


async def model_request(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    session = _checked(ctx, request)
    selection = await select_model(request, body_limit=ctx.body_limit)
    body: bytes | None = selection.body if request.method != "GET" else None
    # A JSON body is parsed once (in select_model): renames and filters edit that document and
    # it is serialised once, below, as it is forwarded (web/json_body.py).
    parsed = selection.json if body is not None and is_json(request) else None
    query = dict(request.query)
    raw_path, _, raw_query = request.raw_path.partition("?")

    def renamed(name: str) -> None:
        nonlocal body, raw_query
        if request.method == "GET" or selection.source == "query":
            raw_query = rewrite_model_in_query(query, name)
        elif parsed is not None:
            parsed.set_model(name)
        elif body is not None and selection.source == "multipart":
            body = rewrite_model_in_multipart(body, request.headers.get("Content-Type", ""), name)

    requested = pinned_name(ctx, selection.model) if selection.model else ""
    if requested != selection.model:
        renamed(requested)
    if not requested:
        return error_response(request, 404, "no model id could be identified")

    if requested not in ctx.config.selectors:
        return await _serve_named(request, ctx, selection, requested, body, parsed, raw_path,
                                  raw_query, session)  # fmt: skip
    # A selector: the scheduler chooses the target (its decision is in the log), then the
    # request is renamed to it (its filters apply) and served under the choice's id.
    door = ctx.service.door
    assert door is not None
    selector_id = requested
    request_id = ctx.ids.new_id()
    request_ids.assign(request, request_id, selector_id)
    try:
        ticket, choice = await choose(
            door, request_id, selector_id,
            path=strip_route_prefix(raw_path), method=request.method,
        )  # fmt: skip
    except DOOR_REFUSALS as exc:
        return refused_response(request, ctx, exc)
    except InputRefusedError as exc:
        return error_response(request, exc.status, str(exc))
    if isinstance(choice, Reject):
        return error_response(request, choice.status, choice.message)
    try:
        renamed(choice.target)  # inside: a rewrite that fails still releases the reservation
        return await _serve_named(
            request, ctx, selection, choice.target, body, parsed, raw_path, raw_query, session,
            selector=selector_id, request_id=request_id,
        )  # fmt: skip
    finally:
        # A choice that became a local request ends with it; any other (a peer's model, or a
        # request refused before it was submitted) releases its target's reservation here.
        release(door, ticket, choice)


async def _serve_named(
    request: web.Request,
    ctx: AppContext,
    selection: ModelSelection,
    requested: str,
    body: bytes | None,
    parsed: JsonBody | None,
    raw_path: str,
    raw_query: str,
    session: dict[str, str],
    *,
    selector: str | None = None,
    request_id: str | None = None,
) -> web.StreamResponse:
    """Serve a request for a concrete name (not a selector): a local model or a peer's.

    `body` (or `parsed`, the JSON document edited in place and serialised once here) and
    `raw_query` already carry `requested`; `selector` and `request_id` are set when a
    selector chose it (the activity row names the selector; the request keeps the choice's id).
    """
    path_qs = strip_route_prefix(raw_path) + (f"?{raw_query}" if raw_query else "")
    local = ctx.resolver.local(requested)
    if local is not None and local in ctx.service.schedule.models:
        try:  # read from the body as the client sent it, before filters; forwarded unchanged
            ttl_override = ttl_override_ms(selection.ttl_fields)
            priority = request_priority(request.headers)
        except RequestError as err:
            return err.response(request)
        if parsed is not None:
            filter_json(parsed, requested, local_filters(ctx, local))
            body = parsed.to_bytes()
        elif body is not None and selection.source == "multipart":
            use_name = ctx.config.models[local].use_model_name
            if use_name:  # llama-swap's form filter: only useModelName applies to forms
                body = rewrite_model_in_multipart(
                    body, request.headers.get("Content-Type", ""), use_name
                )
        metadata = _metadata(ctx, local, session, priority)
        if selector is not None:
            metadata["selector"] = selector
        job = LocalRequest(
            model_id=local,
            requested=requested,
            upstream_path_qs=path_qs,
            body=body,
            stream=selection.stream,
            loading_allowed=not raw_path.startswith("/v/"),
            metadata=metadata,
            ttl_override_ms=ttl_override,
            priority=priority,
            request_id=request_id,
        )
        return await serve_local(request, ctx, job)

    fqn = ctx.resolver.peer(requested)
    if fqn is None:
        return error_response(request, 404, "no router for requested model")
    peer_id, peer_model = ctx.resolver.fqns[fqn]
    if parsed is not None:
        peer_filters = ctx.config.peers[peer_id].filters
        filters = ctx.filters(
            "peer:" + peer_id,
            lambda: RequestFilters.from_plain(
                strip_params=peer_filters.strip_params,
                set_params=peer_filters.set_params,
                set_params_by_id=peer_filters.set_params_by_id,
            ),
        )
        filter_json(parsed, requested, filters)
        if requested != peer_model:
            parsed.set_model(peer_model)
        body = parsed.to_bytes()
    metadata = dict(session)
    if selector is not None:
        metadata["selector"] = selector
    return await serve_peer(
        request, ctx, fqn, requested, body, path_qs,
        stream=selection.stream, metadata=metadata, request_id=request_id,
    )  # fmt: skip


def _pinned_upstream_path(ctx: AppContext, rest: str) -> str:
    """A profile pin rewrites the longest matching leading `<pin>` or `<pin>/` of the path."""
    if ctx.active_profile is None:
        return rest
    profile = ctx.config.profiles.get(ctx.active_profile)
    if profile is None:
        return rest
    for pin in sorted(profile.pins, key=len, reverse=True):
        if rest == pin or rest.startswith(pin + "/"):
            target = profile.pins[pin] or ""
            return (quote(target, safe="/") + rest[len(pin) :]) if target else ""
    return rest


async def upstream_request(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    session = _checked(ctx, request)
    raw_path, _, raw_query = request.raw_path.partition("?")
    rest = _pinned_upstream_path(ctx, raw_path[len("/upstream/") :])
    match = (
        split_upstream_path(rest, lambda name: ctx.resolver.resolve(name) is not None)
        if rest
        else None
    )
    if match is None:
        return error_response(request, 404, "model not found")
    name, remainder = match
    if remainder == "":
        location = f"/upstream/{quote(name, safe='/')}/" + (f"?{raw_query}" if raw_query else "")
        status = 301 if request.method in ("GET", "HEAD") else 308
        return web.Response(status=status, headers={"Location": location})
    path_qs = remainder + (f"?{raw_query}" if raw_query else "")
    body = await read_body(request, ctx.body_limit) if request.can_read_body else None

    local = ctx.resolver.local(name)
    if local is not None and local in ctx.service.schedule.models:
        if is_websocket_upgrade(request) and ctx.config.models[local].compat.ignore_websockets:
            return await _ignored_websocket(request, ctx, local, path_qs)
        patterns = ctx.config.upstream.ignore_paths or list(DEFAULT_IGNORE_PATHS)
        if ctx.model_state(local) != "ready" and any(re.search(p, remainder) for p in patterns):
            return error_response(
                request, 409, f"model {local} is not loaded; path matches upstream.ignorePaths"
            )
        job = LocalRequest(
            model_id=local,
            requested=name,
            upstream_path_qs=path_qs,
            body=body,
            stream=False,
            loading_allowed=False,
            metadata=_metadata(ctx, local, session),
            websocket=is_websocket_upgrade(request),
        )
        return await serve_local(request, ctx, job)
    fqn = ctx.resolver.peer(name)
    if fqn is None:
        return error_response(request, 404, f"no router for model {name}")
    return await serve_peer(request, ctx, fqn, name, body, path_qs, metadata=dict(session))


async def _ignored_websocket(
    request: web.Request, ctx: AppContext, model_id: str, path_qs: str
) -> web.StreamResponse:
    """`compat.ignoreWebsockets`: no scheduling, no in-flight count; only while ready."""
    executor = ctx.service.executor
    address = executor.address(model_id) if executor is not None else None
    if ctx.model_state(model_id) != "ready" or address is None:
        return error_response(
            request,
            409,
            f"model {model_id} is not loaded; ignored websocket requests cannot start it",
        )
    timeouts = TunnelTimeouts.from_settings(ctx.config.llamaswap_es.hang_detection)
    return await tunnel(
        request, ctx.session, address[1], path_qs, model=model_id, timeouts=timeouts
    )


COMFYUI_MODEL = "comfyui_auto"


async def comfyui_redirect(request: web.Request) -> web.Response:
    query = request.raw_path.partition("?")[2]
    location = "/comfyui/" + (f"?{query}" if query else "")
    status = 301 if request.method in ("GET", "HEAD") else 308
    return web.Response(status=status, headers={"Location": location})


async def comfyui_request(request: web.Request) -> web.StreamResponse:
    """ComfyUI behind `/comfyui/` (spec/api.md §7): only the root may start the model."""
    ctx = request.app[CTX]
    if COMFYUI_MODEL not in ctx.service.schedule.models:
        return error_response(request, 404, f"local model {COMFYUI_MODEL} not found")
    _checked(ctx, request)  # its events record the path
    raw_path, _, raw_query = request.raw_path.partition("?")
    rest = raw_path[len("/comfyui") :] or "/"
    path_qs = rest + (f"?{raw_query}" if raw_query else "")
    websocket = is_websocket_upgrade(request)
    if websocket and ctx.config.models[COMFYUI_MODEL].compat.ignore_websockets:
        return await _ignored_websocket(request, ctx, COMFYUI_MODEL, path_qs)
    if rest != "/" and ctx.model_state(COMFYUI_MODEL) != "ready":
        return error_response(
            request, 409, f"model {COMFYUI_MODEL} is not loaded; only /comfyui/ can start it"
        )
    body = await read_body(request, ctx.body_limit) if request.can_read_body else None
    job = LocalRequest(
        model_id=COMFYUI_MODEL,
        requested=COMFYUI_MODEL,
        upstream_path_qs=path_qs,
        body=body,
        stream=False,
        loading_allowed=False,
        websocket=websocket,
    )
    return await serve_local(request, ctx, job)
