"""The web UI's static files under `/ui/` (single-page app: unknown paths get index.html)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from llamaswap_es.resources import resource_dir

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/ui", lambda _: web.Response(status=301, headers={"Location": "/ui/"}))
    router.add_get("/ui/{path:.*}", ui_file)


async def ui_file(request: web.Request) -> web.StreamResponse:
    root = resource_dir("ui").resolve()
    relative = request.match_info["path"] or "index.html"
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise web.HTTPNotFound()
    if not candidate.is_file():
        if "." in Path(relative).name:  # a missing asset, not a page route
            raise web.HTTPNotFound()
        candidate = root / "index.html"
        if not candidate.is_file():
            return web.Response(
                text="The web UI is not installed in this build.", content_type="text/plain"
            )
    headers = {"Cache-Control": "no-cache"}
    return web.FileResponse(candidate, headers=headers)
