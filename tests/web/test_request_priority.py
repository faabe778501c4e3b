"""`X-Request-Priority` (ours): parsed, bounded, and refused with a clear 400 when malformed."""

from __future__ import annotations

import pytest

from llamaswap_es.web.errors import RequestError
from llamaswap_es.web.request_priority import LIMIT, request_priority


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7), (" -3 ", -3), ("0", 0), (str(LIMIT), LIMIT), (str(-LIMIT), -LIMIT)],
)
def test_an_integer_header_is_the_priority(value: str, expected: int) -> None:
    assert request_priority({"X-Request-Priority": value}) == expected


def test_no_header_means_the_models_priority() -> None:
    assert request_priority({}) is None


@pytest.mark.parametrize("value", ["high", "1.5", "", "0x10", str(LIMIT + 1), "9" * 60])
def test_anything_else_is_a_400_naming_the_header_and_value(value: str) -> None:
    with pytest.raises(RequestError) as caught:
        request_priority({"X-Request-Priority": value})
    err = caught.value
    assert err.status == 400 and err.code == "invalid_priority"
    assert "X-Request-Priority" in err.message and value[:40] in err.message
