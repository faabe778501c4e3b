"""Operations: health, redirects, unloads, version and profiles (spec/api.md §9, §10, §18)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from llamaswap_es.errors import StoreError
from llamaswap_es.events.types import ProfileActivated
from llamaswap_es.runtime.loop import LoopStoppedError
from llamaswap_es.web import json_body
from llamaswap_es.web.context import CTX
from llamaswap_es.web.errors import RequestError, error_response

log = logging.getLogger("llamaswap_es.web.ops")


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/health", health)
    router.add_get("/wol-health", health)
    router.add_get("/", _redirect_to("/ui"))
    router.add_get("/upstream", _redirect_to("/ui/models"))
    router.add_get("/favicon.ico", favicon)
    router.add_get("/unload", unload_all_text)
    router.add_post("/api/models/unload", unload_all_json)
    router.add_post("/api/models/unload/{model:.+}", unload_one)
    router.add_get("/api/version", version)
    router.add_get("/api/profiles", profiles)
    router.add_put("/api/profiles/active", set_active_profile)


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


def _redirect_to(location: str) -> Handler:
    """A handler that answers 302 to `location` (an async one: aiohttp wants coroutines)."""

    async def redirect(_: web.Request) -> web.StreamResponse:
        return _redirect(location)

    return redirect


def _ok_text() -> web.Response:
    return web.Response(text="OK", content_type="text/plain")


async def health(request: web.Request) -> web.Response:
    """llama-swap's `OK`, but only while it is true: 503 with the reasons when the run loop has
    stopped, is not turning, or cannot write the event log (runtime/loop_health.py)."""
    report = request.app[CTX].service.health.report()
    if report.ok:
        return _ok_text()
    return web.Response(
        status=503,
        text=f"unhealthy: {report.text()}\n",
        content_type="text/plain",
        headers={"Retry-After": "5"},
    )


async def favicon(_: web.Request) -> web.Response:
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
        '<rect width="16" height="16" rx="3" fill="#2563eb"/>'
        '<path d="M4 11V5l4 3 4-3v6" stroke="#fff" stroke-width="1.6" fill="none"/></svg>'
    )
    return web.Response(text=svg, content_type="image/svg+xml")


async def unload_all_text(request: web.Request) -> web.Response:
    await request.app[CTX].service.unload()
    return _ok_text()


async def unload_all_json(request: web.Request) -> web.Response:
    await request.app[CTX].service.unload()
    return web.json_response({"msg": "ok"})


async def unload_one(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["model"]
    model_id = ctx.resolver.local(name)
    if model_id is None:
        if ctx.resolver.peer(name) is not None:
            return error_response(request, 404, "no local server found for requested model")
        return error_response(request, 404, "model not found")
    await ctx.service.unload([model_id])
    return _ok_text()


async def version(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response(
        {"version": ctx.version, "commit": ctx.commit, "build_date": ctx.build_date}
    )


def _profiles_payload(request: web.Request) -> dict[str, object]:
    ctx = request.app[CTX]
    items = [
        {"id": name, "description": profile.description, "pins": dict(profile.pins)}
        for name, profile in sorted(ctx.config.profiles.items())
    ]
    return {"active": ctx.active_profile, "profiles": items}


async def profiles(request: web.Request) -> web.Response:
    return web.json_response(_profiles_payload(request))


async def set_active_profile(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        doc = json_body.parse(await request.read())
    except RequestError:
        return error_response(request, 400, "invalid profile request")
    if not isinstance(doc, dict) or "name" not in doc:
        return error_response(request, 400, "profile name is required")
    name = doc["name"]
    if name is not None and not isinstance(name, str):
        return error_response(request, 400, "profile name must be a string or null")
    if name in ("", "none"):
        name = None
    if name is not None and name not in ctx.config.profiles:
        return error_response(request, 404, f'profile "{name}" not found')
    if name != ctx.active_profile:
        loop = ctx.service.door
        assert loop is not None
        try:  # recorded before it applies: the log says which profile each request met
            loop.check_capacity(f"activating profile {name!r}")
            loop.submit(ProfileActivated(name=name, origin="api"))
            await loop.flush()
        except StoreError as exc:  # the log cannot be written, or too much is waiting
            return error_response(request, 503, str(exc), headers={"Retry-After": "5"})
        except LoopStoppedError:
            return error_response(request, 503, "the server is shutting down")
        log.info("active profile is now %s", name or "none")
        ctx.hub.publish("profileChanged", {"active": name})
        from llamaswap_es.web.listing import model_status

        ctx.hub.publish("modelStatus", model_status(ctx))
    return web.json_response({"active": ctx.active_profile})
