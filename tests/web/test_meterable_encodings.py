"""On metered POSTs only gzip/deflate reach the upstream, so its answer stays parseable."""

from __future__ import annotations

import pytest

from llamaswap_es.web.dispatch import meterable_encodings


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("gzip, deflate, br, zstd", "gzip, deflate"),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip;q=0.8"),
        ("br", ""),
        ("GZIP", "GZIP"),
        ("identity, deflate;q=0.5", "deflate;q=0.5"),
    ],
)
def test_only_gzip_and_deflate_are_kept_with_their_q_values(sent: str, forwarded: str) -> None:
    assert meterable_encodings(sent) == forwarded
