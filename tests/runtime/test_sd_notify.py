"""The notify protocol's small rules, against a real AF_UNIX datagram socket: paths and abstract
names, one datagram per message, WATCHDOG_USEC only for this process, the variables removed so
models never inherit them, and a stale run loop withholding WATCHDOG=1 while still reporting."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from llamaswap_es.runtime.loop_health import LoopHealth
from llamaswap_es.runtime.sd_notify import (
    Notifier,
    forget_notify_environment,
    one_line,
    socket_address,
    watchdog_interval_s,
)
from llamaswap_es.runtime.supervisor_feed import SupervisorFeed


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_a_path_and_an_abstract_name_both_receive(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    abstract = f"@llamaswap-es-unit-{os.getpid()}"
    for value in (path, abstract):
        address = socket_address(value)
        assert address is not None
        with _receiver(address) as receiver:
            notifier = Notifier.from_environ({"NOTIFY_SOCKET": value})
            assert notifier is not None
            assert notifier.send("READY=1", "STATUS=up")
            assert receiver.recv(4096) == b"READY=1\nSTATUS=up"
            notifier.close()
    assert socket_address("relative/path") is None
    assert Notifier.from_environ({}) is None


def test_a_missing_socket_is_reported_once_and_never_raises(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.send("WATCHDOG=1") is False
    assert notifier.send("WATCHDOG=1") is False
    notifier.close()


def test_the_watchdog_interval_is_ours_only() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 2.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


def test_the_variables_are_removed_and_status_is_one_line() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "PATH": "/bin"}
    forget_notify_environment(env)
    assert env == {"PATH": "/bin"}
    assert one_line("a\nb\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 400


def test_a_stale_loop_gets_no_watchdog_but_its_reasons(tmp_path: Path) -> None:
    now = [100.0]
    health = LoopHealth(stale_after_s=10, monotonic=lambda: now[0])
    path = str(tmp_path / "notify")
    with _receiver(path) as receiver:
        feed = SupervisorFeed(Notifier(path), health, lambda: "serving: 0 models loaded",
                              watchdog_s=1.0)  # fmt: skip
        feed.tick()
        assert receiver.recv(4096) == b"WATCHDOG=1\nSTATUS=serving: 0 models loaded"
        now[0] += 11  # no beat for 11 s: the loop is not turning
        feed.tick()
        stale = receiver.recv(4096).decode()
        assert "WATCHDOG" not in stale
        assert stale.startswith("STATUS=not serving: the scheduler loop has not turned for 11 s")
        health.beat()
        feed.tick()
        assert receiver.recv(4096).startswith(b"WATCHDOG=1\n"), "fed again once it turns"
