"""Inputs in plain words: the first sentence of an explanation ("At … (seq 7) request r2 for b
received.").

The words are the event type's own (`describe`, next to its definition in events/types.py), the
same the timeline and the UI's Events page show; this module only puts the time in front.
"""

from __future__ import annotations

from llamaswap_es.events.types import Envelope
from llamaswap_es.replay.render import local_time


def input_sentence(env: Envelope) -> str:
    """What happened at `env`, as one sentence that starts with its time."""
    when = f"At {local_time(env.ts_ms)} (seq {env.seq})"
    return f"{when} {env.body.describe()}."
