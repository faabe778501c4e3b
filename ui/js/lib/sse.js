// Server-sent events: the /api/events envelope, an incremental parser for fetch() streams, and
// the reconnect backoff. Pure, so the tests can feed it arbitrary chunk boundaries.

/**
 * Decode one `/api/events` message. The envelope is `{"type", "data"}` where `data` is the
 * payload JSON-encoded *again* as a string (api.md §12). Returns `{type, payload}` or null for
 * anything malformed (a bad message must never break the stream).
 */
export function decodeEnvelope(raw) {
  let env;
  try {
    env = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch {
    return null;
  }
  if (!env || typeof env.type !== "string") return null;
  let payload = env.data;
  if (typeof payload === "string") {
    try {
      payload = JSON.parse(payload);
    } catch {
      return null;
    }
  }
  return { type: env.type, payload };
}

/**
 * Incremental SSE parser: push text chunks in, get complete events out. Handles `\n`, `\r\n`,
 * multi-line `data:`, comments and events split across chunk boundaries.
 */
export class SSEParser {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = [];
  }

  /** Feed a chunk; returns the list of completed `{event, data}` objects. */
  push(chunk) {
    this.buffer += chunk;
    const out = [];
    let idx = this.buffer.search(/\r?\n/);
    while (idx >= 0) {
      const line = this.buffer.slice(0, idx);
      const nlLen = this.buffer[idx] === "\r" ? 2 : 1;
      this.buffer = this.buffer.slice(idx + nlLen);
      this._line(line, out);
      idx = this.buffer.search(/\r?\n/);
    }
    return out;
  }

  /** Flush a trailing event that the stream ended without a blank line. */
  end() {
    const out = [];
    if (this.buffer) this._line(this.buffer, out);
    this.buffer = "";
    this._line("", out);
    return out;
  }

  _line(line, out) {
    if (line === "") {
      if (this.data.length || this.event) {
        out.push({ event: this.event || "message", data: this.data.join("\n") });
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
  }
}

/** Reconnect delay: 1 s doubling, capped at 5 s (llama-swap's UI policy). */
export function backoffDelay(attempt, baseMs = 1000, capMs = 5000) {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
}

/**
 * Apply one `inflight` message to the list: snapshot replaces, upsert inserts or updates by id,
 * remove drops. Entries are stamped with `receivedAt` (local time) so elapsed can tick locally,
 * and kept sorted by start time, then id.
 */
export function applyInflight(list, msg, now = Date.now()) {
  if (!msg || typeof msg !== "object") return list;
  let next;
  if (msg.operation === "snapshot") {
    next = (msg.requests || []).map((r) => ({ ...r, receivedAt: now }));
  } else if (msg.operation === "upsert" && msg.request) {
    const entry = { ...msg.request, receivedAt: now };
    next = list.filter((r) => r.id !== entry.id);
    next.push(entry);
  } else if (msg.operation === "remove") {
    next = list.filter((r) => r.id !== String(msg.id));
  } else {
    return list;
  }
  return next.sort((a, b) => {
    const ta = Date.parse(a.timestamp) || 0;
    const tb = Date.parse(b.timestamp) || 0;
    if (ta !== tb) return ta - tb;
    return String(a.id).localeCompare(String(b.id), undefined, { numeric: true });
  });
}

/**
 * How long an in-flight request has run: the server's `elapsed_ms` when the entry arrived plus
 * the local time since (`receivedAt`, stamped by applyInflight), so it ticks between messages.
 */
export function elapsedMs(r, now = Date.now()) {
  return (r.elapsed_ms || 0) + Math.max(0, now - (r.receivedAt || now));
}

/** The session id of an in-flight request: the first configured header that has a value. */
export function sessionIdOf(headers, names = ["X-Session-ID", "X-Litellm-Session-Id"]) {
  if (!headers) return "";
  const lower = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  for (const n of names) {
    const v = lower[n.toLowerCase()];
    if (v) return v;
  }
  return "";
}
