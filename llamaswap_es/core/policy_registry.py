"""The policy objects the reducer can install, by name.

Which policies exist is decided by `config.policy_registry` (the built-ins and the entry point
group `llamaswap_es.policies`); importing them is I/O, which the core does not do, so the shell
imports them (`runtime.policy_loader`) and registers each here. The two built-ins are here from
the start, so a reducer works in any process (tests, replay, the server) without that step; a
test holds this pair equal to the built-ins the config registry declares.
"""

from __future__ import annotations

from typing import cast

from llamaswap_es.core.policies import SchedulingPolicy
from llamaswap_es.core.policy_fifo import FifoPolicy
from llamaswap_es.core.policy_serial import SerialPolicy

_REQUIRED = ("planner", "queue_key", "place", "on_swap_done", "on_request_ended", "wake")

_POLICIES: dict[str, SchedulingPolicy] = {p.name: p for p in (FifoPolicy(), SerialPolicy())}


def register_policy(policy: object) -> SchedulingPolicy:
    """Make `policy` installable under its `name`, and return it as a policy. Registering the
    same class again is a no-op; another object under a taken name, or one that lacks part of
    the protocol, is a ValueError that names it."""
    name = getattr(policy, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{policy!r} has no `name` (a non-empty str class attribute)")
    missing = [m for m in _REQUIRED if not callable(getattr(policy, m, None))]
    if missing:
        raise ValueError(
            f"scheduling policy {name!r} ({type(policy).__qualname__}) lacks the method(s) "
            f"{', '.join(missing)} of core.policies.SchedulingPolicy"
        )
    known = _POLICIES.get(name)
    if known is not None:
        if type(known) is type(policy):
            return known
        raise ValueError(
            f"scheduling policy {name!r} is already registered by "
            f"{type(known).__module__}.{type(known).__qualname__}"
        )
    checked = cast(SchedulingPolicy, policy)  # `name` and every method were checked above
    _POLICIES[name] = checked
    return checked


def policy_named(name: str) -> SchedulingPolicy:
    """The policy registered under `name`; ValueError names the unknown one."""
    try:
        return _POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown scheduling policy {name!r} (loaded: {', '.join(sorted(_POLICIES))}; a "
            f"policy from another package is loaded by runtime.policy_loader.load_policies)"
        ) from None


def loaded_policy_names() -> list[str]:
    """The names of the policies registered here, sorted."""
    return sorted(_POLICIES)
