"""The yardstick of `bench/run.py proxy`: a minimal aiohttp pass-through with no log.

`python -m bench.yardstick_proxy --port P --upstream http://127.0.0.1:U` listens on loopback and
sends every request to the upstream as it came (method, path and query, headers minus hop-by-hop,
the whole body), streaming the answer back chunk by chunk. No scheduling, no events, no captures,
no access log: what any Python proxy on aiohttp costs. It runs on uvloop when uvloop is installed,
as the server does, so the comparison is of the work done, not of the event loop. It prints
`listening on …` once it is ready (the bench waits for that line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
     "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)  # fmt: skip
"""Not passed on (content-length: aiohttp sets its own from the body it sends)."""


def _passed_on(headers: CIMultiDict[str] | object) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():  # type: ignore[attr-defined]
        if name.lower() not in HOP_BY_HOP:
            out.add(name, value)
    return out


def make_app(upstream: str) -> web.Application:
    """One catch-all route that forwards to `upstream` through one shared client session."""
    app = web.Application()
    sessions: list[aiohttp.ClientSession] = []

    async def open_session(_: web.Application) -> None:
        sessions.append(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        )

    async def close_session(_: web.Application) -> None:
        await sessions[0].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with sessions[0].request(
            request.method,
            upstream + request.raw_path,
            data=body,
            headers=_passed_on(request.headers),
            allow_redirects=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status, headers=_passed_on(upstream_response.headers)
            )
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream.rstrip("/")), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.yardstick_proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:5800")
    args = parser.parse_args()
    run = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run = uvloop.run
    run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
