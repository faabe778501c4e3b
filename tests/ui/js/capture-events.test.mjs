import assert from "node:assert/strict";
import { test } from "node:test";
import { base64ToText, bodyKind, headerValue, prettyJson, stitchSseChat } from "../../../ui/js/lib/capture.js";
import { describeEvent, failureOutput, failureText, isDecision, matchesFilter, mergeEvents, queueFromInflight, storyPhases } from "../../../ui/js/lib/event-log.js";
import { phaseTotals, timelineSegments, trackLoading } from "../../../ui/js/lib/loadtest.js";

const b64 = (s) => Buffer.from(s, "utf8").toString("base64");

test("capture bodies decode as UTF-8 and are classified for display", () => {
  assert.equal(base64ToText(b64("héllo")), "héllo");
  assert.equal(base64ToText(null), null);
  assert.equal(bodyKind("text/event-stream", b64("data: x")), "sse");
  assert.equal(bodyKind("application/json", b64("{}")), "json");
  assert.equal(bodyKind("image/png", "AAAA"), "image");
  assert.equal(bodyKind("audio/mpeg", "AAAA"), "binary");
  assert.equal(bodyKind("", null), "empty");
  assert.equal(prettyJson('{"a":1}'), '{\n  "a": 1\n}');
  assert.equal(prettyJson("nope"), null);
  assert.equal(headerValue({ "Content-Type": "x" }, "content-type"), "x");
});

test("the chat view stitches content and reasoning deltas of a captured stream", () => {
  const stream = [
    'data: {"choices":[{"delta":{"reasoning_content":"think "}}]}',
    'data: {"choices":[{"delta":{"reasoning":"more"}}]}',
    'data: {"choices":[{"delta":{"content":"Hel"}}]}',
    'data: {"choices":[{"delta":{"content":"lo"}}]}',
    "data: [DONE]",
    "",
  ].join("\n\n");
  assert.deepEqual(stitchSseChat(stream), { reasoning: "think more", content: "Hello" });
  const anth = 'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"A"}}\n\n';
  assert.equal(stitchSseChat(anth).content, "A");
});

const ev = (seq, type, payload, extra = {}) => ({ seq, ts_ms: 1000 + seq * 100, type, key: payload.request_id || payload.model, payload, ...extra });

test("events: decisions, one-line summaries and filters", () => {
  const swap = ev(3, "SwapPlanned", { model: "b", evict: ["a"], rule: "group" });
  assert.equal(isDecision(swap), true);
  assert.equal(isDecision(ev(1, "ProcessReady", { model: "a" })), false);
  // the words are the server's (`text`, from the event type's own description)
  const text = "swap to b planned for r1: evict a (rule: group)";
  assert.equal(describeEvent({ ...swap, text }), text);
  assert.equal(describeEvent(swap), '{"model":"b","evict":["a"],"rule":"group"}'); // an older server
  assert.ok(matchesFilter(swap, { model: "a" }), "an evicted model counts as mentioned");
  assert.ok(!matchesFilter(swap, { model: "c" }));
  assert.ok(matchesFilter(swap, { type: "Dispatch, SwapPlanned" }));
  assert.ok(!matchesFilter(swap, { type: "Dispatch" }));
  assert.ok(matchesFilter(ev(4, "QueuePositions", { positions: { r1: 1 } }), { request: "r1" }));
  assert.deepEqual(mergeEvents([ev(2, "X", {}), ev(1, "X", {})], [ev(2, "X", {}), ev(3, "X", {})], 2).map((e) => e.seq), [2, 3]);
});

test("a request's story lays out phases with the time spent in each", () => {
  const events = [
    ev(5, "Dispatch", { request_id: "r", model: "b" }),
    ev(1, "RequestReceived", { request_id: "r", model: "b" }),
    ev(2, "QueuePositions", { positions: { r: 1 } }),
    ev(3, "SwapPlanned", { model: "b", evict: ["a"] }),
    ev(4, "StartProcess", { model: "b" }),
    ev(6, "RequestFinished", { request_id: "r", model: "b", status: 200 }),
  ];
  const phases = storyPhases(events);
  assert.deepEqual(phases.map((p) => p.phase), ["received", "queued", "swap", "dispatched", "finished"]);
  assert.deepEqual(phases.map((p) => p.ms), [100, 100, 200, 100, null]);
});

test("a queued request's story shows its wait as queued without QueuePositions (core-4 logs)", () => {
  const at = (seq, type, payload, cause) => ({ ...ev(seq, type, payload), cause });
  const waited = storyPhases([
    at(1, "RequestReceived", { request_id: "r", model: "b" }, null),
    at(3, "SwapPlanned", { model: "b", evict: ["a"] }, 2),
    at(4, "StartProcess", { model: "b" }, 2),
    at(5, "Dispatch", { request_id: "r", model: "b" }, 4),
  ]);
  assert.deepEqual(waited.map((p) => p.phase), ["received", "queued", "swap", "dispatched"]);
  assert.deepEqual(waited.map((p) => p.ms), [0, 200, 200, null]);
  const direct = storyPhases([
    at(1, "RequestReceived", { request_id: "r", model: "b" }, null),
    at(2, "Dispatch", { request_id: "r", model: "b" }, 1),
  ]);
  assert.deepEqual(direct.map((p) => p.phase), ["received", "dispatched"]);
});

