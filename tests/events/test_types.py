"""Every event and decision type encodes to stable JSON and decodes back to an equal value."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from llamaswap_es.events import codec
from llamaswap_es.events.types import Envelope, ProcessReady, all_event_classes

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
            kwargs[f.name] = (1, 2) if args and args[0] is int else ("a", "b")
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


@pytest.mark.parametrize("name", sorted(all_event_classes()))
def test_every_type_has_its_own_words_and_the_api_sends_them(name: str) -> None:
    """One description per type, next to its definition: the timeline, explain and the UI's
    Events page all show `describe()` (the API as `text`), never the generic field dump."""
    cls = all_event_classes()[name]
    assert "describe" in vars(cls), f"{name} has no describe() of its own in events/types.py"
    body = _sample(cls)
    text = body.describe()
    assert text and not text.startswith(name), f"{name}.describe() says {text!r}"
    row = codec.envelope_to_json(Envelope(body=body, ts_ms=1, seq=1))
    assert row["text"] == text


def test_a_duration_known_from_the_log_goes_into_the_words() -> None:
    ready = ProcessReady(model="a", instance=2)
    assert ready.describe() == "a ready (instance 2)"
    assert ready.describe(elapsed_ms=480) == "a ready (instance 2) after 480 ms loading"
