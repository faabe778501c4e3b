"""Reading a request's own idle TTL: LM Studio's `ttl` and Ollama's `keep_alive` (spec B.3 #9)."""

from __future__ import annotations

import json

import pytest

from llamaswap_es.events.types import TTL_FOREVER
from llamaswap_es.web.errors import RequestError
from llamaswap_es.web.keep_alive import MAX_TTL_S, ttl_fields, ttl_override_ms
from llamaswap_es.web.model_selection import model_from_json

VALID = [
    # (body fields, override in ms)
    ({}, None),
    ({"ttl": None}, None),
    ({"keep_alive": None}, None),
    ({"ttl": 0}, 0),
    ({"ttl": 1}, 1000),
    ({"ttl": 3600}, 3_600_000),
    ({"ttl": 5.0}, 5000),
    ({"ttl": MAX_TTL_S}, MAX_TTL_S * 1000),
    ({"keep_alive": 0}, 0),
    ({"keep_alive": 90}, 90_000),
    ({"keep_alive": 1.5}, 1500),
    ({"keep_alive": -1}, TTL_FOREVER),
    ({"keep_alive": -0.5}, TTL_FOREVER),
    ({"keep_alive": "5m"}, 300_000),
    ({"keep_alive": "1h30m"}, 5_400_000),
    ({"keep_alive": "90s"}, 90_000),
    ({"keep_alive": "1.5h"}, 5_400_000),
    ({"keep_alive": ".5s"}, 500),
    ({"keep_alive": "250ms"}, 250),
    ({"keep_alive": "1m30s500ms"}, 90_500),
    ({"keep_alive": "0"}, 0),
    ({"keep_alive": "0s"}, 0),
    ({"keep_alive": "-1m"}, TTL_FOREVER),
    ({"keep_alive": "-1"}, TTL_FOREVER),
    ({"keep_alive": "+2m"}, 120_000),
    ({"keep_alive": "300"}, 300_000),  # plain seconds in a string (OLLAMA_KEEP_ALIVE's form)
    ({"keep_alive": " 5m "}, 300_000),
    ({"ttl": 10, "keep_alive": "1h"}, 10_000),  # both: ttl wins
    ({"ttl": 10, "keep_alive": -1}, 10_000),
]

INVALID = [
    # (body fields, the 400's message)
    ({"ttl": -1}, f"invalid ttl -1: expected a whole number of seconds from 0 to {MAX_TTL_S}"),
    ({"ttl": 1.5}, f"invalid ttl 1.5: expected a whole number of seconds from 0 to {MAX_TTL_S}"),
    ({"ttl": "60"}, f'invalid ttl "60": expected a whole number of seconds from 0 to {MAX_TTL_S}'),
    ({"ttl": True}, f"invalid ttl true: expected a whole number of seconds from 0 to {MAX_TTL_S}"),
    ({"ttl": MAX_TTL_S + 1}, f"invalid ttl {MAX_TTL_S + 1}: expected a whole number"),
    (
        {"keep_alive": "5 minutes"},
        'invalid keep_alive "5 minutes": expected seconds or a duration like 5m',
    ),
    ({"keep_alive": ""}, 'invalid keep_alive "": expected seconds or a duration like 5m'),
    ({"keep_alive": "m"}, 'invalid keep_alive "m": expected seconds or a duration like 5m'),
    ({"keep_alive": "1h-30m"}, 'invalid keep_alive "1h-30m": expected seconds or a duration'),
    ({"keep_alive": "5d"}, 'invalid keep_alive "5d": expected seconds or a duration like 5m'),
    ({"keep_alive": True}, "invalid keep_alive true: expected seconds or a duration like 5m"),
    ({"keep_alive": [5]}, "invalid keep_alive [5]: expected seconds or a duration like 5m"),
    ({"keep_alive": "9000h"}, 'invalid keep_alive "9000h": at most 31536000 seconds'),
    # both are validated even though ttl wins
    ({"ttl": 10, "keep_alive": "soon"}, 'invalid keep_alive "soon"'),
]


@pytest.mark.parametrize(("fields", "expected"), VALID, ids=[json.dumps(c[0]) for c in VALID])
def test_valid_values(fields: dict[str, object], expected: int | None) -> None:
    body = json.dumps({"model": "m", **fields}).encode()
    _, _, found = model_from_json(body)
    assert ttl_override_ms(found) == expected


@pytest.mark.parametrize(("fields", "message"), INVALID, ids=[json.dumps(c[0]) for c in INVALID])
def test_invalid_values_name_the_field_and_the_value(fields: dict[str, object], message) -> None:
    with pytest.raises(RequestError) as caught:
        ttl_override_ms(ttl_fields(fields))
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)


def test_only_top_level_fields_count() -> None:
    body = json.dumps({"model": "m", "options": {"keep_alive": "5 minutes", "ttl": -3}}).encode()
    assert model_from_json(body)[2] == ()


def test_a_huge_bad_value_is_shown_shortened() -> None:
    with pytest.raises(RequestError) as caught:
        ttl_override_ms([("keep_alive", "x" * 10_000)])
    assert len(caught.value.message) < 200
