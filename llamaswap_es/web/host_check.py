"""The Host check: the admin surface answers only under a name the user chose (DNS rebinding).

A page on evil.example can make its own name resolve to 127.0.0.1 (DNS rebinding): the browser
then treats our server as evil.example's, and every answer is readable by that page, CORS or
not. What it cannot change is the `Host` header: it says evil.example. So a request for the
admin surface (`web/route_family.py`) is served only when its Host is

* an IP address: a browser sends one only when the user typed it, and it cannot be rebound; so a
  server listening on 0.0.0.0 is reachable from the LAN by IP (`http://192.168.1.5:8080/ui/`),
  inside a container too, with nothing to configure;
* a loopback name: `localhost` or `*.localhost` (browsers resolve these themselves);
* the host name in `--listen`, when it is one;
* or listed in `llamaswap-es.allowedHosts` (`*.domain` for its subdomains, `*` for any: for a
  reverse proxy that checks the name itself).

Anything else is answered 403 with the host and the line to add to the config, and logged once
per host. A request without Host (HTTP/1.0; no browser sends one) passes.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llamaswap_es.config.browser_access import ANY, normalize_host_name, split_host_port
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.route_family import RouteFamily, family_of

log = logging.getLogger("llamaswap_es.host_check")

MAX_HOSTS_REMEMBERED = 256
"""Refused hosts logged so far (each is logged once); beyond this, no new warning is logged."""
_SHOWN_CHARS = 100


def host_name_of(header: str) -> str | None:
    """The host of a `Host` header value, normalised (no port, lower case), or None if it is
    not a host name or IP address."""
    host, port = split_host_port(header.strip())
    if port == -1:
        return None
    return normalize_host_name(host)


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_is_allowed(host: str, allowed: Sequence[str], listen_host: str = "") -> bool:
    """The rule of this module's docstring, for a normalised host."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if is_loopback_name(host) or ANY in allowed or host in allowed:
        return True
    if listen_host and host == normalize_host_name(listen_host):
        return True
    return any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


def refusal_message(shown: str, valid: bool) -> str:
    if not valid:
        return (
            f"Host header {shown} is not a host name or IP address: the admin API, logs and UI "
            "answer only under a host they know (a guard against DNS rebinding)"
        )
    return (
        f"host {shown} is not allowed: the admin API, logs and UI answer only to loopback names, "
        "IP addresses and the host names in llamaswap-es.allowedHosts (a guard against DNS "
        f"rebinding). If you reach this server by that name, add it to the config: "
        f"llamaswap-es: {{allowedHosts: [{shown}]}}"
    )


def host_check_middleware(
    allowed_hosts: Callable[[], Sequence[str]], listen_host: Callable[[], str] = lambda: ""
) -> Middleware:
    """An aiohttp middleware refusing admin requests under a foreign Host (403).

    `allowed_hosts` gives the configured list in force now (a reload applies at once). Place it
    right after access logging, so a rebinding page's preflight is refused too.
    """
    logged: set[str] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if header is None or family_of(request.path) is not RouteFamily.ADMIN:
            return await handler(request)
        host = host_name_of(header)
        if host is not None and host_is_allowed(host, allowed_hosts(), listen_host()):
            return await handler(request)
        shown = f'"{(host or header)[:_SHOWN_CHARS]}"'
        message = refusal_message(shown, host is not None)
        if shown not in logged and len(logged) < MAX_HOSTS_REMEMBERED:
            logged.add(shown)
            log.warning("refused %s %s: %s", request.method, request.path, message)
        return error_response(request, 403, message, code="host_not_allowed")

    return middleware