test("a peer request's story reads received, then served by its peer", () => {
  const record = {
    seq: 9, ts_ms: 1700, type: "PeerRequestFinished",
    payload: { request_id: "r1", model: "p1/m", peer: "p1", received_ms: 1200, status: 200 },
  };
  const phases = storyPhases([record]);
  assert.deepEqual(phases.map((p) => p.phase), ["received", "peer"]);
  assert.equal(phases[1].label, "served by peer p1");
  assert.deepEqual(phases.map((p) => p.ms), [500, null]);
});

test("a selector's request reads received, then which target its selector chose", () => {
  const events = [
    ev(1, "SelectorRequested", { request_id: "r", selector: "pick" }),
    ev(2, "SelectorChose", { request_id: "r", selector: "pick", target: "b", rule: "spillover-cold" }),
    ev(3, "RequestReceived", { request_id: "r", model: "b" }),
    ev(4, "Dispatch", { request_id: "r", model: "b" }),
    ev(5, "RequestFinished", { request_id: "r", model: "b", status: 200 }),
  ];
  const phases = storyPhases(events);
  assert.deepEqual(phases.map((p) => p.phase), ["received", "selected", "dispatched", "finished"]);
  assert.equal(phases[1].label, "selector pick chose b");
  assert.ok(isDecision(events[1]));
});

test("a failed model's reason reads from its newest failure event", () => {
  assert.equal(failureText({ type: "ProcessStartFailed", payload: { error: "exited with code 1 while starting" } }), "start failed: exited with code 1 while starting");
  const startFailed = { type: "ProcessStartFailed", payload: { error: "upstream command exited prematurely", exit_code: 1, output_tail: "loading x.gguf\nerror: model file not found\n" } };
  assert.equal(failureText(startFailed), 'start failed: upstream command exited prematurely (exited with code 1): "error: model file not found"');
  assert.equal(failureOutput(startFailed), "loading x.gguf\nerror: model file not found\n");
  assert.equal(failureOutput({ type: "ProcessExited", payload: {} }), "");
  assert.equal(failureText({ type: "ProcessExited", payload: { exit_code: 3, output_tail: "bye" } }), 'crashed: exited with code 3: "bye"');
  assert.equal(failureText({ type: "ProcessExited", payload: { exit_code: 3 } }), "crashed: exited with code 3");
  assert.equal(failureText({ type: "ProcessExited", payload: { signal: 9 } }), "crashed: killed by signal 9");
  assert.equal(failureText(undefined), "");
});

test("the queue view can be derived from in-flight entries", () => {
  const q = queueFromInflight(
    [
      { id: "1", request_id: "r1", model: "a", phase: "running", elapsed_ms: 10, receivedAt: 0 },
      { id: "2", request_id: "r2", model: "a", phase: "queued", queue_position: 1, elapsed_ms: 500, receivedAt: 1000 },
    ],
    1500,
  );
  assert.deepEqual(q.models, [{ id: "a", state: "", queue_depth: 1, in_flight: 1 }]);
  assert.deepEqual(q.requests, [{ request_id: "r2", model: "a", phase: "queued", position: 1, waited_ms: 1000 }]);
});

test("load-test timeline separates queue, load, wait, reasoning and generation", () => {
  let m = { start: 0 };
  m = trackLoading(m, "━━━━━\nloading\nQueue position: #1 ", false, 100);
  m = trackLoading(m, "━━━━━\nloading\nQueue position: #1 \nWarming up...", false, 400);
  m = trackLoading(m, "━━━━━\n...\nDone!\n━━━━━\n \n", true, 900);
  assert.deepEqual([m.loadStart, m.queueUntil, m.loadDone], [100, 400, 900]);
  const segs = timelineSegments({ ...m, firstReasoning: 1000, firstContent: 1200, end: 2000 });
  assert.deepEqual(segs.map((s) => [s.kind, s.from, s.to]), [
    ["queue", 0, 400],
    ["load", 400, 900],
    ["wait", 900, 1000],
    ["reasoning", 1000, 1200],
    ["generate", 1200, 2000],
  ]);
  assert.deepEqual(phaseTotals(segs), { queue: 400, load: 500, wait: 100, reasoning: 200, generate: 800 });
  assert.deepEqual(timelineSegments({ start: 0, error: true, end: 50 }), [{ kind: "error", from: 0, to: 50 }]);
  assert.deepEqual(timelineSegments({ start: 0, firstContent: 30 }, 80).map((s) => s.kind), ["wait", "generate"]);
});

test("the scheduler's waiting phase reads as loading", async () => {
  const { phaseLabel } = await import("../../../ui/js/lib/event-log.js");
  assert.equal(phaseLabel("waiting"), "loading");
  assert.equal(phaseLabel("queued"), "queued");
  assert.equal(phaseLabel(undefined), "-");
});
