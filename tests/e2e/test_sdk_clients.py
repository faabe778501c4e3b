"""Real SDK clients against the real server, real fake-upstream processes behind it."""

from __future__ import annotations

import anthropic
import openai

from llamaswap_es.events.open_log import open_log
from tests.fixtures.server import config_text, fake_model

ANSWER_START = "alpha bravo charlie"


def _two_models() -> str:
    return config_text([fake_model("a", "--tokens", "12"), fake_model("b", "--tokens", "12")])


async def test_openai_chat_streaming_and_not_with_a_swap_between_models(server_factory) -> None:
    server = server_factory(_two_models())
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    reply = await client.chat.completions.create(
        model="a", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content.startswith(ANSWER_START)
    assert reply.usage is not None and reply.usage.completion_tokens == 12

    stream = await client.chat.completions.create(
        model="b", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert len([p for p in pieces if p]) >= 12
    assert "".join(pieces).startswith(ANSWER_START)

    with open_log(server.db_path) as reader:
        events = list(reader.iter_envelopes())
    starts = [e.body.model for e in events if e.type == "StartProcess"]
    stops = [e.body.model for e in events if e.type == "StopProcess"]
    assert starts == ["a", "b"] and stops == ["a"]
    await client.close()


async def test_openai_completions_and_embeddings(server_factory) -> None:
    server = server_factory(_two_models())
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    completion = await client.completions.create(model="a", prompt="say")
    assert completion.choices[0].text.startswith(ANSWER_START)
    embedding = await client.embeddings.create(model="a", input=["one", "two"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) > 0
    await client.close()


async def test_anthropic_messages_streaming_and_not(server_factory) -> None:
    server = server_factory(_two_models())
    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="unused", max_retries=0)
    message = await client.messages.create(
        model="a", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text.startswith(ANSWER_START)
    assert message.usage.output_tokens == 12
    async with client.messages.stream(
        model="b", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text.startswith(ANSWER_START)
    await client.close()
