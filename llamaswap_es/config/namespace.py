"""The shared name space of a config: peers, selectors and profiles (spec §11.2, §13, §14).

Model ids, aliases, peer model names, selector ids and profile pins all answer to one request
`model` field, so the loader refuses names that would be ambiguous, with llama-swap's texts.
`NameResolver` is also what the server uses to resolve a requested name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llamaswap_es.config.matrix import CompiledMatrix
from llamaswap_es.config.models import LlamaSwapConfig
from llamaswap_es.config.normalize import DEFAULT_GROUP, ConfigIssue, resolve_local

SELECTOR_STRATEGIES = ("warm", "pin", "spillover")
_FQN_CONFLICT = "conflicts with fully qualified peer model name"


@dataclass
class NameResolver:
    """Resolves requested names: local id, local alias, peer FQN, unique bare peer model."""

    config: LlamaSwapConfig
    fqns: dict[str, tuple[str, str]] = field(default_factory=dict)
    bare: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for peer_id in sorted(self.config.peers):
            for model in dict.fromkeys(self.config.peers[peer_id].models):
                self.bare.setdefault(model, []).append(peer_id)

    def local(self, name: str) -> str | None:
        return resolve_local(self.config, name)

    def peer(self, name: str) -> str | None:
        """The FQN a name resolves to among peers, or None."""
        if name in self.fqns:
            return name
        owners = self.bare.get(name, [])
        if len(owners) == 1:
            return f"{owners[0]}/{name}"
        return None

    def resolve(self, name: str) -> str | None:
        return self.local(name) or self.peer(name)


def validate_namespace(config: LlamaSwapConfig, compiled: CompiledMatrix | None) -> NameResolver:
    """Steps 16-18: peer names, selectors, profiles."""
    resolver = NameResolver(config)
    _peers(config, resolver)
    _selectors(config, resolver, compiled)
    _profiles(config, resolver)
    return resolver


def _peers(config: LlamaSwapConfig, resolver: NameResolver) -> None:
    for peer_id in sorted(config.peers):
        for model in config.peers[peer_id].models:
            fqn = f"{peer_id}/{model}"
            other = resolver.fqns.get(fqn)
            if other is not None and other != (peer_id, model):
                raise ConfigIssue(
                    f'peer model name "{fqn}" is ambiguous between peers.{other[0]} model '
                    f'"{other[1]}" and peers.{peer_id} model "{model}"',
                    f"peers.{peer_id}.models",
                )
            resolver.fqns[fqn] = (peer_id, model)
    for fqn in sorted(resolver.fqns):
        if fqn in config.models:
            raise ConfigIssue(f'model ID "{fqn}" {_FQN_CONFLICT}', f"models.{fqn}")
        for model_id in sorted(config.models):
            if fqn in config.models[model_id].aliases:
                raise ConfigIssue(
                    f'model {model_id} alias "{fqn}" {_FQN_CONFLICT}', f"models.{model_id}.aliases"
                )
        if fqn in config.alias_table:
            raise ConfigIssue(f'model alias "{fqn}" {_FQN_CONFLICT}', "models")
        if fqn in config.selectors:
            raise ConfigIssue(f'selector ID "{fqn}" {_FQN_CONFLICT}', f"selectors.{fqn}")
        for name in sorted(config.profiles):
            if fqn in config.profiles[name].pins:
                raise ConfigIssue(
                    f'profile {name} pin "{fqn}" {_FQN_CONFLICT}', f"profiles.{name}.pins"
                )


def _selectors(
    config: LlamaSwapConfig, resolver: NameResolver, compiled: CompiledMatrix | None
) -> None:
    for sel_id in sorted(config.selectors):
        sel = config.selectors[sel_id]
        where = f"selectors.{sel_id}"
        if not sel_id.strip():
            raise ConfigIssue("selectors: selector names cannot be empty", "selectors")
        if sel_id in config.models:
            raise ConfigIssue(f'{where}: name conflicts with model ID "{sel_id}"', where)
        if sel_id in config.alias_table:
            raise ConfigIssue(f'{where}: name conflicts with model alias "{sel_id}"', where)
        if not sel.strategy:
            raise ConfigIssue(f"{where}.strategy is required", f"{where}.strategy")
        if sel.strategy not in SELECTOR_STRATEGIES:
            raise ConfigIssue(
                f'{where}.strategy: unknown strategy "{sel.strategy}" (valid: warm, pin, '
                "spillover)",
                f"{where}.strategy",
            )
        if not sel.targets:
            raise ConfigIssue(
                f"{where}.targets must contain at least one entry", f"{where}.targets"
            )
        resolved: list[tuple[str, bool]] = []  # (real id or FQN, is local)
        for index, target in enumerate(sel.targets):
            at = f"{where}.targets[{index}]"
            if target in config.selectors:
                raise ConfigIssue(
                    f'{at} references selector "{target}"; selector chaining is not supported', at
                )
            local = resolver.local(target)
            remote = None if local else resolver.peer(target)
            if local is None and remote is None:
                raise ConfigIssue(f'{at} references unknown model "{target}"', at)
            if sel.strategy == "warm" and local is None:
                raise ConfigIssue(f'{at} must resolve to a local model for strategy "warm"', at)
            resolved.append((local or remote or "", local is not None))
        if sel.strategy == "spillover":
            _spillover(config, sel_id, sel.settings.spillover, resolved, compiled)


def _spillover(
    config: LlamaSwapConfig,
    sel_id: str,
    spillover: int,
    resolved: list[tuple[str, bool]],
    compiled: CompiledMatrix | None,
) -> None:
    where = f"selectors.{sel_id}"
    if spillover < 1:
        raise ConfigIssue(f"{where}.settings.spillover must be >= 1", f"{where}.settings.spillover")
    seen: set[str] = set()
    for name, _ in resolved:
        if name in seen:
            raise ConfigIssue(
                f'{where}.targets contains duplicate resolved model "{name}"', f"{where}.targets"
            )
        seen.add(name)
    local = [name for name, is_local in resolved if is_local]
    if len(local) < 2:
        return
    if compiled is not None:
        if not compiled.some_set_contains(set(local)):
            raise ConfigIssue(
                f"{where}.targets must all appear together in one expanded matrix set",
                f"{where}.targets",
            )
        return
    groups = config.routing.router.settings.groups
    group_of = {m: g for g, group in groups.items() for m in group.members}
    first = group_of.get(local[0])
    if first is None:
        raise ConfigIssue(f'{where} target "{local[0]}" is not in a routing group', where)
    if groups[first].swap or first == DEFAULT_GROUP:
        raise ConfigIssue(f"{where} spillover targets must share a group with swap: false", where)
    if any(group_of.get(m) != first for m in local[1:]):
        raise ConfigIssue(f"{where} spillover targets must share one routing group", where)


def _profiles(config: LlamaSwapConfig, resolver: NameResolver) -> None:
    for name in sorted(config.profiles):
        profile = config.profiles[name]
        where = f"profiles.{name}"
        if not name.strip():
            raise ConfigIssue("profiles: profile names cannot be empty", "profiles")
        if not profile.pins:
            raise ConfigIssue(f"{where}.pins must contain at least one entry", f"{where}.pins")
        for pin, target in profile.pins.items():
            if not pin.strip():
                raise ConfigIssue(f"{where}.pins: pin names cannot be empty", f"{where}.pins")
            if target and resolver.resolve(target) is None and target not in config.selectors:
                raise ConfigIssue(
                    f'{where}.pins.{pin} references unknown model "{target}"',
                    f"{where}.pins.{pin}",
                )


def name_resolver(config: LlamaSwapConfig) -> NameResolver:
    """The resolver the HTTP layer uses for a config that has already loaded (and validated)."""
    resolver = NameResolver(config)
    for peer_id in sorted(config.peers):
        for model in config.peers[peer_id].models:
            resolver.fqns.setdefault(f"{peer_id}/{model}", (peer_id, model))
    return resolver
