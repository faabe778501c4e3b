"""Running the server: configuration (or the demo), the service, the HTTP listener, signals.

SIGINT/SIGTERM shut down gracefully (stop accepting, end event streams, let requests being served
finish within the shutdown budget, answer waiters, stop every process group, flush the log); a
second signal exits at once. SIGHUP and `--watch-config` reload; an invalid new configuration is
reported and the old one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from llamaswap_es.config import LlamaSwapConfig, load_config
from llamaswap_es.config.scheduling import config_secrets
from llamaswap_es.demo import demo_config_yaml
from llamaswap_es.errors import LlamaSwapError, error_line
from llamaswap_es.projections.lifecycle import Projections
from llamaswap_es.runtime import heap_settle
from llamaswap_es.runtime.config_watch import signature, watch_config
from llamaswap_es.runtime.log_format import LogFormat, ProxyLineFormatter
from llamaswap_es.runtime.logs import ProxyLogHandler, UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from llamaswap_es.runtime.supervisor_feed import SupervisorFeed, serving_status
from llamaswap_es.web.app import build_app, publish_committed
from llamaswap_es.web.config_reload import RELOADER, ConfigReloader
from llamaswap_es.web.context import AppContext, new_context
from llamaswap_es.web.forwarder import upstream_session
from llamaswap_es.web.serve_options import ServeOptions, effective_db_path, listen_warning

log = logging.getLogger("llamaswap_es.server")

LOG_LEVELS = {"debug": logging.DEBUG, "warn": logging.WARNING, "error": logging.ERROR}


StartedHook = Callable[[AppContext], None]
"""Called once the server listens (tests/fixtures/loop_stopping_server.py adds a control)."""


def run_server(options: ServeOptions, *, on_started: StartedHook | None = None) -> int:
    """Run until stopped; the exit status (0 after a clean shutdown)."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(serve(options, on_started=on_started))
    except LlamaSwapError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _load(options: ServeOptions) -> tuple[LlamaSwapConfig, str | None, str | None, bool]:
    """The configuration to serve, and the paths a reload re-reads (the demo when none given)."""
    if options.config_file or options.config_dir:
        config = load_config(options.config_file, options.config_dir)
        return config, options.config_file, options.config_dir, False
    db_path = Path(effective_db_path(options, None)).expanduser()
    demo = db_path.parent / "demo-config.yaml"
    try:  # before any other check: a --db that cannot be written fails here first
        demo.parent.mkdir(parents=True, exist_ok=True)
        demo.write_text(demo_config_yaml())
    except OSError as exc:
        raise LlamaSwapError(
            f"{db_path}: cannot write the demo configuration {demo.name} beside the event log: "
            f"{exc}; pass --db a path in a writable directory"
        ) from None
    return load_config(str(demo), None), str(demo), None, True


def _setup_logging(config: LlamaSwapConfig, logs: UpstreamLogs, log_format: LogFormat) -> None:
    """`logLevel` and `logTimeFormat` (both re-applied on reload) and `--log-format`."""
    level = LOG_LEVELS.get(config.log_level.strip().lower(), logging.INFO)
    root = logging.getLogger("llamaswap_es")
    for handler in list(root.handlers):
        if isinstance(handler, ProxyLogHandler):
            root.removeHandler(handler)
    formatter = ProxyLineFormatter(config.log_time_format, log_format)
    root.addHandler(ProxyLogHandler(logs, level, formatter, secrets=config_secrets(config)))
    root.setLevel(level)
    root.propagate = False


def _ssl_context(options: ServeOptions) -> ssl.SSLContext | None:
    if not options.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.tls_cert_file, options.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise LlamaSwapError(
            f"cannot load TLS certificate {options.tls_cert_file} / key "
            f"{options.tls_key_file}: {exc}"
        ) from exc
    return context


