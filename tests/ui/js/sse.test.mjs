import assert from "node:assert/strict";
import { test } from "node:test";
import { applyInflight, backoffDelay, decodeEnvelope, elapsedMs, SSEParser, sessionIdOf } from "../../../ui/js/lib/sse.js";

test("the double-encoded /api/events envelope decodes to the payload", () => {
  const raw = JSON.stringify({ type: "modelStatus", data: JSON.stringify([{ id: "m", state: "ready" }]) });
  assert.deepEqual(decodeEnvelope(raw), { type: "modelStatus", payload: [{ id: "m", state: "ready" }] });
  assert.equal(decodeEnvelope("not json"), null);
  assert.equal(decodeEnvelope(JSON.stringify({ type: "x", data: "{broken" })), null);
  assert.equal(decodeEnvelope(JSON.stringify({ data: "{}" })), null);
});

test("the SSE parser joins events split across chunks and lines", () => {
  const p = new SSEParser();
  assert.deepEqual(p.push("event:message\nda"), []);
  assert.deepEqual(p.push('ta:{"a":1}\n'), []);
  assert.deepEqual(p.push("\n: comment\r\ndata: one\r\ndata: two\r\n\r\n"), [
    { event: "message", data: '{"a":1}' },
    { event: "message", data: "one\ntwo" },
  ]);
  p.push("data: tail");
  assert.deepEqual(p.end(), [{ event: "message", data: "tail" }]);
});

test("reconnect backoff starts at 1 s, doubles and caps at 5 s", () => {
  assert.deepEqual([0, 1, 2, 3, 10].map((a) => backoffDelay(a)), [1000, 2000, 4000, 5000, 5000]);
});

test("in-flight snapshot, upsert and remove keep the list sorted by start time", () => {
  let list = applyInflight([], { operation: "snapshot" }, 0);
  assert.deepEqual(list, []);
  list = applyInflight(list, { operation: "upsert", request: { id: "2", timestamp: "2026-01-01T00:00:02Z" } }, 5);
  list = applyInflight(list, { operation: "upsert", request: { id: "1", timestamp: "2026-01-01T00:00:01Z" } }, 6);
  assert.deepEqual(list.map((r) => r.id), ["1", "2"]);
  assert.equal(list[0].receivedAt, 6);
  list = applyInflight(list, { operation: "upsert", request: { id: "2", timestamp: "2026-01-01T00:00:02Z", resp_bytes: 9 } }, 7);
  assert.equal(list.length, 2);
  assert.equal(list[1].resp_bytes, 9);
  list = applyInflight(list, { operation: "remove", id: "1" }, 8);
  assert.deepEqual(list.map((r) => r.id), ["2"]);
  assert.equal(applyInflight(list, { operation: "bogus" }), list);
});

test("session id comes from the first configured header with a value", () => {
  const h = { "X-Litellm-Session-Id": "lite", "x-session-id": "" };
  assert.equal(sessionIdOf(h), "lite");
  assert.equal(sessionIdOf({ "X-Session-ID": "pg" }, ["X-Session-ID"]), "pg");
  assert.equal(sessionIdOf(null), "");
});

test("an in-flight request's elapsed time ticks on locally from the server's figure", () => {
  assert.equal(elapsedMs({ elapsed_ms: 1500, receivedAt: 10_000 }, 12_000), 3500);
  assert.equal(elapsedMs({ elapsed_ms: 1500, receivedAt: 10_000 }, 9_000), 1500); // clock skew
  assert.equal(elapsedMs({}, 5), 0);
});
