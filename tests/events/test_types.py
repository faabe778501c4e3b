"""Every event and decision type encodes to stable JSON and decodes back to an equal value."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from llamaswap_es.events import codec
from llamaswap_es.events.types import all_event_classes

_SAMPLES: dict[type, typing.Any] = {
    str: "m1",
    int: 7,
    bool: True,
}


def _sample(cls: type) -> typing.Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is tuple:
            kwargs[f.name] = ("a", "b")
        elif origin is dict:
            kwargs[f.name] = {"k": "v"} if args[1] is str else {"k": 1}
        elif hint in _SAMPLES:
            kwargs[f.name] = _SAMPLES[hint]
        elif args and args[0] in _SAMPLES:
            kwargs[f.name] = _SAMPLES[args[0]]
        else:  # pragma: no cover - a new field type needs a sample here
            raise AssertionError(f"no sample for {cls.__name__}.{f.name}: {hint}")
    return cls(**kwargs)


@pytest.mark.parametrize("name", sorted(all_event_classes()))
@pytest.mark.parametrize("validate", [True, False])
def test_round_trip(name: str, validate: bool) -> None:
    cls = all_event_classes()[name]
    body = _sample(cls)
    text = codec.encode_payload(body)
    assert codec.encode_payload(codec.decode_payload(name, cls.VERSION, text)) == text
    assert codec.decode_payload(name, cls.VERSION, text, validate=validate) == body


def test_payload_keys_are_sorted() -> None:
    cls = all_event_classes()["ProcessSpawned"]
    text = codec.encode_payload(_sample(cls))
    keys = list(codec.loads(text))
    assert keys == sorted(keys)


def test_newer_payload_version_is_refused_with_a_clear_error() -> None:
    with pytest.raises(codec.PayloadError, match="newer than this code"):
        codec.decode_payload("TimerFired", 99, '{"timer_id": "t"}')


def test_invalid_payload_names_the_type() -> None:
    with pytest.raises(codec.PayloadError, match="ProcessReady v1 payload is invalid"):
        codec.decode_payload("ProcessReady", 1, '{"model": "m"}')
