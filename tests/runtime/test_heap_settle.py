"""Settling the heap after start-up and after a reload: garbage is collected, not frozen for good,
and what is alive stays out of the collector's full passes until the next settle."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from llamaswap_es.runtime import heap_settle


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_start_up_garbage_is_collected_before_the_freeze() -> None:
    node, ref = _cycle()
    del node
    heap_settle.settle()
    assert ref() is None
    assert gc.get_freeze_count() > 0


def test_a_live_object_is_frozen_then_collected_by_the_next_settle_once_dropped() -> None:
    node, ref = _cycle()
    heap_settle.settle()
    del node
    gc.collect()
    assert ref() is not None, "frozen objects are out of the collector's reach"
    heap_settle.settle()  # as after a reload: the replaced configuration goes
    assert ref() is None
