"""The default scheduler, and what a llama-swap config that relied on the old one is told.

The fork this project follows makes `serial` the default (`routing.scheduler.use` unset means
`serial`); llama-swap's `fifo` stays one line away. Serial runs one request and one model at a
time, so it ignores everything a config says about models running side by side: a group with
`swap: false`, a non-exclusive or persistent group, a matrix set of several models, and fifo's
priorities. A config written for llama-swap that relies on any of these and names no scheduler
would quietly lose it; `default_scheduler_warning` says so, once, with the one YAML line that
keeps llama-swap's behaviour.
"""

from __future__ import annotations

from llamaswap_es.config.matrix import CompiledMatrix
from llamaswap_es.config.models import DEFAULT_GROUP, LlamaSwapConfig

DEFAULT_SCHEDULER = "serial"
UPSTREAM_SCHEDULER = "fifo"


def co_residency_reasons(config: LlamaSwapConfig, compiled: CompiledMatrix | None) -> list[str]:
    """What in this (normalised) config only means something when models may run together,
    or when the queue is ordered by priority; empty when serial loses nothing."""
    reasons: list[str] = []
    groups = config.routing.router.settings.groups
    for name in sorted(groups):
        if name == DEFAULT_GROUP:
            continue
        group = groups[name]
        settings = []
        if not group.swap and len(group.members) > 1:
            settings.append("swap: false")
        if not group.exclusive:
            settings.append("exclusive: false")
        if group.persistent:
            settings.append("persistent: true")
        if settings:
            reasons.append(f'group "{name}" has {", ".join(settings)}')
    if compiled is not None:
        shared = [
            name
            for name, family in compiled.sets.items()
            if any(len(models) > 1 for models in family)
        ]
        if shared:
            listed = ", ".join(f'"{name}"' for name in shared)
            reasons.append(f"the matrix lets models run together (set {listed})")
    if config.routing.scheduler.settings.fifo.priority:
        reasons.append("routing.scheduler.settings.fifo.priority orders the queue")
    return reasons


def keep_fifo_line(config: LlamaSwapConfig) -> str:
    """The one YAML line that selects fifo, placed where this config's own keys allow it
    (a second top-level `routing:` would be a duplicate key)."""
    if "routing" not in config.model_fields_set:
        return "at the top level: routing: {scheduler: {use: fifo}}"
    if "scheduler" not in config.routing.model_fields_set:
        return "under routing: scheduler: {use: fifo}"
    return "under routing.scheduler: use: fifo"


def default_scheduler_warning(
    config: LlamaSwapConfig, compiled: CompiledMatrix | None
) -> str | None:
    """The warning for a config that names no scheduler and relies on co-residency or
    priorities (call before the default is filled in); None when there is nothing to say."""
    if config.routing.scheduler.use != "":
        return None
    reasons = co_residency_reasons(config, compiled)
    if not reasons:
        return None
    return (
        f'routing.scheduler.use is not set, so the "{DEFAULT_SCHEDULER}" scheduler is used '
        "(llamaswap-es's default: one request and one loaded model at a time), but this config "
        f'relies on llama-swap\'s "{UPSTREAM_SCHEDULER}": {"; ".join(reasons)}. Serial ignores '
        f"that. To keep llama-swap's behaviour, add this line {keep_fifo_line(config)}"
    )
