"""Timers the reducer asks for come back as TimerFired, once, and can be re-armed or cancelled."""

from __future__ import annotations

from llamaswap_es.events.types import TimerFired
from llamaswap_es.runtime.clock import ManualClock
from llamaswap_es.runtime.timers import Timers


def test_a_timer_fires_once_at_its_time() -> None:
    clock = ManualClock(start_ms=1000)
    fired: list = []
    timers = Timers(clock, fired.append)
    timers.set("ttl:a:1", 1500)
    clock.advance(499)
    assert fired == []
    clock.advance(1)
    assert fired == [TimerFired(timer_id="ttl:a:1")]
    clock.advance(10_000)
    assert len(fired) == 1
    assert timers.pending() == []


def test_setting_the_same_id_again_replaces_the_old_timer() -> None:
    clock = ManualClock(start_ms=0)
    fired: list = []
    timers = Timers(clock, fired.append)
    timers.set("ttl:a:1", 100)
    timers.set("ttl:a:1", 300)
    clock.advance(200)
    assert fired == []
    clock.advance(100)
    assert [f.timer_id for f in fired] == ["ttl:a:1"]


def test_cancelled_timers_never_fire() -> None:
    clock = ManualClock(start_ms=0)
    fired: list = []
    timers = Timers(clock, fired.append)
    timers.set("a", 10)
    timers.set("b", 20)
    timers.cancel("a")
    timers.cancel_all()
    clock.advance(100)
    assert fired == []
