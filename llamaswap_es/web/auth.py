"""API-key authentication as llama-swap does it (spec/api.md §4, config.md §6).

When keys are configured, every route except a few public ones needs one of them, presented as
the password of `Authorization: Basic`, else as `Authorization: Bearer`, else in `x-api-key`.
Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llamaswap_es.web.errors import unauthorized_response

# Routes llama-swap serves without a key (config.md §6 "API keys at runtime").
_PUBLIC_GET_PATHS = frozenset({"/health", "/wol-health", "/", "/favicon.ico", "/upstream"})


def is_public_route(request: web.BaseRequest) -> bool:
    """llama-swap's exempt routes: health checks, the two redirects, the favicon, preflights."""
    if request.method == "OPTIONS":
        return True
    return request.method in ("GET", "HEAD") and request.path in _PUBLIC_GET_PATHS


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client presents, in llama-swap's order of preference.

    Basic (password part) beats Bearer beats `x-api-key`. A malformed Basic value yields nothing
    from Authorization, so `x-api-key` is used; a Bearer header hides `x-api-key` even when wrong.
    """
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        password = _basic_password(value.strip())
        if password is not None:
            return password
    elif scheme == "bearer":
        return value.strip()
    api_key = headers.get("x-api-key")
    return api_key if api_key else None


def _basic_password(encoded: str) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def key_is_valid(candidate: str | None, keys: Sequence[str]) -> bool:
    """True when `candidate` equals one configured key; every key is compared (constant time)."""
    if candidate is None:
        return False
    given = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def api_key_middleware(
    keys: Sequence[str] | Callable[[], Sequence[str]],
    exempt: Callable[[web.BaseRequest], bool] = is_public_route,
) -> Middleware:
    """An aiohttp middleware that answers 401 unless the request carries a configured key.

    `keys` is the key list, or a function giving the keys in force now: the server passes the
    live configuration's, so a reload that adds, changes or removes `apiKeys` applies to the very
    next request (llama-swap rebuilds its server on reload, with the same effect).
    With no keys every route is open (llama-swap's behaviour). `exempt` picks the public routes;
    the default is llama-swap's list. Place it after the CORS middleware, so preflights never
    reach it, and before everything that reads the body, so a 401 precedes any 400/404.
    """
    current = keys if callable(keys) else (lambda fixed=tuple(keys): fixed)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        key_list = current()
        if not key_list or exempt(request):
            return await handler(request)
        if not key_is_valid(presented_key(request.headers), key_list):
            return unauthorized_response(request)
        return await handler(request)

    return middleware
