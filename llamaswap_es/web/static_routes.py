"""The web UI's static files under `/ui/` (single-page app: unknown paths get index.html)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from llamaswap_es.resources import resource_dir
from llamaswap_es.web.errors import error_response

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def register(router: web.UrlDispatcher) -> None:
    router.add_get("/ui", ui_root)
    router.add_get("/ui/{path:.*}", ui_file)


async def ui_root(_: web.Request) -> web.StreamResponse:
    """`/ui` is the folder `/ui/` (its relative links resolve there)."""
    return web.Response(status=301, headers={"Location": "/ui/"})


async def ui_file(request: web.Request) -> web.StreamResponse:
    root = resource_dir("ui").resolve()
    relative = request.match_info["path"] or "index.html"
    if "\x00" in relative:  # `%00` decodes to a byte no file name holds (ValueError below)
        return error_response(request, 400, "the UI path contains a NUL byte (%00)")
    try:
        candidate = (root / relative).resolve()
        if not candidate.is_relative_to(root):
            raise web.HTTPNotFound()
        is_file = candidate.is_file()
    except OSError as exc:  # a name too long for the file system, say: no such file
        return error_response(request, 404, f"no such UI file: {exc.strerror}")
    if not is_file:
        if "." in Path(relative).name:  # a missing asset, not a page route
            raise web.HTTPNotFound()
        candidate = root / "index.html"
        if not candidate.is_file():
            return web.Response(
                text="The web UI is not installed in this build.", content_type="text/plain"
            )
    headers = {"Cache-Control": "no-cache"}
    return web.FileResponse(candidate, headers=headers)
