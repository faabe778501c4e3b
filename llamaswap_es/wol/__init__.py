"""`llamaswap-es wol-proxy`: wakes a sleeping llama-swap server with wake-on-LAN, then proxies.

docs/wol-proxy.md describes it for users.
"""

from llamaswap_es.wol.command import SUBCOMMAND
from llamaswap_es.wol.magic_packet import magic_packet, parse_broadcast, parse_mac
from llamaswap_es.wol.proxy import ProxySettings, WolProxy
from llamaswap_es.wol.upstream_watch import UpstreamWatch
from llamaswap_es.wol.waker import Waker

__all__ = [
    "SUBCOMMAND",
    "ProxySettings",
    "UpstreamWatch",
    "Waker",
    "WolProxy",
    "magic_packet",
    "parse_broadcast",
    "parse_mac",
]
