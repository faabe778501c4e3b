"""Re-reading the configuration: SIGHUP, `--watch-config` and `POST /api/config/reload` share it.

llama-swap reloads only from a signal or its file watcher (users ask for an endpoint: spec
ui-and-users.md B.1 #10). A reload re-reads the same `--config`/`--config-dir` the server started
with; an invalid file is refused and the running configuration stays, with the error naming the
file and key. Reloads run one at a time: one asked for while another runs waits and then reads the
files again, so the last request always sees the latest file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from llamaswap_es.config import LlamaSwapConfig, config_hash
from llamaswap_es.errors import ConfigError
from llamaswap_es.runtime.policy_loader import load_config_and_policies
from llamaswap_es.web.context import CTX, AppContext
from llamaswap_es.web.errors import error_response
from llamaswap_es.web.listing import model_status

log = logging.getLogger("llamaswap_es.web.config_reload")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    message: str
    config_hash: str = ""


class ConfigReloader:
    """Loads the configuration files again and applies them to the running server."""

    def __init__(
        self,
        ctx: AppContext,
        config_file: str | None,
        config_dir: str | None,
        on_applied: Callable[[LlamaSwapConfig], None] = lambda _config: None,
    ):
        self._ctx = ctx
        self._config_file = config_file
        self._config_dir = config_dir
        self._on_applied = on_applied
        self._lock = asyncio.Lock()

    async def reload(self, origin: str) -> ReloadOutcome:
        """Apply the files as they are now; `origin` names who asked (for the log line)."""
        async with self._lock:
            said = set(self._ctx.service.config.warnings)
            try:
                new = await asyncio.to_thread(
                    load_config_and_policies, self._config_file, self._config_dir
                )
                await self._ctx.service.reload(new, tuple(new.sources))
            except ConfigError as exc:
                message = f"configuration reload failed, keeping the old one: {exc}"
                log.error("%s (%s)", message, origin)
                return ReloadOutcome(False, message)
            self._on_applied(new)
            self._ctx.service.prune_soon()  # retention settings apply now, not at the next snapshot
            if self._ctx.projections is not None:  # captures, monitoring, activity retention
                await self._ctx.projections.follow_config(new)
            self._ctx.hub.publish("modelStatus", model_status(self._ctx))
            log.info("configuration reloaded (%s)", origin)
            for warning in new.warnings:
                if warning not in said:  # once: what the running config said is not repeated
                    log.warning(warning)
            return ReloadOutcome(True, "configuration reloaded", config_hash(new))


RELOADER: web.AppKey[ConfigReloader] = web.AppKey("llamaswap_es.config_reloader", ConfigReloader)


def register(router: web.UrlDispatcher) -> None:
    router.add_post("/api/config/reload", reload_route)


async def reload_route(request: web.Request) -> web.Response:
    """Ours: re-read the config files now. 200 with the new config hash, 400 naming the problem
    (the running configuration is kept), 404 when this app was built without config files."""
    reloader = request.app.get(RELOADER)
    if reloader is None:
        return error_response(request, 404, "configuration reload is not available here")
    outcome = await reloader.reload("POST /api/config/reload")
    if not outcome.ok:
        return error_response(request, 400, outcome.message)
    ctx = request.app[CTX]
    return web.json_response(
        {"msg": outcome.message, "config_hash": outcome.config_hash, "sources": ctx.config.sources}
    )
