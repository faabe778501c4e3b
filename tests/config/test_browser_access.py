"""`llamaswap-es.allowedHosts` / `allowedOrigins`: normalised to what requests carry, and an
entry that could never match refused with the file, the key and what to write instead."""

from __future__ import annotations

import pytest

from llamaswap_es.errors import ConfigError


def _section(key: str, entries: str) -> str:
    return f"models: {{}}\nllamaswap-es:\n  {key}: {entries}\n"


def test_entries_are_normalised_to_what_headers_carry(load_yaml):
    config = load_yaml(
        "llamaswap-es:\n"
        '  allowedHosts: [LLM.Example.com., "*.LAN", "[::1]", llm.example.com]\n'
        '  allowedOrigins: ["HTTP://Dash.example:80/", "https://x:8443", "http://[::1]:3000"]\n'
    )
    ours = config.llamaswap_es
    assert ours.allowed_hosts == ["llm.example.com", "*.lan", "::1"]
    assert ours.allowed_origins == ["http://dash.example", "https://x:8443", "http://[::1]:3000"]


def test_defaults_are_empty(load_yaml):
    ours = load_yaml("models: {}\n").llamaswap_es
    assert ours.allowed_hosts == [] and ours.allowed_origins == []


@pytest.mark.parametrize(
    ("key", "entries", "message"),
    [
        ("allowedHosts", "[ok, http://llm.lan/]", 'allowedHosts[1]: "http://llm.lan/" is not a '
         'host name: write the name only, without scheme or path (e.g. "llm.lan")'),
        ("allowedHosts", "[llm.lan:8080]", 'carries a port: write the host name only (any port '
         'is allowed), e.g. "llm.lan"'),
        ("allowedHosts", '["a b"]', '"a b" is not a host name'),
        ("allowedHosts", '["ü.example"]', 'is not ASCII (write "xn--tda.example")'),
        ("allowedHosts", '[""]', "allowedHosts[0]: an empty entry"),
        ("allowedOrigins", "[localhost:3000]", 'write scheme://host[:port], e.g. '
         '"http://localhost:3000"'),
        ("allowedOrigins", '["null"]', 'the "null" origin of files and sandboxed pages can '
         "never be allowed"),
        ("allowedOrigins", "[http://x/app]", 'an origin has no path, query or user name '
         '(e.g. "http://x")'),
        ("allowedOrigins", '["http://x:99999"]', '"x:99999" is not host[:port]'),
    ],
)  # fmt: skip
def test_an_entry_that_cannot_match_is_refused(load_yaml, key, entries, message):
    with pytest.raises(ConfigError) as caught:
        load_yaml(_section(key, entries))
    assert message in caught.value.message
    assert caught.value.key_path == f"llamaswap-es.{key}"
    assert caught.value.source and caught.value.source.endswith("config.yaml")
