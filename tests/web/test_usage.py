"""Token and timing metrics from every response format (spec/api.md §14.3-14.5, §25 item 45)."""

from __future__ import annotations

import json

import pytest

from llamaswap_es.web.usage import (
    METRIC_KEYS,
    SseUsageScanner,
    error_message_from_response,
    metrics_from_response,
)

SSE = "text/event-stream"
JSON = "application/json"


def sse(*events: object, event_names: tuple[str, ...] = ()) -> bytes:
    frames = []
    for i, event in enumerate(events):
        name = f"event: {event_names[i]}\n" if i < len(event_names) else ""
        data = event if isinstance(event, str) else json.dumps(event)
        frames.append(f"{name}data: {data}\n\n")
    return "".join(frames).encode()


def tokens(metrics: dict) -> tuple:
    return tuple(metrics[k] for k in METRIC_KEYS)


# --- llama-server ---------------------------------------------------------------------------

LLAMA_TIMINGS = {
    "cache_n": 8,
    "prompt_n": 20,
    "prompt_ms": 200.0,
    "prompt_per_token_ms": 10.0,
    "prompt_per_second": 100.0,
    "predicted_n": 50,
    "predicted_ms": 1250.0,
    "predicted_per_token_ms": 25.0,
    "predicted_per_second": 40.0,
}


def test_llama_server_non_streaming_timings():
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 28, "completion_tokens": 50, "total_tokens": 78},
        "timings": LLAMA_TIMINGS,
    }
    m = metrics_from_response(json.dumps(body).encode(), JSON, wall_ms=900)
    assert (m["input_tokens"], m["output_tokens"], m["cache_tokens"]) == (20, 50, 8)
    assert (m["prompt_per_second"], m["tokens_per_second"]) == (100.0, 40.0)
    assert m["duration_ms"] == 1450  # prompt_ms + predicted_ms beats the wall time
    assert (m["draft_tokens"], m["draft_acc_tokens"]) == (-1, -1)


def test_llama_server_stream_with_timings_in_the_last_chunk():
    chunk = {
        "choices": [{"index": 0, "delta": {"content": "Hel"}}],
        "object": "chat.completion.chunk",
    }
    final = {
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "timings": LLAMA_TIMINGS,
    }
    body = sse(chunk, chunk, final, "[DONE]")
    m = metrics_from_response(body, "text/event-stream; charset=utf-8", wall_ms=3000)
    assert tokens(m) == (8, 20, 50, -1, -1, 100.0, 40.0)
    assert m["duration_ms"] == 3000


def test_llama_server_draft_tokens():
    timings = dict(LLAMA_TIMINGS, draft_n=30, draft_n_accepted=12)
    m = metrics_from_response(json.dumps({"timings": timings}).encode(), JSON)
    assert (m["draft_tokens"], m["draft_acc_tokens"]) == (30, 12)


def test_simple_responder_activity_values():
    """api.md §23.1: input 25, output 10, tokens/s 10, prompt/s 0 (absent), cache -1."""
    body = {
        "timings": {"predicted_ms": 17, "predicted_n": 10, "predicted_per_second": 10,
                    "prompt_ms": 13, "prompt_n": 25},
        "usage": {"completion_tokens": 10, "prompt_tokens": 25, "total_tokens": 35},
    }  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON, wall_ms=5)
    assert tokens(m) == (-1, 25, 10, -1, -1, 0.0, 10.0)
    assert m["duration_ms"] == 30


def test_infill_array_takes_timings_from_the_last_element():
    body = [{"content": "a", "timings": {"prompt_n": 1, "predicted_n": 1}},
            {"content": "b", "timings": {"prompt_n": 5, "predicted_n": 9}}]  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON, path="/infill")
    assert (m["input_tokens"], m["output_tokens"]) == (5, 9)


# --- OpenAI ---------------------------------------------------------------------------------


def test_openai_usage_with_cached_tokens():
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                  "prompt_tokens_details": {"cached_tokens": 4}},
    }  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON, wall_ms=10)
    assert tokens(m) == (4, 12, 7, -1, -1, -1.0, -1.0)


