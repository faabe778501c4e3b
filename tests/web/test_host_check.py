"""The Host check's rule (web/host_check.py): which `Host` values the admin surface answers to.
The server-level behaviour (403 with the config line, one warning per host) is in
tests/e2e/test_admin_surface.py."""

from __future__ import annotations

import pytest

from llamaswap_es.web.host_check import host_is_allowed, host_name_of


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("LocalHost:8080", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("llm.lan.", "llm.lan"),
        ("10.0.0.7", "10.0.0.7"),
        ("evil example", None),
        ("host:port", None),
        ("", None),
    ],
)
def test_host_header_is_parsed(header, host):
    assert host_name_of(header) == host


@pytest.mark.parametrize(
    ("host", "allowed", "listen", "expected"),
    [
        ("localhost", [], "", True),
        ("ui.localhost", [], "", True),
        ("127.3.4.5", [], "", True),
        ("192.168.1.5", [], "0.0.0.0", True),  # the LAN by IP, listening on all interfaces
        ("fe80::1", [], "", True),
        ("evil.example", [], "", False),  # DNS rebinding
        ("evil.example", [], "0.0.0.0", False),
        ("gpu-box", [], "gpu-box", True),  # --listen gpu-box:8080
        ("gpu-box", ["gpu-box"], "", True),
        ("a.lan", ["*.lan"], "", True),
        ("lan", ["*.lan"], "", False),  # *.domain is its subdomains only
        ("evil-lan", ["*.lan"], "", False),
        ("anything.example", ["*"], "", True),
        ("localhost.evil.example", [], "", False),
    ],
)
def test_host_rule(host, allowed, listen, expected):
    assert host_is_allowed(host, allowed, listen) is expected
