"""Magic packets and the addresses they are built from and sent to."""

from __future__ import annotations

import logging

import pytest

from llamaswap_es.wol.magic_packet import magic_packet, parse_broadcast, parse_mac
from llamaswap_es.wol.waker import Waker


@pytest.mark.parametrize(
    "text", ["0a:1b:2c:3d:4e:5f", "0A-1B-2C-3D-4E-5F", "0a1b.2c3d.4e5f", "0a1b2c3d4e5f"]
)
def test_a_mac_address_is_read_in_its_usual_spellings(text: str) -> None:
    assert parse_mac(text) == bytes([0x0A, 0x1B, 0x2C, 0x3D, 0x4E, 0x5F])


@pytest.mark.parametrize("text", ["", "0a:1b:2c:3d:4e", "0a:1b:2c:3d:4e:5g", "0a:1b-2c:3d:4e:5f"])
def test_a_bad_mac_address_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^--mac {text!r}: not a MAC address"):
        parse_mac(text)


def test_the_packet_is_six_ff_bytes_then_the_mac_sixteen_times() -> None:
    mac = bytes.fromhex("0a1b2c3d4e5f")
    packet = magic_packet(mac)
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert [packet[i : i + 6] for i in range(6, 102, 6)] == [mac] * 16


def test_the_broadcast_address_takes_port_9_unless_told() -> None:
    assert parse_broadcast("192.168.1.255") == ("192.168.1.255", 9)
    assert parse_broadcast("255.255.255.255:7") == ("255.255.255.255", 7)
    with pytest.raises(ValueError, match=r"^--broadcast 'lan\.example': expected an IPv4"):
        parse_broadcast("lan.example")
    with pytest.raises(ValueError, match=r"^--broadcast '10\.0\.0\.255:0': the port must be"):
        parse_broadcast("10.0.0.255:0")


def test_a_burst_of_causes_sends_one_packet_and_logs_every_cause(
    packet_sink, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    host, port = packet_sink.address.split(":")
    waker = Waker(parse_mac("0a:1b:2c:3d:4e:5f"), (host, int(port)), monotonic=lambda: now[0])
    caplog.set_level(logging.INFO, logger="llamaswap_es.wol")
    assert waker.wake("POST /v1/chat/completions from 10.0.0.7")
    now[0] += 0.5
    assert not waker.wake("GET /ui/ from 10.0.0.8")
    assert len(packet_sink.pending()) == 1
    now[0] += 2.0  # past the resend interval: a new cause sends again
    assert waker.wake("GET /v1/models from 10.0.0.7")
    assert len(packet_sink.pending()) == 1
    assert (waker.counts.sent, waker.counts.coalesced) == (2, 1)
    causes = [r.getMessage() for r in caplog.records]
    assert any("wake-up sent" in m and "cause=POST /v1/chat/completions" in m for m in causes)
    assert any("wake-up already sent 0.5s ago" in m and "cause=GET /ui/ from" in m for m in causes)


def test_a_packet_that_cannot_be_sent_is_counted_and_explained() -> None:
    # 0.0.0.0 is not a destination a datagram can be sent to: the kernel refuses it.
    waker = Waker(parse_mac("0a:1b:2c:3d:4e:5f"), ("0.0.0.0", 0))
    assert not waker.wake("POST /v1/completions from 10.0.0.7")
    assert waker.counts.send_errors == 1
    assert waker.counts.last_error.startswith(
        "sending the magic packet to 0a:1b:2c:3d:4e:5f via 0.0.0.0:0 failed: "
    )
