"""Credentials never reach log text (issue 13, item 7): what `redact_text` hides and keeps."""

from __future__ import annotations

import logging

import pytest

from llamaswap_es.redaction import REDACTED, redact_text
from llamaswap_es.runtime.logs import ProxyLogHandler, UpstreamLogs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"GET /v1/models?api_key=s3cr3t HTTP/1.1" 401',
            f'"GET /v1/models?api_key={REDACTED} HTTP/1.1" 401',
        ),
        (
            "/x?model=m&KEY=a;token=b&hf_token=c&max_tokens=5&access_token=d",
            f"/x?model=m&KEY={REDACTED};token={REDACTED}&hf_token={REDACTED}&max_tokens=5"
            f"&access_token={REDACTED}",
        ),
        ("/x?api%5Fkey=s3cr3t", f"/x?api%5Fkey={REDACTED}"),
        ("Authorization: Bearer sk-abcdef", f"Authorization: Bearer {REDACTED}"),
        ("authorization: Basic dXNlcjpwYXNz", f"authorization: Basic {REDACTED}"),
        ('{"x-api-key": "s3cr3t"}', f'{{"x-api-key": "{REDACTED}"}}'),
        ("upstream http://u:pw@h:9/v1 down", f"upstream http://{REDACTED}@h:9/v1 down"),
    ],
)
def test_credentials_are_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "/v1/chat/completions?model=m&stream=true",
        "model=m instance=01J state=ready",  # our key=value log fields: not a query
        "a basic model keeps its text",
        "/x?api_key=&model=m",  # nothing to hide
    ],
)
def test_ordinary_text_is_kept(text):
    assert redact_text(text) == text


def test_configured_keys_are_hidden_wherever_they_stand():
    assert redact_text("/upstream/m/sk-long-key/x", ["sk-long", "sk-long-key"]) == (
        f"/upstream/m/{REDACTED}/x"
    )


def test_every_proxy_log_line_is_redacted():
    logs = UpstreamLogs(log_to_stdout="none")
    logger = logging.getLogger("tests.redaction.proxy")
    handler = ProxyLogHandler(logs, secrets=["configured-key"])
    logger.addHandler(handler)
    try:
        logger.warning("fetching %s", "http://h/x?token=abc&q=1 with configured-key")
    finally:
        logger.removeHandler(handler)
    history = logs.history("proxy")
    # after the line's timestamp (runtime/log_format.py)
    assert history.endswith(
        f" [WARN] fetching http://h/x?token={REDACTED}&q=1 with {REDACTED}\n"
    ), history
    assert "abc" not in history and "configured-key" not in history
