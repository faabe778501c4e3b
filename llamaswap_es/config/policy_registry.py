"""The registry of scheduling policies: every name a config may select, and where it lives.

One table answers "which policies exist" for everything that asks: config validation
(`routing.scheduler.use` and its error text), the replay CLI's `--scheduler` choices, what-if's
`--set policy=`, and the loader that hands the policy objects to the core
(`runtime.policy_loader`). It has two sources, read the same way:

* the package's own policies, declared below as entry-point targets ("module:attribute");
* the Python entry point group `llamaswap_es.policies` of every installed distribution, as
  Datasette finds its plugins: a policy in its own package registers itself with one line of
  its pyproject.toml and needs no change here (docs/scheduling-policies.md).

Only metadata is read here (names and targets), nothing is imported, so the config layer stays
below the core. The entry points are read anew on every call: a policy installed while the
server runs is seen by the next load (the server loads policies at start and on reload).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "llamaswap_es.policies"

BUILTIN_POLICIES: dict[str, str] = {
    "fifo": "llamaswap_es.core.policy_fifo:FifoPolicy",
    "serial": "llamaswap_es.core.policy_serial:SerialPolicy",
}
"""The package's own policies, in the entry points' own form (a built-in is a plugin that
ships with the package)."""


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One registered policy: its name, the "module:attribute" that holds it, and who
    registered it (for error messages: "built in" or "entry point of <distribution>")."""

    name: str
    target: str
    origin: str


class PolicyRegistryError(ValueError):
    """Two registrations claim one name: the message names both."""


def policy_entries() -> dict[str, PolicyEntry]:
    """Every registered policy by name: the built-ins, then the installed entry points."""
    entries = {
        name: PolicyEntry(name, target, "built in") for name, target in BUILTIN_POLICIES.items()
    }
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        origin = f"entry point {ep.name!r} of {dist} (group {ENTRY_POINT_GROUP})"
        known = entries.get(ep.name)
        if known is not None:
            if known.target == ep.value:  # the same distribution seen twice on sys.path
                continue
            raise PolicyRegistryError(
                f"scheduling policy {ep.name!r} is registered twice: {known.origin} "
                f"({known.target}) and {origin} ({ep.value}); uninstall one or rename it"
            )
        entries[ep.name] = PolicyEntry(ep.name, ep.value, origin)
    return entries


def policy_names() -> list[str]:
    """The registered policies' names, sorted (for choices and error messages)."""
    return sorted(policy_entries())


def unknown_policy_text(name: str) -> str:
    """The error text for a name no policy is registered under, listing the valid ones
    (llama-swap's wording first, then how a policy from another package gets in)."""
    return (
        f'unknown scheduler "{name}" (valid: {", ".join(policy_names())}); a policy from '
        f"another package registers itself in the entry point group {ENTRY_POINT_GROUP}"
    )
