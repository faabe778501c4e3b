"""CORS per route family (the table is in `web/route_family.py`; docs/api.md, "Who may call what").

* Inference and public routes: llama-swap's behaviour (spec/api.md §4). Every preflight is
  answered 204 with `Access-Control-Allow-Origin: *`; other responses get no CORS headers,
  except `/v1/models` and `/models`, which echo the Origin (`echo_origin`). Browser chat clients
  on other origins rely on it.
* Admin routes: a cross-origin request is answered only for an origin in
  `llamaswap-es.allowedOrigins` (its preflight gets `Access-Control-Allow-Origin: <origin>`, and
  so does its response, streams included); the page's own origin (the UI under `/ui`) needs no
  listing. A request from any other origin is refused with 403 when it carries an `Origin` (a
  preflight, a fetch, a form post) or when it changes state; `Sec-Fetch-Site` identifies a
  cross-site request that carries no Origin (`<img src=/unload>`). A plain navigation (a link
  to `/ui/` from another site) still opens: it reads nothing the page could see.

Browsers do not let a page forge `Origin` or `Sec-Fetch-*`. A client outside a browser can send
anything, which is why the API keys, not this, guard against other programs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llamaswap_es.config.browser_access import (
    ANY,
    DEFAULT_PORTS,
    AccessEntryError,
    normalize_allowed_origin,
    normalize_host_name,
    split_host_port,
)
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.route_family import RouteFamily, changes_state, family_of

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Content-Type, Authorization, Accept, X-Requested-With"
MAX_AGE_S = 86400

# An HTTP token (RFC 9110 §5.6.2): the only characters a header name may contain.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

ALLOWED_ORIGIN: web.RequestKey[str] = web.RequestKey("llamaswap_es.cors_origin", str)
"""Set on an admin request from a listed origin; its response then allows that origin."""


class OriginVerdict(enum.Enum):
    NOT_CROSS_SITE = "not cross-site"  # no Origin: curl, a same-origin GET, a typed URL
    SAME_ORIGIN = "same origin"  # the UI served under /ui
    LISTED = "listed"  # in allowedOrigins
    FOREIGN = "foreign"  # any other page


def allowed_request_headers(requested: str | None) -> str:
    """The `Access-Control-Allow-Headers` value for a preflight's `Access-Control-Request-Headers`.

    Items that are not valid header names are dropped rather than echoed, so a crafted request
    cannot inject text into our response headers.
    """
    if requested is None:
        return DEFAULT_ALLOW_HEADERS
    names = (item.strip() for item in requested.split(","))
    return ", ".join(name for name in names if _TOKEN.fullmatch(name))


def _preflight(request: web.BaseRequest, allow_origin: str | None) -> web.Response:
    headers = {
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": allowed_request_headers(
            request.headers.get("Access-Control-Request-Headers")
        ),
        "Access-Control-Max-Age": str(MAX_AGE_S),
    }
    if allow_origin is not None:
        headers["Access-Control-Allow-Origin"] = allow_origin
        if allow_origin != "*":
            headers["Vary"] = "Origin"
    return web.Response(status=204, headers=headers)


def permissive_preflight(request: web.BaseRequest) -> web.Response:
    """204 with the permissive CORS headers llama-swap sends to every preflight."""
    return _preflight(request, "*")


def origin_verdict(request: web.BaseRequest, allowed_origins: Sequence[str]) -> OriginVerdict:
    """Where a request comes from, as far as a browser tells: see the module docstring."""
    origin = request.headers.get("Origin")
    if origin is None:
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        cross = site in ("cross-site", "same-site")
        return OriginVerdict.FOREIGN if cross else OriginVerdict.NOT_CROSS_SITE
    key = origin_key(origin)
    if key is None:  # "null" (a file, a sandboxed frame) or garbage
        return OriginVerdict.FOREIGN
    if ANY in allowed_origins or key in allowed_origins:
        return OriginVerdict.LISTED
    if request.headers.get("Sec-Fetch-Site", "").lower() == "same-origin":
        return OriginVerdict.SAME_ORIGIN
    if _matches_host(key, request.headers.get("Host", "")):
        return OriginVerdict.SAME_ORIGIN  # a browser that sends no Sec-Fetch-Site
    return OriginVerdict.FOREIGN


def origin_key(origin: str) -> str | None:
    """An `Origin` header value in `allowedOrigins`' normal form, or None ("null", garbage)."""
    try:
        return normalize_allowed_origin(origin) if origin.strip() != ANY else None
    except AccessEntryError:
        return None


def _matches_host(key: str, host_header: str) -> bool:
    """True when the origin names this server as the request does (scheme-default ports), the
    same-origin test for a browser without `Sec-Fetch-Site` (also behind a TLS proxy)."""
    scheme, _, authority = key.partition("://")
    origin_host, origin_port = split_host_port(authority)
    host, port = split_host_port(host_header.strip())
    default = DEFAULT_PORTS.get(scheme)
    return (
        port != -1
        and normalize_host_name(host) == normalize_host_name(origin_host)
        and (port or default) == (origin_port or default)
    )


def refusal_message(request: web.BaseRequest) -> str:
    where = f"{request.method} {request.path}"
    origin = request.headers.get("Origin")
    key = origin_key(origin) if origin is not None else None
    rule = (
        "the admin API, logs and UI answer cross-origin requests only from the origins in "
        "llamaswap-es.allowedOrigins"
    )
    if key is not None:
        return (
            f'origin "{key}" may not call {where}: {rule}. To let that page in, add it to the '
            f'config: llamaswap-es: {{allowedOrigins: ["{key}"]}}'
        )
    if origin is not None:
        return (
            f'origin "{origin[:100]}" may not call {where}: {rule}, and a page without an '
            "origin (a local file, a sandboxed frame) can never be allowed"
        )
    return (
        f"a cross-site request may not call {where}: {rule}. Use it from this server's own UI "
        "or outside a browser"
    )


def cors_middleware(
    allowed_origins: Callable[[], Sequence[str]] = lambda: (),
) -> Middleware:
    """The CORS policy of each route family (module docstring), as one aiohttp middleware.

    `allowed_origins` gives the configured list in force now (a reload applies at once). Place
    it after the Host check and before auth: preflights carry no credentials, and it answers
    `OPTIONS` even for paths no route knows. Register `allow_listed_origin` on the app's
    `on_response_prepare` too, so responses (streams included) carry the allowed origin.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if family_of(request.path) is not RouteFamily.ADMIN:
            if request.method == "OPTIONS":
                return permissive_preflight(request)
            return await handler(request)
        verdict = origin_verdict(request, allowed_origins())
        if verdict is OriginVerdict.FOREIGN and (
            "Origin" in request.headers or changes_state(request.method, request.path)
        ):
            return error_response(request, 403, refusal_message(request), code="cross_origin")
        origin = request.headers.get("Origin")
        allow = origin if verdict is OriginVerdict.LISTED and origin is not None else None
        if allow is not None:
            request[ALLOWED_ORIGIN] = allow
        if request.method == "OPTIONS":
            return _preflight(request, allow)
        return await handler(request)

    return middleware


async def allow_listed_origin(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: an admin response to a listed origin allows that origin."""
    origin = request.get(ALLOWED_ORIGIN)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        if "origin" not in response.headers.get("Vary", "").lower():
            response.headers.add("Vary", "Origin")


def echo_origin(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Copy the request's Origin into `Access-Control-Allow-Origin` (the model listing does)."""
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
