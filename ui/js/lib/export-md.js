// Markdown export of the activity rows on screen: a summary table, the rows, an attribution line.

import { COLUMN_BY_ID } from "./activity-columns.js";
import { absoluteTime, formatNumber } from "./format.js";
import { weightedSpeed } from "./stats.js";

/** Make a value safe inside a markdown table cell: pipes escaped, newlines flattened. */
export function mdCell(value) {
  return String(value ?? "")
    .replace(/\\/g, "\\\\")
    .replace(/\|/g, "\\|")
    .replace(/\r?\n/g, " ");
}

function table(headers, rows) {
  const lines = [
    `| ${headers.map(mdCell).join(" | ")} |`,
    `| ${headers.map(() => "---").join(" | ")} |`,
  ];
  for (const r of rows) lines.push(`| ${r.map(mdCell).join(" | ")} |`);
  return lines.join("\n");
}

/** The summary pairs for a set of activity rows (exported separately so it can be tested). */
export function summarize(rows) {
  const sum = (f) => rows.reduce((a, r) => a + Math.max(0, f(r) || 0), 0);
  const times = rows.map((r) => Date.parse(r.timestamp)).filter((t) => !Number.isNaN(t));
  const prompt = sum((r) => r.tokens?.input_tokens);
  const generated = sum((r) => r.tokens?.output_tokens);
  const prefill = weightedSpeed(rows, "input_tokens", "prompt_per_second");
  const decode = weightedSpeed(rows, "output_tokens", "tokens_per_second");
  const drafted = sum((r) => r.tokens?.draft_tokens);
  const accepted = sum((r) => r.tokens?.draft_acc_tokens);
  const pairs = [
    ["Requests", formatNumber(rows.length)],
    [
      "Time range",
      times.length
        ? `${absoluteTime(Math.min(...times))} → ${absoluteTime(Math.max(...times))}`
        : "-",
    ],
    ["Total duration", `${(sum((r) => r.duration_ms) / 1000).toFixed(2)}s`],
    ["Cached tokens", formatNumber(sum((r) => r.tokens?.cache_tokens))],
    ["Prompt tokens", `${formatNumber(prompt)}${prefill ? ` (${prefill.toFixed(2)} t/s)` : ""}`],
    [
      "Generated tokens",
      `${formatNumber(generated)}${decode ? ` (${decode.toFixed(2)} t/s)` : ""}`,
    ],
  ];
  if (drafted > 0) {
    pairs.push(["Draft acceptance", `${Math.round((accepted / drafted) * 100)}% (${accepted}/${drafted})`]);
  }
  return pairs;
}

/**
 * Build the export: `columns` are visible column ids in on-screen order (Capture is skipped),
 * `now` stamps the attribution line.
 */
export function activityToMarkdown(rows, columns, now = new Date(), title = "llamaswap-es") {
  const cols = columns.map((id) => COLUMN_BY_ID[id]).filter((c) => c && c.id !== "capture");
  const parts = [
    "## Summary",
    "",
    table(["Metric", "Value"], summarize(rows)),
    "",
    "## Requests",
    "",
    table(
      cols.map((c) => c.label),
      rows.map((r) => cols.map((c) => (c.exportText || c.text)(r, now.getTime()))),
    ),
    "",
    `_Exported from ${mdCell(title)} on ${absoluteTime(now)}._`,
    "",
  ];
  return parts.join("\n");
}
