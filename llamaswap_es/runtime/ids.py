"""Identifiers made in the shell (never in the core): time-ordered, unique, URL-safe.

Request ids look like ULIDs: 10 characters of millisecond time then 16 of randomness, in
Crockford's base32, so they sort by creation time in SQL and in the UI. Tests inject
`SequentialIds` for readable, deterministic ids.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Protocol

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class IdProvider(Protocol):
    def new_id(self) -> str: ...


class UlidIds:
    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms

    def new_id(self) -> str:
        return _base32(self._now_ms(), 10) + _base32(secrets.randbits(80), 16)


class SequentialIds:
    def __init__(self, prefix: str = "r") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._counter):06d}"
