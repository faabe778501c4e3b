"""A small real aiohttp server on loopback running route modules' `register_routes`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

Register = Callable[[web.UrlDispatcher, Any], None]


@asynccontextmanager
async def serve_routes(
    deps: Any, *modules: Register
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """Yield the base URL and a client session; everything is closed afterwards."""
    app = web.Application()
    for register in modules:
        register(app.router, deps)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            yield f"http://127.0.0.1:{port}", http
    finally:
        await runner.cleanup()
