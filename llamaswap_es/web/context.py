"""What every HTTP handler shares: the service, the logs, the hubs, and per-server API state.

One `AppContext` per running server, stored on the aiohttp app under `CTX`. The configuration
is read through it (`ctx.config`), never cached by a handler, so a reload is seen at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from llamaswap_es import __version__
from llamaswap_es.config import LlamaSwapConfig
from llamaswap_es.config.namespace import NameResolver, name_resolver
from llamaswap_es.projections.event_hub import EventHub
from llamaswap_es.projections.inflight import InflightTracker
from llamaswap_es.projections.lifecycle import Projections
from llamaswap_es.runtime.ids import IdProvider, UlidIds
from llamaswap_es.runtime.logs import UpstreamLogs
from llamaswap_es.runtime.service import SwapService
from llamaswap_es.web.filters import RequestFilters
from llamaswap_es.web.hung_upstreams import HungUpstreams


@dataclass
class AppContext:
    service: SwapService
    logs: UpstreamLogs
    hub: EventHub
    inflight: InflightTracker
    session: aiohttp.ClientSession
    ids: IdProvider
    version: str = __version__
    commit: str = "unknown"
    build_date: str = "unknown"
    started_at: float = field(default_factory=time.time)
    projections: Projections | None = None
    hung: HungUpstreams = field(default_factory=HungUpstreams)
    """Forwards per upstream instance, ended at once when it is declared hung."""
    listen_host: str = ""
    """The `--listen` host ("" = all interfaces); a name here is one the Host check allows."""
    _resolver: NameResolver | None = None
    _resolver_for: LlamaSwapConfig | None = None
    """The config `_resolver` was built from, held (compared by identity: an `id()` may be
    reused by a new config once the old one is freed)."""
    _filters: dict[str, RequestFilters] = field(default_factory=dict)
    _filters_for: LlamaSwapConfig | None = None

    @property
    def config(self) -> LlamaSwapConfig:
        return self.service.config

    @property
    def resolver(self) -> NameResolver:
        config = self.config
        if self._resolver is None or self._resolver_for is not config:
            self._resolver = name_resolver(config)
            self._resolver_for = config
        return self._resolver

    def filters(self, key: str, build: Callable[[], RequestFilters]) -> RequestFilters:
        """The filters `build()` makes for `key` (`model:<id>` or `peer:<id>`) under the loaded
        config, built once per config: sanitising them (sorting, copying) on every request was
        measurable work. A reload brings a new config object, so the next request builds anew."""
        config = self.config
        if self._filters_for is not config:
            self._filters = {}
            self._filters_for = config
        built = self._filters.get(key)
        if built is None:
            built = self._filters[key] = build()
        return built

    @property
    def active_profile(self) -> str | None:
        """The active profile as the log has it (ProfileActivated; a config ends it)."""
        return self.service.view.active_profile

    @property
    def body_limit(self) -> int:
        return self.config.llamaswap_es.max_request_body_mb * 1024 * 1024

    def model_state(self, model_id: str) -> str:
        """The scheduler's state of a local model: stopped, starting, ready, stopping, failed."""
        view = self.service.view.model(model_id)
        return view.state if view is not None else "stopped"


CTX: web.AppKey[AppContext] = web.AppKey("llamaswap_es.context", AppContext)


def new_context(
    service: SwapService, logs: UpstreamLogs, session: aiohttp.ClientSession
) -> AppContext:
    ctx = AppContext(
        service=service,
        logs=logs,
        hub=EventHub(),
        inflight=InflightTracker(),
        session=session,
        ids=UlidIds(service.clock.now_ms),
    )
    if service.door is not None:
        service.door.add_listener(ctx.hung.on_committed)
    return ctx
