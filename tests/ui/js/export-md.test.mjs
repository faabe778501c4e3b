import assert from "node:assert/strict";
import { test } from "node:test";
import { sanitizeColumns, defaultColumns } from "../../../ui/js/lib/activity-columns.js";
import { activityToMarkdown, mdCell, summarize } from "../../../ui/js/lib/export-md.js";

const rows = [
  {
    id: 2, timestamp: "2026-03-04T10:00:05Z", model: "qwen|7b", req_path: "/v1/chat/completions",
    resp_status_code: 200, duration_ms: 2000, has_capture: true,
    tokens: { cache_tokens: 5, input_tokens: 100, output_tokens: 50, prompt_per_second: 100, tokens_per_second: 25, draft_tokens: 10, draft_acc_tokens: 8 },
  },
  {
    id: 1, timestamp: "2026-03-04T10:00:00Z", model: "llama", req_path: "/v1/completions",
    resp_status_code: 500, duration_ms: 1000, has_capture: false, error_msg: "boom\nline",
    tokens: { cache_tokens: -1, input_tokens: 0, output_tokens: 0, prompt_per_second: -1, tokens_per_second: -1, draft_tokens: -1, draft_acc_tokens: -1 },
  },
];

test("cells escape pipes and flatten newlines", () => {
  assert.equal(mdCell("a|b\nc"), "a\\|b c");
  assert.equal(mdCell(null), "");
});

test("the summary sums tokens and weights speeds by tokens; -1 never counts", () => {
  const s = Object.fromEntries(summarize(rows));
  assert.equal(s.Requests, "2");
  assert.equal(s["Total duration"], "3.00s");
  assert.equal(s["Cached tokens"], "5");
  assert.equal(s["Prompt tokens"], "100 (100.00 t/s)");
  assert.equal(s["Generated tokens"], "50 (25.00 t/s)");
  assert.equal(s["Draft acceptance"], "80% (8/10)");
  assert.match(s["Time range"], /→/);
});

test("the rows table follows the visible columns in order and leaves Capture out", () => {
  const md = activityToMarkdown(rows, ["model", "id", "capture", "decode"], new Date("2026-03-05T00:00:00Z"), "box");
  const lines = md.split("\n");
  const header = lines.find((l) => l.startsWith("| Model"));
  assert.equal(header, "| Model | ID | Decode |");
  assert.ok(md.includes("| qwen\\|7b | 2 | 25.00 t/s |"));
  assert.ok(md.includes("| llama | 1 | unknown |"));
  assert.ok(md.includes("## Summary"));
  assert.match(lines.filter(Boolean).at(-1), /^_Exported from box on 2026-03-0\d /);
});

test("saved column lists are cleaned of unknown ids", () => {
  assert.deepEqual(sanitizeColumns(["bogus", "model", "id"]), ["model", "id"]);
  assert.deepEqual(sanitizeColumns("nope"), defaultColumns());
  assert.ok(!defaultColumns().includes("path"));
});

test("our wait columns show where the time went, '-' when nothing was waited", () => {
  const md = activityToMarkdown(
    [{ ...rows[0], queue_wait_ms: 1500, swap_wait_ms: 0, ttfb_ms: 2100 }],
    ["id", "queue_wait", "swap_wait", "ttfb"],
  );
  assert.ok(md.includes("| ID | Queued | Swap | TTFB |"));
  assert.ok(md.includes("| 2 | 1.50s | - | 2.10s |"));
});