def test_openai_stream_include_usage_chunk():
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"delta": {"content": "x"}}],
        "usage": None,
    }
    usage_chunk = {
        "id": "c",
        "choices": [],
        "usage": {"prompt_tokens": 15, "completion_tokens": 33, "total_tokens": 48},
    }
    m = metrics_from_response(sse(chunk, usage_chunk, "[DONE]"), SSE)
    assert tokens(m) == (-1, 15, 33, -1, -1, -1.0, -1.0)


def test_stream_of_only_done_is_minimal():
    m = metrics_from_response(b"data: [DONE]\n\n", SSE, wall_ms=7)
    assert tokens(m) == (0,) * 7
    assert m["duration_ms"] == 7


def test_non_json_body_is_minimal():
    m = metrics_from_response(b"RIFF\x00\x00WAVEfmt ", "audio/wav", wall_ms=3)
    assert tokens(m) == (0,) * 7


def test_numbers_that_are_not_finite_are_ignored_not_an_exception():
    # Python's parser reads NaN, Infinity and 1e999; int() of them raises.
    body = (
        b'{"usage":{"prompt_tokens":1e999,"completion_tokens":NaN},"timings":'
        b'{"predicted_n":Infinity,"prompt_ms":1e308,"predicted_ms":1e308}}'
    )
    m = metrics_from_response(body, JSON, wall_ms=9)
    assert (m["input_tokens"], m["output_tokens"], m["duration_ms"]) == (0, 0, 9)


def test_an_answer_only_the_standard_library_reads_is_still_metered():
    body = b'{"usage":{"prompt_tokens":5,"completion_tokens":2},"score":NaN}'
    m = metrics_from_response(body, JSON, wall_ms=1)
    assert (m["input_tokens"], m["output_tokens"]) == (5, 2)


def test_json_nested_too_deeply_is_minimal():
    m = metrics_from_response(b"[" * 100_000 + b"]" * 100_000, JSON, wall_ms=4)
    assert tokens(m) == (0,) * 7


# --- Anthropic ------------------------------------------------------------------------------


def test_anthropic_stream_input_from_start_output_from_last_delta():
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
         "usage": {"input_tokens": 472, "cache_read_input_tokens": 128, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 15}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 89}},
        {"type": "message_stop"},
    ]  # fmt: skip
    names = tuple(e["type"] for e in events)
    m = metrics_from_response(sse(*events, event_names=names), SSE)
    assert tokens(m) == (128, 472, 89, -1, -1, -1.0, -1.0)


def test_anthropic_non_streaming():
    body = {
        "id": "msg_1",
        "type": "message",
        "content": [{"type": "text", "text": "Hi"}],
        "usage": {"input_tokens": 10, "output_tokens": 25, "cache_read_input_tokens": 0},
    }
    m = metrics_from_response(json.dumps(body).encode(), JSON)
    assert tokens(m) == (0, 10, 25, -1, -1, -1.0, -1.0)


# --- Responses API --------------------------------------------------------------------------


