// The activity table's columns: ids, labels, server sort keys and plain-text cells. Shared by the
// table (which may render richer cells) and the markdown export (which needs text).

import {
  absoluteTime,
  formatDraft,
  formatNumber,
  formatSeconds,
  formatSpeed,
  formatTokens,
  relativeTime,
} from "./format.js";

const tok = (r) => r.tokens || {};

export const ACTIVITY_COLUMNS = [
  // Only with a shared history database (the fleet's Activity): the node that recorded the
  // request, and the peer it forwarded it to, if any.
  {
    id: "node",
    label: "Node",
    sort: "node",
    fleetOnly: true,
    title: "The node that served the request (→ the peer a front node forwarded it to)",
    text: (r) => (r.peer ? `${r.node} → ${r.peer}` : r.node || ""),
  },
  { id: "id", label: "ID", sort: "id", text: (r) => String(r.id) },
  {
    id: "time",
    label: "Time",
    sort: "time",
    text: (r, now) => relativeTime(r.timestamp, now),
    exportText: (r) => absoluteTime(r.timestamp),
  },
  { id: "model", label: "Model", sort: "model", text: (r) => r.model || "" },
  { id: "path", label: "Path", sort: "req_path", hidden: true, text: (r) => r.req_path || "" },
  { id: "status", label: "Status", sort: "resp_status_code", text: (r) => String(r.resp_status_code ?? "") },
  {
    id: "content_type",
    label: "Content-Type",
    sort: "resp_content_type",
    hidden: true,
    text: (r) => r.resp_content_type || "",
  },
  {
    id: "cached",
    label: "Cached",
    sort: "cached",
    title: "Prompt tokens served from cache",
    text: (r) => formatTokens(tok(r).cache_tokens),
  },
  {
    id: "prompt",
    label: "Prompt",
    sort: "prompt",
    title: "New prompt tokens processed",
    text: (r) => formatTokens(tok(r).input_tokens),
  },
  { id: "generated", label: "Generated", sort: "generated", text: (r) => formatTokens(tok(r).output_tokens) },
  {
    id: "drafted",
    label: "Drafted",
    sort: "drafted",
    hidden: true,
    text: (r) => formatDraft(tok(r).draft_acc_tokens, tok(r).draft_tokens),
  },
  { id: "prefill", label: "Prefill", sort: "prompt_speed", text: (r) => formatSpeed(tok(r).prompt_per_second) },
  { id: "decode", label: "Decode", sort: "gen_speed", text: (r) => formatSpeed(tok(r).tokens_per_second) },
  { id: "duration", label: "Duration", sort: "duration", text: (r) => formatSeconds(r.duration_ms) },
  // Ours: where the duration went before the first byte (queue, then a swap, then the upstream).
  {
    id: "queue_wait",
    label: "Queued",
    sort: "queue_wait",
    title: "Time waiting in the queue",
    text: (r) => (r.queue_wait_ms ? formatSeconds(r.queue_wait_ms) : "-"),
  },
  {
    id: "swap_wait",
    label: "Swap",
    sort: "swap_wait",
    title: "Time waiting for a model to load",
    text: (r) => (r.swap_wait_ms ? formatSeconds(r.swap_wait_ms) : "-"),
  },
  {
    id: "ttfb",
    label: "TTFB",
    hidden: true,
    title: "Time to the first response byte",
    text: (r) => (r.ttfb_ms != null ? formatSeconds(r.ttfb_ms) : "-"),
  },
  { id: "capture", label: "Capture", text: (r) => (r.has_capture ? "View" : "-") },
  {
    id: "meta",
    label: "Meta",
    hidden: true,
    text: (r) =>
      Object.entries(r.metadata || {})
        .map(([k, v]) => `${k}=${v}`)
        .join(", ") || "-",
  },
];

export const COLUMN_BY_ID = Object.fromEntries(ACTIVITY_COLUMNS.map((c) => [c.id, c]));

/** The columns a table offers: the node column only for the fleet's history. */
export function columnsFor(fleet = false) {
  return ACTIVITY_COLUMNS.filter((c) => fleet || !c.fleetOnly);
}

export function defaultColumns(fleet = false) {
  return columnsFor(fleet)
    .filter((c) => !c.hidden)
    .map((c) => c.id);
}

/** Keep a saved column list valid: unknown ids (and the node column outside fleet mode)
 * dropped, order kept. */
export function sanitizeColumns(saved, fleet = false) {
  if (!Array.isArray(saved)) return defaultColumns(fleet);
  const offered = new Set(columnsFor(fleet).map((c) => c.id));
  const ok = saved.filter((id) => offered.has(id));
  return ok.length ? ok : defaultColumns(fleet);
}

export { formatNumber };
