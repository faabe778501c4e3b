"""Real aiohttp servers on loopback for the web building-block tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from yarl import URL


class Served:
    """A running app: its base URL."""

    def __init__(self, base: URL):
        self.base = base

    def make_url(self, path: str) -> URL:
        return self.base.with_path(path)


@asynccontextmanager
async def serving(
    app: web.Application, *, handler_cancellation: bool = False
) -> AsyncIterator[Served]:
    """Run `app` on 127.0.0.1 (a real socket, free port) for the duration of the block.

    `handler_cancellation` defaults to aiohttp's production default (False), unlike
    aiohttp.test_utils.TestServer, which forces it on.
    """
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(URL(f"http://127.0.0.1:{port}"))
    finally:
        await runner.cleanup()


def app_with(
    routes: list[web.RouteDef], middlewares: list[Callable[..., object]] | None = None
) -> web.Application:
    app = web.Application(middlewares=middlewares or [])
    app.add_routes(routes)
    return app