def test_responses_api_stream_completed_event():
    events = [
        {"type": "response.created",
         "response": {"id": "resp_1", "status": "in_progress", "usage": None}},
        {"type": "response.output_text.delta", "delta": "Hel"},
        {"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
         "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 6},
                   "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0}}}},
    ]  # fmt: skip
    names = tuple(e["type"] for e in events)
    m = metrics_from_response(sse(*events, event_names=names), SSE)
    assert tokens(m) == (6, 36, 87, -1, -1, -1.0, -1.0)


# --- vLLM -----------------------------------------------------------------------------------


def test_vllm_stream_metrics():
    usage_chunk = {"choices": [], "usage": {"prompt_tokens": 14, "completion_tokens": 152},
                   "metrics": {"time_to_first_token_ms": 70.0, "mean_itl_ms": 10.0}}  # fmt: skip
    m = metrics_from_response(sse(usage_chunk, "[DONE]"), SSE)
    assert m["cache_tokens"] == -1
    assert m["prompt_per_second"] == pytest.approx(200.0)
    assert m["tokens_per_second"] == pytest.approx(100.0)


def test_vllm_non_stream_with_cache_and_spec_decode():
    body = {
        "usage": {"prompt_tokens": 42, "completion_tokens": 128,
                  "prompt_tokens_details": {"cached_tokens": 20}},
        "metrics": {"time_to_first_token_ms": 85.2, "mean_itl_ms": 9.1,
                    "speculative_decoding": {"num_draft_tokens": 20,
                                             "num_accepted_draft_tokens": 14}},
    }  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON)
    assert (m["input_tokens"], m["output_tokens"], m["cache_tokens"]) == (42, 128, 20)
    assert m["prompt_per_second"] == pytest.approx((42 - 20) / 0.0852)
    assert m["tokens_per_second"] == pytest.approx(1000 / 9.1)
    assert (m["draft_tokens"], m["draft_acc_tokens"]) == (20, 14)


def test_vllm_partial_spec_decode_object_is_unknown():
    body = {"usage": {"prompt_tokens": 1, "completion_tokens": 2},
            "metrics": {"speculative_decoding": {"num_draft_tokens": 20}}}  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON)
    assert (m["draft_tokens"], m["draft_acc_tokens"]) == (-1, -1)


def test_empty_vllm_object_does_not_clobber_timings_drafts():
    body = {"timings": dict(LLAMA_TIMINGS, draft_n=30, draft_n_accepted=12),
            "metrics": {"speculative_decoding": {}}}  # fmt: skip
    m = metrics_from_response(json.dumps(body).encode(), JSON)
    assert (m["draft_tokens"], m["draft_acc_tokens"]) == (30, 12)
    assert (m["prompt_per_second"], m["tokens_per_second"]) == (100.0, 40.0)


# --- the incremental scanner ----------------------------------------------------------------


def test_scanner_handles_splits_anywhere():
    usage = {"usage": {"prompt_tokens": 15, "completion_tokens": 33}, "note": "h\u00e9llo \u2501"}
    body = sse({"choices": [{"delta": {"content": "\u00e9"}}]}, usage, "[DONE]").replace(
        b"\n", b"\r\n"
    )
    for size in (1, 2, 3, 7, 64):
        scanner = SseUsageScanner()
        for i in range(0, len(body), size):
            scanner.feed(body[i : i + size])
        findings = scanner.finish()
        assert (findings.input_tokens, findings.output_tokens) == (15, 33), size


def test_scanner_reads_a_last_line_without_newline():
    scanner = SseUsageScanner()
    scanner.feed(b'data: {"usage":{"prompt_tokens":3,"completion_tokens":4}}')
    assert scanner.finish().output_tokens == 4


def test_scanner_skips_an_oversized_line_and_keeps_going():
    scanner = SseUsageScanner(max_line_bytes=100)
    scanner.feed(b"data: " + b"x" * 60)
    scanner.feed(b"y" * 60 + b"\n\n")
    scanner.feed(b'data: {"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n')
    findings = scanner.finish()
    assert (findings.input_tokens, findings.output_tokens) == (3, 4)
    assert len(scanner._partial) == 0


# --- error text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, b'{"error":{"message":"model unavailable"}}', "model unavailable"),
        (500, b'{"error":"boom"}', "boom"),
        (400, b'{"message":"bad field"}', "bad field"),
        (422, b'{"detail":"invalid value"}', "invalid value"),
        (502, b"<html>bad gateway</html>", "502 Bad Gateway"),
        (201, b"", "201 Created"),
        (500, b'{"error":{"code":1}}', "500 Internal Server Error"),
        (599, b"", "HTTP 599"),
    ],
)
def test_error_message(status, body, expected):
    assert error_message_from_response(status, body) == expected


def test_error_message_is_cut_at_500_chars():
    text = error_message_from_response(400, json.dumps({"error": "e" * 600}).encode())
    assert text == "e" * 500 + "..."
