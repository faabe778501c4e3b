"""Find the model a request names, as llama-swap does (spec/api.md §6.1, §21).

The body is read once, bounded, and handed back with the answer so the forwarder sends exactly the
bytes the client sent. Sources, by request kind: a JSON body's top-level `model`; a multipart or
urlencoded form field `model` (else `?model=`); the query for everything else; for
`/upstream/<model>/<rest>` the longest leading path that names a known model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from aiohttp import web

from llamaswap_es.web import json_body
from llamaswap_es.web.errors import RequestError
from llamaswap_es.web.keep_alive import ttl_fields

NO_MODEL_MESSAGE = "no model id could be identified"
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ModelSelection:
    """What a request asks for: the requested name (may be empty), streaming, and its body."""

    model: str
    stream: bool
    body: bytes
    source: str
    """Where the name came from: "json", "form", "multipart", "query" or "" when not found."""
    ttl_fields: tuple[tuple[str, object], ...] = ()
    """A JSON body's own idle TTL fields (`ttl`, `keep_alive`) as sent, not yet validated:
    they matter only for a local model (web/keep_alive.py)."""
    json: json_body.JsonBody | None = None
    """A JSON body, parsed: renames and filters edit it (serialised once, when forwarded)."""


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole request body, refusing with 413 as soon as it would pass `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit, declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, declared: int | None) -> RequestError:
    got = f" (Content-Length {declared})" if declared is not None else ""
    return RequestError(
        413,
        f"request body is larger than the limit of {limit} bytes{got}",
        code="request_too_large",
    )


async def select_model(request: web.BaseRequest, *, body_limit: int) -> ModelSelection:
    """The requested model name and streaming flag, plus the raw body (read, bounded).

    Raises `RequestError` 413 past `body_limit` and 400 for a JSON body that is not JSON. An
    empty `model` is returned, not raised: the caller answers 404 `no model id could be
    identified` after its own rewrites (profiles may supply one).
    """
    query = request.rel_url.query
    if request.method in ("GET", "HEAD"):
        return ModelSelection(
            query.get("model", ""), query.get("stream") == "true", b"", _src(query, "query")
        )
    body = await read_body(request, body_limit)
    content_type = request.headers.get("Content-Type", "")
    if "application/json" in content_type:
        parsed = json_body.JsonBody.read(body)
        model, stream, ttl = _named_in(parsed.doc)
        return ModelSelection(model, stream, body, "json" if model else "", ttl, parsed)
    if "multipart/form-data" in content_type:
        fields = multipart_text_fields(body, content_type, names=("model", "stream"))
        model = fields.get("model") or query.get("model") or ""
        stream = (fields.get("stream") or query.get("stream")) == "true"
        source = "multipart" if fields.get("model") else _src(query, "query")
        return ModelSelection(model, stream, body, source)
    if "application/x-www-form-urlencoded" in content_type:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        model = form.get("model", [""])[0] or query.get("model", "")
        stream = (form.get("stream", [""])[0] or query.get("stream", "")) == "true"
        source = "form" if form.get("model", [""])[0] else _src(query, "query")
        return ModelSelection(model, stream, body, source)
    return ModelSelection(
        query.get("model", ""), query.get("stream") == "true", body, _src(query, "query")
    )


def _src(query: Mapping[str, str], name: str) -> str:
    return name if query.get("model") else ""


def model_from_json(body: bytes) -> tuple[str, bool, tuple[tuple[str, object], ...]]:
    """Top-level `model` (as text), the truthiness of `stream` and the TTL fields of a JSON body.

    An empty body or a non-object document names no model. A body that is not JSON at all is a
    client error we report with the parser's position, rather than forwarding it blind.
    """
    return _named_in(json_body.JsonBody.read(body).doc)


def _named_in(doc: object) -> tuple[str, bool, tuple[tuple[str, object], ...]]:
    """`model_from_json` on a parsed document (None: a blank body)."""
    if not isinstance(doc, dict):
        return "", False, ()
    return _as_text(doc.get("model")), _truthy(doc.get("stream")), ttl_fields(doc)


def _as_text(value: object) -> str:
    """A JSON value as llama-swap's lenient scan reads it: numbers and booleans as their text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip() in ("1", "t", "T", "true", "TRUE", "True")
    return False


def multipart_text_fields(
    body: bytes, content_type: str, *, names: tuple[str, ...]
) -> dict[str, str]:
    """The values of the named non-file fields of a multipart/form-data body.

    Only small text fields are wanted (the model name), so the body is scanned in place rather
    than parsed into temp files; the first occurrence of a name wins, as in Go's form parsing.
    """
    delimiter = multipart_delimiter(content_type)
    if delimiter is None:
        raise RequestError(400, "multipart request without a boundary in its Content-Type")
    found: dict[str, str] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        params = dict(_disposition_params(_content_disposition(head)))
        name = params.get("name")
        if name in names and "filename" not in params and name not in found:
            found[name] = content.removesuffix(b"\r\n").decode("utf-8", "replace")
    return found


def _content_disposition(head: bytes) -> str:
    """A part's Content-Disposition value, read as UTF-8 text (browsers send file names that
    way; a byte that is not UTF-8 becomes U+FFFD). The email parser would hand back a `Header`
    object, not text, for a name that is not ASCII."""
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "content-disposition":
            return value.strip()
    return ""


def multipart_delimiter(content_type: str) -> bytes | None:
    """`--<boundary>` as the bytes the client sent in its Content-Type (None: no boundary).

    Header text is the client's bytes decoded as UTF-8 with each other byte kept as a lone
    surrogate; encoding it back the same way gives those bytes exactly, whatever they are.
    """
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        boundary = value.strip('"')
        if key.lower() == "boundary" and boundary:
            return b"--" + boundary.encode("utf-8", "surrogateescape")
    return None


def _disposition_params(disposition: str) -> list[tuple[str, str]]:
    params = []
    for item in disposition.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        params.append((key.lower(), value.strip('"')))
    return params


def split_upstream_path(raw_rest: str, is_known: Callable[[str], bool]) -> tuple[str, str] | None:
    """Split the raw (still percent-encoded) path after `/upstream/` into (model, remainder).

    Successive leading segments are decoded and tried; the longest known name wins, so models
    named `author/model` (or `author%2Fmodel`) work. The remainder keeps the client's exact
    encoding (`/api/x%2Fy` stays so) and is "" when nothing follows the name (the caller then
    redirects to the slash form). None when no prefix names a model.
    """
    segments = raw_rest.split("/")
    best: tuple[str, str] | None = None
    for end in range(1, len(segments) + 1):
        name = "/".join(unquote(seg) for seg in segments[:end])
        if name and is_known(name):
            rest = "/".join(segments[end:])
            best = (name, "/" + rest if end < len(segments) else "")
    return best
