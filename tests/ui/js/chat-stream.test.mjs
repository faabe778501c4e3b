import assert from "node:assert/strict";
import { test } from "node:test";
import { buildChatBody, chatDelta, lastQueuePosition, splitLoadingState } from "../../../ui/js/lib/chat-stream.js";

const IMG = "data:image/png;base64,AAAA";
const history = [
  { role: "user", content: "hi", images: [IMG] },
  { role: "assistant", content: "hello" },
  { role: "user", content: "again" },
];
const opts = { model: "m", system: "be brief", temperature: 0.5, maxTokens: 64 };

test("chat completions: system first, images as image_url parts", () => {
  const b = buildChatBody("chat", history, opts);
  assert.equal(b.stream, true);
  assert.equal(b.max_tokens, 64);
  assert.deepEqual(b.messages[0], { role: "system", content: "be brief" });
  assert.deepEqual(b.messages[1].content[1], { type: "image_url", image_url: { url: IMG } });
  assert.deepEqual(b.messages[2], { role: "assistant", content: "hello" });
});

test("messages: system split out, base64 image blocks, max_tokens required", () => {
  const b = buildChatBody("messages", history, { ...opts, maxTokens: 0 });
  assert.equal(b.system, "be brief");
  assert.equal(b.max_tokens, 4096);
  assert.deepEqual(b.messages[0].content[0], { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } });
});

test("responses: instructions, input_text/output_text/input_image, max_output_tokens", () => {
  const b = buildChatBody("responses", history, opts);
  assert.equal(b.instructions, "be brief");
  assert.equal(b.max_output_tokens, 64);
  assert.equal(b.input[0].content[0].type, "input_text");
  assert.deepEqual(b.input[0].content[1], { type: "input_image", image_url: IMG });
  assert.equal(b.input[1].content[0].type, "output_text");
});

test("stream deltas per endpoint", () => {
  const ev = (o) => ({ event: "message", data: JSON.stringify(o) });
  assert.deepEqual(chatDelta("chat", ev({ choices: [{ delta: { content: "a", reasoning_content: "r" } }] })), {
    content: "a", reasoning: "r", error: "", done: false,
  });
  assert.equal(chatDelta("chat", { data: "[DONE]" }).done, true);
  assert.equal(chatDelta("messages", ev({ type: "content_block_delta", delta: { type: "thinking_delta", thinking: "t" } })).reasoning, "t");
  assert.equal(chatDelta("messages", ev({ type: "content_block_delta", delta: { type: "text_delta", text: "x" } })).content, "x");
  assert.equal(chatDelta("responses", ev({ type: "response.output_text.delta", delta: "y" })).content, "y");
  assert.equal(chatDelta("chat", ev({ error: { message: "bad model" } })).error, "bad model");
  assert.equal(chatDelta("chat", { data: "{not json" }).content, "");
});

test("the proxy's loading block is split from the model's own reasoning", () => {
  const R = "\u2501\u2501\u2501\u2501\u2501";
  const open = `${R}\nllama-swap loading model: m\nQueue position: #2 `;
  assert.deepEqual(splitLoadingState(open), { loading: open, reasoning: "", loadingDone: false });
  assert.equal(lastQueuePosition(`${open}\nQueue position: #1 `), 1);
  const closed = `${open}\nDone! (1.00s)\n${R}\n \nI think`;
  const s = splitLoadingState(closed);
  assert.equal(s.reasoning, "I think");
  assert.ok(s.loading.endsWith(`${R}\n \n`));
  assert.equal(s.loadingDone, true);
  assert.deepEqual(splitLoadingState("plain thoughts"), { loading: "", reasoning: "plain thoughts", loadingDone: true });
});
