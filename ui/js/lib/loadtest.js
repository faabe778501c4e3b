// Load-test timeline maths: a request's marks → coloured segments (queue, load, wait,
// reasoning, generation). Marks are epoch ms; missing marks mean the phase never happened.

/**
 * marks: {start, queueUntil?, loadStart?, loadDone?, firstReasoning?, firstContent?, end?, error?}
 * Returns [{kind, from, to}] covering start → end (or `now` while running), in order.
 */
export function timelineSegments(marks, now = Date.now()) {
  const end = marks.end ?? now;
  const segs = [];
  let cur = marks.start;
  const push = (kind, to) => {
    const t = Math.min(Math.max(to, cur), end);
    if (t > cur) segs.push({ kind, from: cur, to: t });
    cur = Math.max(cur, t);
  };
  if (marks.queueUntil != null) push("queue", marks.queueUntil);
  if (marks.loadStart != null) {
    if (marks.queueUntil == null) push("queue", marks.loadStart);
    push("load", marks.loadDone ?? marks.firstContent ?? marks.firstReasoning ?? end);
  }
  const first = Math.min(marks.firstReasoning ?? Infinity, marks.firstContent ?? Infinity);
  if (Number.isFinite(first)) {
    push("wait", first);
    if (marks.firstReasoning != null && (marks.firstContent == null || marks.firstContent > marks.firstReasoning)) {
      push("reasoning", marks.firstContent ?? end);
    }
    push("generate", end);
  } else {
    push(marks.error ? "error" : "wait", end);
  }
  return segs;
}

/** Sum of milliseconds per segment kind. */
export function phaseTotals(segments) {
  const out = {};
  for (const s of segments) out[s.kind] = (out[s.kind] || 0) + (s.to - s.from);
  return out;
}

/**
 * Follow the loading block as it grows: a "Queue position" line means queued; the first other
 * line after it ends the queue wait. Returns updated marks (a new object).
 */
export function trackLoading(marks, loadingText, loadingDone, now) {
  const m = { ...marks };
  if (!loadingText) return m;
  if (m.loadStart == null) m.loadStart = now;
  const lines = loadingText.split("\n").map((l) => l.trim()).filter(Boolean);
  const lastLine = lines[lines.length - 1] || "";
  const queued = /^Queue position: #\d+/.test(lastLine);
  if (queued) m.queuedSeen = true;
  else if (m.queuedSeen && m.queueUntil == null) m.queueUntil = now;
  if (loadingDone && m.loadDone == null) {
    if (m.queuedSeen && m.queueUntil == null) m.queueUntil = now;
    m.loadDone = now;
  }
  return m;
}
