"""The wol-proxy's HTTP side: proxy while the server is up, wake it and hold requests while not.

Per request, while the llama-swap server is up (its event stream is open) the request is
forwarded as it is, streaming both ways. While it is down:

* `/api/events…` is answered 204 (a browser's event source stops retrying) and never wakes it;
* a *skip path* (`--skip-path`; by default `/favicon.ico`, `/health`, `/wol-health`,
  `/metrics`) is answered 503 and never wakes it: a monitor or a scraper must not keep a GPU
  server awake;
* `GET /` and `GET /ui/…` wake it and get a small page that reloads itself until it is up;
* anything else wakes it and is held until the server is up, then forwarded; a server that does
  not come up within `--timeout` gets the request a 504 that says what was tried.

`GET /status` is the proxy's own: `status: ready|not ready`, `failures: N` as llama-swap's
wol-proxy writes them, then our counts of wake-ups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from llamaswap_es.web.boundary import shown_text
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.forwarder import Forwarded, ForwardTimeouts, forward
from llamaswap_es.wol.upstream_watch import UpstreamWatch
from llamaswap_es.wol.waker import Waker

log = logging.getLogger("llamaswap_es.wol")

DEFAULT_SKIP_PATHS = ("/favicon.ico", "/health", "/wol-health", "/metrics")
EVENTS_PATH = "/api/events"
MAX_BODY_BYTES = 256 * 1024 * 1024
"""A held request's body waits in memory until the server is up."""
FORWARD_TIMEOUTS = ForwardTimeouts(connect_s=5.0, response_header_s=None)
"""A machine that went to sleep is unreachable, not slow: give up connecting after 5 s (then
wake it and hold the request); a model may think for minutes before its first byte."""

WAKING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh_s}">
<title>Waking up llama-swap</title></head>
<body><h1>Waking up the llama-swap server&hellip;</h1>
<p>A wake-on-LAN packet was sent; this page reloads every {refresh_s} s until the server
answers.</p></body></html>
"""
WAKING_PAGE_REFRESH_S = 2


@dataclass(frozen=True)
class ProxySettings:
    upstream: str
    """The llama-swap server's base URL, such as `http://192.168.1.13:8080`."""
    timeout_s: float
    """How long a held request waits for the server to come up."""
    skip_paths: tuple[str, ...] = DEFAULT_SKIP_PATHS


class WolProxy:
    """The request handler and `/status`; the watch and the waker are owned by the caller."""

    def __init__(
        self,
        settings: ProxySettings,
        watch: UpstreamWatch,
        waker: Waker,
        session: aiohttp.ClientSession,
    ) -> None:
        self._settings = settings
        self._watch = watch
        self._waker = waker
        self._session = session
        self.timeouts = 0
        """Held requests answered 504 because the server did not come up in time."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/status", self.status)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def status(self, request: web.Request) -> web.Response:
        counts = self._waker.counts
        lines = [
            f"status: {'ready' if self._watch.ready else 'not ready'}",
            f"failures: {self._watch.failures}",
            f"last_failure: {self._watch.last_failure or '-'}",
            f"wakeups_sent: {counts.sent}",
            f"wakeups_coalesced: {counts.coalesced}",
            f"wakeup_send_errors: {counts.send_errors}",
            f"last_wakeup_cause: {counts.last_cause or '-'}",
            f"held_timeouts: {self.timeouts}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.read() if request.can_read_body else None
        # As sent (still percent-encoded) and bounded: a `%0a` in a path cannot forge a log line.
        shown = shown_text(request.raw_path.partition("?")[0])
        cause = f"{request.method} {shown} from {request.remote or '?'}"
        if self._watch.ready:
            forwarded = await self._forward(request, body)
            if not forwarded.result.unreachable:
                return forwarded.response
            # The error names the URL: without its query string, which is never logged.
            error = forwarded.result.error or "unreachable"
            reason = error.replace(request.raw_path, path)
            self._watch.lost(reason)
            cause += f" (the server stopped answering: {reason})"
        if path.startswith(EVENTS_PATH):
            log.debug("not waking for %s", cause)
            return web.Response(status=204)
        if self._skips(path):
            log.info("not waking for a skip path: %s", cause)
            return error_response(
                request, 503,
                f"wol-proxy: {self._settings.upstream} is asleep and {path} does not wake it "
                "(a skip path)",
                headers={"Retry-After": "60"},
            )  # fmt: skip
        self._waker.wake(cause)
        self._watch.hurry(self._settings.timeout_s)
        if request.method in ("GET", "HEAD") and (path == "/" or path.startswith("/ui/")):
            page = WAKING_PAGE.format(refresh_s=WAKING_PAGE_REFRESH_S)
            return web.Response(
                status=503, text=page, content_type="text/html",
                headers={"Retry-After": str(WAKING_PAGE_REFRESH_S)},
            )  # fmt: skip
        if not await self._watch.wait_ready(self._settings.timeout_s):
            self.timeouts += 1
            message = self._not_up_message()
            log.warning("held request timed out: %s: %s", cause, message)
            return error_response(request, 504, message)
        log.info("upstream up, forwarding the held request: %s", cause)
        return (await self._forward(request, body)).response

    def _skips(self, path: str) -> bool:
        return any(
            path == prefix or path.startswith(prefix.rstrip("/") + "/")
            for prefix in self._settings.skip_paths
        )

    def _not_up_message(self) -> str:
        parts = [
            f"wol-proxy: {self._settings.upstream} did not come up within "
            f"{self._settings.timeout_s:g}s after a wake-on-LAN packet to {self._waker.target}"
        ]
        if self._waker.counts.last_error:
            parts.append(self._waker.counts.last_error)
        if self._watch.last_failure:
            parts.append(f"last attempt: {self._watch.last_failure}")
        return "; ".join(parts)

    async def _forward(self, request: web.Request, body: bytes | None) -> Forwarded:
        return await forward(
            request, self._session, self._settings.upstream, body=body, timeouts=FORWARD_TIMEOUTS
        )
