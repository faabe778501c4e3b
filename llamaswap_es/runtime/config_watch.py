"""`--watch-config`: poll the configuration files every 2 s, as llama-swap does, and reload.

Polling (not inotify) follows symlinks the way llama-swap's watcher does, so a Kubernetes
ConfigMap's symlink swap is noticed. A change is reported once the files have a new signature
(path, size, mtime, and a content digest so an edit within the same second still counts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("llamaswap_es.runtime.config_watch")

POLL_INTERVAL_S = 2.0


def config_files(config_file: str | None, config_dir: str | None) -> list[Path]:
    files: list[Path] = []
    if config_file:
        files.append(Path(config_file))
    if config_dir:
        directory = Path(config_dir)
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml"))
    return files


def signature(config_file: str | None, config_dir: str | None) -> str:
    digest = hashlib.sha256()
    for path in config_files(config_file, config_dir):
        try:
            digest.update(str(path).encode())
            digest.update(path.read_bytes())  # follows symlinks
        except OSError as exc:
            digest.update(f"unreadable:{exc.errno}".encode())
    return digest.hexdigest()


async def watch_config(
    config_file: str | None,
    config_dir: str | None,
    on_change: Callable[[], Awaitable[None]],
    *,
    baseline: str | None = None,
    interval_s: float = POLL_INTERVAL_S,
) -> None:
    """Run until cancelled, calling `on_change` after each change (never overlapping).

    `baseline` is the signature taken just *before* the running config was loaded, so an edit
    made while the server was starting is not missed (at worst it reloads once more).
    """
    last = baseline or await asyncio.to_thread(signature, config_file, config_dir)
    while True:
        await asyncio.sleep(interval_s)
        current = await asyncio.to_thread(signature, config_file, config_dir)
        if current != last:
            last = current
            log.info("configuration changed on disk; reloading")
            try:
                await on_change()
            except Exception:
                log.exception("reload after a configuration change failed")
