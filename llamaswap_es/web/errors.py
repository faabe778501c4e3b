"""llama-swap's HTTP error responses: the negotiated envelope, the 429, and Go-mux 404/405.

Clients written against llama-swap parse these bodies (the OpenAI SDK reads `error.message`, the
UI reads `llama-swap: …` text), so the shapes are copied exactly from spec/api.md §5. Handlers raise
`RequestError` (or call `error_response`) and never build error bodies of their own.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, LooseHeaders

from llamaswap_es.errors import LlamaSwapError

# status → (error type, default code), spec/api.md §5.1.
_KNOWN_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthorized"),
    403: ("authentication_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}

_UNENCODABLE = "replace"
"""A message may quote a client's value that is not valid text (a lone surrogate from a JSON
escape or a non-UTF-8 header byte): it shows as "?" rather than failing the error itself."""

TOO_MANY_REQUESTS_BODY = (
    b'{"src":"llama-swap","error":{"message":"Too many requests",'
    b'"type":"rate_limit_error","param":null,"code":"concurrency_limit"}}'
)


class RequestError(LlamaSwapError):
    """A request we refuse, carrying what the client is told.

    Raised by the request-reading pieces (body limit, malformed JSON, no model) so handlers stay
    linear; the handler (or a middleware) turns it into `error_response(request, …)`.
    """

    def __init__(self, status: int, message: str, *, code: str | None = None):
        self.status = status
        self.message = message
        self.code = code
        super().__init__(f"{status}: {message}")

    def response(self, request: web.BaseRequest) -> web.Response:
        return error_response(request, self.status, self.message, code=self.code)


def error_kind(status: int) -> tuple[str, str]:
    """The OpenAI-style `(type, code)` llama-swap derives from an HTTP status."""
    if status in _KNOWN_KINDS:
        return _KNOWN_KINDS[status]
    if 400 <= status < 500:
        return ("invalid_request_error", "invalid_request")
    return ("server_error", "internal_error")


def envelope_json(status: int, message: str, *, code: str | None = None) -> bytes:
    """The JSON envelope, byte-exact: `{"src":"llama-swap","error":{…}}`, no trailing newline."""
    err_type, default_code = error_kind(status)
    body = {
        "src": "llama-swap",
        "error": {
            "message": message,
            "type": err_type,
            "param": None,
            "code": code or default_code,
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(errors=_UNENCODABLE)


def render_error(
    accept: str, status: int, message: str, *, code: str | None = None
) -> tuple[bytes, str]:
    """Body and Content-Type for an error, chosen from `Accept` by substring as llama-swap does.

    Separate from `error_response` because an error that happens after a loading stream has
    already sent 200 headers is appended to that stream as raw bytes (spec/api.md §6.11).
    """
    if "text/plain" in accept:
        return f"llama-swap: {message}".encode(errors=_UNENCODABLE), "text/plain"
    if "text/html" in accept:
        page = f"<html><body><h1>llama-swap</h1><p>{html.escape(message)}</p></body></html>"
        return page.encode(errors=_UNENCODABLE), "text/html"
    return envelope_json(status, message, code=code), "application/json"


def error_response(
    request: web.BaseRequest | Mapping[str, str] | str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: LooseHeaders | None = None,
) -> web.Response:
    """A negotiated llama-swap error response.

    `request` may be the request, its headers, or the Accept value itself, so code without a
    request object at hand (tests, the forwarder) can use it too.
    """
    if isinstance(request, str):
        accept = request
    elif isinstance(request, web.BaseRequest):
        accept = request.headers.get("Accept", "")
    else:
        accept = request.get("Accept", "")
    body, content_type = render_error(accept, status, message, code=code)
    response = web.Response(status=status, body=body, headers=headers)
    response.content_type = content_type
    return response


def unauthorized_response(request: web.BaseRequest) -> web.Response:
    """401 with the Basic challenge, so browsers prompt for the key as a password."""
    return error_response(
        request,
        401,
        "unauthorized: invalid or missing API key",
        headers={"WWW-Authenticate": 'Basic realm="llama-swap"'},
    )


def too_many_requests_response() -> web.Response:
    """The concurrency-limit 429, verbatim whatever the client accepts (spec/api.md §5.2)."""
    response = web.Response(status=429, body=TOO_MANY_REQUESTS_BODY, headers={"Retry-After": "1"})
    response.content_type = "application/json"
    return response


def route_not_found_response() -> web.Response:
    """Go's mux 404 for an unknown path: plain text, not the envelope."""
    return _go_plain_text(404, "404 page not found\n")


def method_not_allowed_response(allowed: list[str] | tuple[str, ...] | set[str]) -> web.Response:
    """Go's mux 405: plain text with an `Allow` header listing the known methods."""
    methods = set(allowed)
    if "GET" in methods:
        methods.add("HEAD")  # Go's GET patterns answer HEAD too
    response = _go_plain_text(405, "Method Not Allowed\n")
    response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def _go_plain_text(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text, charset="utf-8")
    response.content_type = "text/plain"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@web.middleware
async def go_mux_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer router misses as Go's mux does, and `RequestError` with the envelope.

    aiohttp's own 404/405 pages are HTML-ish text; llama-swap clients see Go's plain lines.
    """
    try:
        return await handler(request)
    except RequestError as err:
        return err.response(request)
    except web.HTTPMethodNotAllowed as err:
        if request.match_info.http_exception is err:
            return method_not_allowed_response(tuple(err.allowed_methods))
        raise
    except web.HTTPNotFound as err:
        if request.match_info.http_exception is err:
            return route_not_found_response()
        raise
