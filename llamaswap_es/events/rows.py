"""Envelopes to table rows and back: the one place that knows the column order.

A row is the tuple `(seq, ts_ms, type, key, boot, v, cause, payload)`, the `events` table's column
order, which the bundle format also uses. Encoding goes through the codec (sorted-key JSON text),
decoding through the codec's validating path or its trusted fast path for our own log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llamaswap_es.events import codec
from llamaswap_es.events.types import Envelope, Event

COLUMNS = "seq, ts_ms, type, key, boot, v, cause, payload"
Row = tuple[int, int, str, str | None, str, int, int | None, str]
"""(seq, ts_ms, type, key, boot, v, cause, payload)"""

UnsequencedRow = tuple[int, str, str | None, str, int, int | None, str]
"""A row before the writer gives it a seq: (ts_ms, type, key, boot, v, cause, payload)."""

PER_REQUEST_TYPES = frozenset(
    {"Dispatch", "PeerRequestFinished", "QueuePositions", "RequestFinished", "RequestReceived"}
)
"""The types every request writes: left out of the `events_by_type` index (migration 0005)."""

PACKED_TYPES = frozenset(
    {
        "Dispatch", "DispatchUnreachable", "PeerRequestFinished", "QueuePositions", "Reject",
        "RequestAbandoned", "RequestCancelled", "RequestFinished", "RequestReceived",
        "SelectionEnded", "SelectorChose", "SelectorRequested",
    }
)  # fmt: skip
"""The types packed once every reader has passed them (events/pack.py): every event keyed by a
request id, and the queue positions. Process, swap, timer and config events always stay rows."""

TYPE_INDEX_WHERE = "type NOT IN ({})".format(
    ", ".join(f"'{name}'" for name in sorted(PER_REQUEST_TYPES))
)
"""The partial index's WHERE, word for word: a query that adds it may use the index."""


def encode_envelopes(envelopes: Sequence[Envelope], default_boot: str) -> list[UnsequencedRow]:
    """Encode a batch before it is queued, so a bad payload fails its own caller only."""
    rows: list[UnsequencedRow] = []
    for env in envelopes:
        if not isinstance(env, Envelope):
            raise TypeError(f"append_batch takes Envelope objects, got {type(env).__name__}")
        body = env.body
        rows.append(
            (
                int(env.ts_ms),
                body.type_name,
                _key_text(body.key),
                env.boot or default_boot,
                body.VERSION,
                env.cause,
                codec.encode_payload(body, without_key=True),
            )
        )
    return rows


def _key_text(key: Any) -> str | None:
    return None if key is None else str(key)


def decode_row(row: Sequence[Any], *, validate: bool = False) -> Envelope:
    """Turn a stored row back into an `Envelope` (trusted fast path unless `validate`).

    The payload's `KEY_FIELD` is filled in from the `key` column where the text leaves it out
    (`encode_envelopes` leaves it out of new rows; older rows carry it and read the same)."""
    seq, ts_ms, type_name, key, boot, v, cause, payload = row
    data = codec.loads(payload)
    if key is not None:
        key_field = _key_field(type_name)
        if key_field is not None and key_field not in data:
            data[key_field] = key
    body = codec.from_payload(type_name, v, data, validate=validate)
    return Envelope(body, ts_ms, boot, seq, cause)  # positional: measurably faster per row


def _key_field(type_name: str) -> str | None:
    """The type's KEY_FIELD (cached; an unknown type is left to the decoder to name)."""
    try:
        return _KEY_FIELDS[type_name]
    except KeyError:
        pass
    cls = _REGISTRY.get(type_name)
    if cls is None:
        return None
    found = _KEY_FIELDS[type_name] = cls.KEY_FIELD
    return found


_KEY_FIELDS: dict[str, str | None] = {}
_REGISTRY = Event.REGISTRY
