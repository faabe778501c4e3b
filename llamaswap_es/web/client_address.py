"""The client address llama-swap reports (access log, in-flight entries): the first
`X-Forwarded-For` entry, else `X-Real-IP`, else the socket peer (spec/api.md §2).

The headers are the client's own text: the address is shown repaired and bounded
(web/boundary.py), never as raw bytes that a log or a JSON encoder could choke on."""

from __future__ import annotations

from aiohttp import web

from llamaswap_es.web.boundary import shown_text


def reported_client_ip(request: web.BaseRequest) -> str:
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        return shown_text(forwarded.split(",")[0].strip())
    return shown_text(request.headers.get("X-Real-IP", "") or request.remote or "")
