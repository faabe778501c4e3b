"""`llamaswap-es wol-proxy`: flags checked up front, then the proxy runs until a signal.

The flags are llama-swap's wol-proxy's (`-mac`, `-upstream`, `-listen`, `-timeout`, `-log`,
`-api-key`; one dash or two) plus `--broadcast` and `--skip-path`. Every bad value is refused
before anything listens, with a message naming the flag.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from llamaswap_es.web.forwarder import upstream_session
from llamaswap_es.web.serve_options import parse_listen
from llamaswap_es.wol.magic_packet import DEFAULT_BROADCAST, format_mac, parse_broadcast, parse_mac
from llamaswap_es.wol.proxy import DEFAULT_SKIP_PATHS, ProxySettings, WolProxy
from llamaswap_es.wol.upstream_watch import UpstreamWatch
from llamaswap_es.wol.waker import Waker

log = logging.getLogger("llamaswap_es.wol")

HELP = "wake a sleeping llama-swap server with wake-on-LAN, then proxy to it"
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 60.0
API_KEY_ENV = "LLAMA_SWAP_API_KEY"
EXIT_USAGE = 2
LOG_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
}  # fmt: skip


@dataclass(frozen=True)
class WolOptions:
    """The command line, parsed and checked."""

    mac: bytes
    upstream: str
    listen_host: str
    listen_port: int
    broadcast: tuple[str, int]
    timeout_s: float
    skip_paths: tuple[str, ...]
    api_key: str | None
    log_level: int


def configure_parser(parser: argparse.ArgumentParser) -> None:
    def flag(name: str, **kwargs: object) -> None:
        parser.add_argument(f"-{name}", f"--{name}", **kwargs)  # type: ignore[arg-type]

    flag("mac", required=True, help="MAC address of the llama-swap machine (aa:bb:cc:dd:ee:ff)")
    flag("upstream", required=True, metavar="URL", help="the llama-swap server, http://HOST:PORT")
    flag("listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help="default %(default)s")
    flag("broadcast", default=DEFAULT_BROADCAST, metavar="ADDRESS[:PORT]",
         help="where the magic packet goes (default %(default)s)")  # fmt: skip
    flag("timeout", default=str(DEFAULT_TIMEOUT_S), metavar="SECONDS",
         help="how long a request is held for the server to come up (default 60)")  # fmt: skip
    flag("skip-path", dest="skip_paths", action="append", metavar="PREFIX",
         help="a path (and what is below it) answered 503 without waking the server; repeat it; "
              f"default {' '.join(DEFAULT_SKIP_PATHS)}")  # fmt: skip
    flag("api-key", dest="api_key", metavar="KEY",
         help=f"the server's API key, for its event stream (or ${API_KEY_ENV})")  # fmt: skip
    flag("log", default="info", choices=sorted(LOG_LEVELS), help="log level (default info)")


def wol_options(args: argparse.Namespace, environ: dict[str, str] | None = None) -> WolOptions:
    """Check every flag; ValueError with the message to show (naming the flag)."""
    env = os.environ if environ is None else environ
    host, port = parse_listen(args.listen)
    return WolOptions(
        mac=parse_mac(args.mac),
        upstream=_upstream_url(args.upstream),
        listen_host=host,
        listen_port=port,
        broadcast=parse_broadcast(args.broadcast),
        timeout_s=_timeout(args.timeout),
        skip_paths=tuple(_skip_path(p) for p in args.skip_paths or DEFAULT_SKIP_PATHS),
        api_key=args.api_key or env.get(API_KEY_ENV) or None,
        log_level=LOG_LEVELS[args.log],
    )


def _upstream_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream {text!r}: expected the server's URL, http://HOST:PORT")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"--upstream {text!r}: give the server's base URL, without a path")
    return f"{parts.scheme}://{parts.netloc}"


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError(f"--timeout {text!r}: expected a number of seconds above 0")
    return value


def _skip_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError(f"--skip-path {text!r}: a path starts with /, such as /metrics")
    return text


def run_command(args: argparse.Namespace) -> int:
    try:
        options = wol_options(args)
    except ValueError as error:
        print(f"llamaswap-es wol-proxy: {error}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(options.log_level)
    try:
        asyncio.run(serve(options))
    except OSError as exc:  # the listen address is taken or not ours
        print(f"llamaswap-es wol-proxy: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


def _setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("llamaswap_es")
    root.addHandler(handler)
    root.setLevel(level)


async def serve(options: WolOptions) -> None:
    """Run until SIGINT or SIGTERM; the listener, the watch and the session are closed after."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with upstream_session() as session:
        watch = UpstreamWatch(options.upstream, session, api_key=options.api_key)
        waker = Waker(options.mac, options.broadcast)
        settings = ProxySettings(options.upstream, options.timeout_s, options.skip_paths)
        proxy = WolProxy(settings, watch, waker, session)
        runner = web.AppRunner(proxy.app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, options.listen_host or None, options.listen_port)
            await site.start()
            watch.start()
            shown = options.listen_host or "0.0.0.0"
            log.info(
                "wol-proxy listening on http://%s:%d/ upstream=%s mac=%s broadcast=%s:%d "
                "timeout=%gs skip=%s",
                shown, options.listen_port, options.upstream, format_mac(options.mac),
                *options.broadcast, options.timeout_s, ",".join(options.skip_paths),
            )  # fmt: skip
            await stop.wait()
            log.info("wol-proxy stopping")
        finally:
            await watch.stop()
            await runner.cleanup()


SUBCOMMAND = (configure_parser, run_command)
"""What `cli.add_subcommand` takes after the name and help text."""
