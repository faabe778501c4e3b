"""Wake-on-LAN magic packets: the MAC address and the broadcast address read, the bytes built.

A magic packet is six 0xFF bytes followed by the target's MAC address sixteen times (102 bytes),
sent as one UDP datagram, by convention to port 9 of the LAN's broadcast address; the network
card of a sleeping machine that recognises its address wakes the machine up.
"""

from __future__ import annotations

import ipaddress
import re
import socket

MAC_BYTES = 6
DEFAULT_PORT = 9
DEFAULT_BROADCAST = f"255.255.255.255:{DEFAULT_PORT}"
_HEX_GROUPS = (
    re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"),  # aa:bb:cc:dd:ee:ff
    re.compile(r"[0-9a-f]{2}(-[0-9a-f]{2}){5}"),  # aa-bb-cc-dd-ee-ff
    re.compile(r"[0-9a-f]{4}(\.[0-9a-f]{4}){2}"),  # aabb.ccdd.eeff
    re.compile(r"[0-9a-f]{12}"),  # aabbccddeeff
)


def parse_mac(text: str) -> bytes:
    """The six bytes of a MAC address written `aa:bb:cc:dd:ee:ff`, with `-`, as `aabb.ccdd.eeff`
    or as 12 hex digits (any case); ValueError naming the text otherwise."""
    lowered = text.strip().lower()
    if not any(pattern.fullmatch(lowered) for pattern in _HEX_GROUPS):
        raise ValueError(
            f"--mac {text!r}: not a MAC address; write six hex pairs such as aa:bb:cc:dd:ee:ff"
        )
    return bytes.fromhex(re.sub(r"[:.\-]", "", lowered))


def format_mac(mac: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in mac)


def magic_packet(mac: bytes) -> bytes:
    """Six 0xFF bytes, then the MAC sixteen times."""
    if len(mac) != MAC_BYTES:
        raise ValueError(f"a MAC address has {MAC_BYTES} bytes, got {len(mac)}")
    return b"\xff" * 6 + mac * 16


def parse_broadcast(text: str) -> tuple[str, int]:
    """`ADDRESS[:PORT]` (an IPv4 address, port 9 by default) → (address, port).

    An address, not a host name: resolving a name would block, and a wake-up is sent exactly
    when the network may be half asleep. A subnet's own broadcast address (e.g. 192.168.1.255)
    reaches machines behind routers that drop 255.255.255.255.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = text.strip(), str(DEFAULT_PORT)
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(
            f"--broadcast {text!r}: expected an IPv4 address with an optional port, "
            f"such as {DEFAULT_BROADCAST} or 192.168.1.255:9"
        ) from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"--broadcast {text!r}: the port must be a number from 1 to 65535")
    return str(address), int(port_text)


def send_packet(packet: bytes, address: tuple[str, int]) -> None:
    """One UDP datagram to `address`, broadcast allowed; OSError when the host cannot send it
    (no route, network down). Sending a datagram does not wait on the network."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        sock.sendto(packet, address)
