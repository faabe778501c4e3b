"""Deterministic generated text, token counts and llama-server style `timings`.

Token i of any answer is `WORDS[i % len(WORDS)]`, so a test knows the exact text of an answer of
N tokens (`answer_text(N)`), streamed or not. Prompt tokens are whitespace-separated words.
"""

from __future__ import annotations

import hashlib
from typing import Any

WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
)

PROMPT_MS_PER_TOKEN = 0.5
"""Fixed prompt speed (2000 tokens/s) so `timings` are deterministic."""


def token_piece(index: int, total: int) -> str:
    """The text of token `index` of an answer of `total` tokens (words joined by spaces)."""
    word = WORDS[index % len(WORDS)]
    return word if index == total - 1 else word + " "


def answer_text(total: int) -> str:
    """The whole answer of `total` tokens, equal to the concatenated streamed pieces."""
    return "".join(token_piece(i, total) for i in range(total))


def count_tokens(value: Any) -> int:
    """Words in a prompt of any shape (string, chat messages, content parts, lists)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(count_tokens(v) for k, v in value.items() if k in ("content", "text"))
    if isinstance(value, list):
        return sum(count_tokens(item) for item in value)
    return 0


def timings(prompt_n: int, predicted_n: int, token_delay_ms: int) -> dict[str, float | int]:
    """llama-server's `timings` object for a request (deterministic, not measured)."""
    prompt_ms = prompt_n * PROMPT_MS_PER_TOKEN
    predicted_ms = float(predicted_n * max(token_delay_ms, 1))
    return {
        "cache_n": 0,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": PROMPT_MS_PER_TOKEN if prompt_n else 0.0,
        "prompt_per_second": 1000 / PROMPT_MS_PER_TOKEN if prompt_n else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted_n if predicted_n else 0.0,
        "predicted_per_second": predicted_n * 1000 / predicted_ms if predicted_n else 0.0,
    }


def usage(prompt_n: int, predicted_n: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_n,
        "completion_tokens": predicted_n,
        "total_tokens": prompt_n + predicted_n,
    }


def embedding(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit-free vector derived from the text's hash."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i] / 255, 6) for i in range(dims)]


def relevance(query: str, document: str) -> float:
    """Share of the query's words found in the document: deterministic and orderable."""
    words = set(query.lower().split())
    if not words:
        return 0.0
    return round(len(words & set(document.lower().split())) / len(words), 6)