async def serve(options: ServeOptions, *, on_started: StartedHook | None = None) -> int:
    baseline = signature(options.config_file, options.config_dir)
    config, config_file, config_dir, is_demo = _load(options)
    logs = UpstreamLogs(log_to_stdout=config.log_to_stdout, stdout=sys.stdout)  # type: ignore[arg-type]
    _setup_logging(config, logs, options.log_format)  # type: ignore[arg-type]
    db_path = Path(effective_db_path(options, config)).expanduser()
    if config.llamaswap_es.history_database:  # before any model starts; SQLAlchemy only if set
        from llamaswap_es.projections.history.engine import require_driver

        require_driver(config.llamaswap_es.history_database)
    service = SwapService(config, db_path=db_path, logs=logs, config_sources=tuple(config.sources))
    # Read (and remove) systemd's variables before any model starts: children never inherit them.
    feed = SupervisorFeed.from_environ(os.environ, service.health, lambda: serving_status(service))
    await service.start()
    session = upstream_session()
    ctx = new_context(service, logs, session)
    ctx.listen_host = options.listen_host
    ctx.projections = await Projections.start(service, inflight=ctx.inflight, hub=ctx.hub)
    _wire_publishers(ctx)

    def after_reload(new: LlamaSwapConfig) -> None:
        _setup_logging(new, logs, options.log_format)  # type: ignore[arg-type]
        logs.set_log_to_stdout(new.log_to_stdout)  # type: ignore[arg-type]
        heap_settle.settle()  # the replaced configuration is collected, the new one frozen

    reloader = ConfigReloader(ctx, config_file, config_dir, on_applied=after_reload)
    app = build_app(ctx)
    app[RELOADER] = reloader
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    stop = asyncio.Event()

    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_stop_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:  # the user insists: leave now, but leave no model running
            if service.executor is not None:
                service.executor.kill_all_now()
            print("llamaswap-es: second signal, exiting at once", file=sys.stderr, flush=True)
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop_signal)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reloader.reload("SIGHUP")))
    heap_settle.settle()  # start-up's objects frozen, its garbage freed, before the first request
    site = web.TCPSite(
        runner, options.listen_host or None, options.listen_port, ssl_context=_ssl_context(options)
    )
    try:
        await site.start()
    except OSError as exc:
        await ctx.projections.stop()
        await service.shutdown("listen failed")
        await session.close()
        raise LlamaSwapError(
            f"cannot listen on {options.listen_host}:{options.listen_port}: {exc.strerror}"
        ) from exc
    scheme = "https" if options.tls_cert_file else "http"
    shown_host = options.listen_host or "0.0.0.0"
    log.info("llamaswap-es listening on %s://%s:%d", scheme, shown_host, options.listen_port)
    print(
        f"llamaswap-es {ctx.version}: {scheme}://{shown_host}:{options.listen_port}/ui/  "
        f"(event log {db_path}{', built-in demo models' if is_demo else ''})",
        file=sys.stderr,
        flush=True,
    )
    for notice in config.warnings:  # the loader's, e.g. serial by default (a reload says new ones)
        log.warning(notice)
    warning = listen_warning(options.listen_host, config)
    if warning:
        log.warning(warning)
        print(warning, file=sys.stderr, flush=True)
    if feed is not None:
        feed.ready()
        log.info(
            "systemd notified: ready%s",
            f", watchdog fed every {feed.tick_s:g} s" if feed.watchdog_s else "",
        )
    if on_started is not None:
        on_started(ctx)

    async def reload_after_change() -> None:
        await reloader.reload("--watch-config")

    watcher = (
        asyncio.create_task(
            watch_config(config_file, config_dir, reload_after_change, baseline=baseline)
        )
        if options.watch_config
        else None
    )
    await _first_of(stop.wait(), service.failed.wait())
    failed = service.failed.is_set()
    if failed:  # the run loop is dead: say so, stop every model, exit for the supervisor
        reason = service.health.report().text()
        log.critical("exiting with status %d: %s", EXIT_LOOP_FAILED, reason)
        print(f"llamaswap-es: exiting: {reason}", file=sys.stderr, flush=True)
        stopping = f"exiting with status {EXIT_LOOP_FAILED}: {reason}"
    else:
        log.info("shutting down")
        stopping = "shutting down: stopping every model"
    if feed is not None:
        await feed.stopping(stopping)
    if watcher is not None:
        watcher.cancel()
    await _shutdown(ctx, runner, site, service)
    if feed is not None:
        await feed.close()
    return EXIT_LOOP_FAILED if failed else 0


EXIT_LOOP_FAILED = 3
"""The exit status after the scheduler failed (a bug): a supervisor restarts the server, whose
recovery replays the log; systemd's `Restart=on-failure` does."""


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _shutdown(
    ctx: AppContext, runner: web.AppRunner, site: web.TCPSite, service: SwapService
) -> None:
    ctx.hub.close()
    await site.stop()
    budget = service.config.llamaswap_es.shutdown_timeout_seconds
    deadline = asyncio.get_running_loop().time() + budget
    while ctx.inflight.entries() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    if ctx.projections is not None:
        await ctx.projections.stop()
    await service.shutdown()
    with contextlib.suppress(Exception):
        await runner.cleanup()
    await ctx.session.close()
    ctx.logs.close()


def _inflight_key(message: dict[str, Any]) -> str | None:
    """An upsert or removal states one in-flight entry whole: the hub keeps the latest per batch."""
    request = message.get("request")
    entry_id = request.get("id") if isinstance(request, dict) else message.get("id")
    return None if entry_id is None else f"inflight:{entry_id}"


def _wire_publishers(ctx: AppContext) -> None:
    """Keep `/api/events` live: committed events, in-flight changes, new log text."""
    assert ctx.service.door is not None
    ctx.service.door.add_listener(lambda envelopes: publish_committed(ctx, envelopes))
    ctx.inflight.add_listener(
        lambda message: ctx.hub.publish("inflight", message, key=_inflight_key(message)),
        active=lambda: ctx.hub.connections > 0,  # no UI tab open: nothing to build
    )

    async def forward_logs(source: str) -> None:
        async for text in ctx.logs.subscribe(source):
            ctx.hub.publish("logData", {"source": source, "data": text})

    for source in ("proxy", "upstream"):
        task = asyncio.create_task(forward_logs(source), name=f"logData {source}")
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[None]] = set()
