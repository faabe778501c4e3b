"""The client address llama-swap reports (access log, in-flight entries): the first
`X-Forwarded-For` entry, else `X-Real-IP`, else the socket peer (spec/api.md §2)."""

from __future__ import annotations

from aiohttp import web


def reported_client_ip(request: web.BaseRequest) -> str:
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.headers.get("X-Real-IP", "") or request.remote or ""
