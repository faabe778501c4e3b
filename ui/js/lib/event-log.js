// The event log as the UI shows it: one-line summaries, which events are decisions, client-side
// filters for the live tail, and a request's story laid out as phases.

import { elapsedMs } from "./sse.js";

export const DECISION_TYPES = new Set([
  "Dispatch",
  "Reject",
  "SwapPlanned",
  "StartProcess",
  "StopProcess",
  "QueuePositions",
  "SetTimer",
  "CancelTimer",
  "SelectorChose",
]);

export function isDecision(ev) {
  return DECISION_TYPES.has(ev?.type);
}

/**
 * A one-line human summary of an event object `{type, key, payload, text}`: the server's `text`,
 * which is the event type's own description (`describe` beside its definition in
 * llamaswap_es/events/types.py, the same words as `replay timeline`). An object without one (a
 * server older than that) shows its type's fields.
 */
export function describeEvent(ev) {
  if (ev?.text) return ev.text;
  const text = JSON.stringify(ev?.payload || {});
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

/** The model and request an event concerns (for filtering the live tail as the server does). */
export function eventSubjects(ev) {
  const p = ev?.payload || {};
  const models = new Set();
  if (p.model) models.add(p.model);
  for (const m of p.evict || []) models.add(m);
  for (const m of p.models || []) models.add(m);
  const requests = new Set();
  if (p.request_id) requests.add(p.request_id);
  for (const r of Object.keys(p.positions || {})) requests.add(r);
  if (ev?.key) {
    if (!models.size) models.add(ev.key);
    requests.add(ev.key);
  }
  return { models, requests };
}

/** Does `ev` pass the filter `{model, request, type}` (empty fields match everything)? */
export function matchesFilter(ev, filter) {
  if (!filter) return true;
  const { models, requests } = eventSubjects(ev);
  if (filter.model && !models.has(filter.model)) return false;
  if (filter.request && !requests.has(filter.request)) return false;
  if (filter.type) {
    const types = filter.type.split(",").map((t) => t.trim()).filter(Boolean);
    if (types.length && !types.includes(ev.type)) return false;
  }
  return true;
}

/** Merge new events into a seq-ordered list without duplicates, keeping the newest `cap`. */
export function mergeEvents(list, incoming, cap = 2000) {
  const bySeq = new Map(list.map((e) => [e.seq, e]));
  for (const e of incoming) if (e && e.seq != null) bySeq.set(e.seq, e);
  const out = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  return out.length > cap ? out.slice(out.length - cap) : out;
}

/** The steps that end a request's wait: decided by another input than its arrival, it queued. */
const WAITED_UNTIL = new Set(["SwapPlanned", "StartProcess", "Dispatch", "Reject"]);

/**
 * A request's story as phases with durations: received → queued → (swap) → dispatched →
 * finished. Returns `[{phase, ts_ms, ms, event}]` where `ms` is the time until the next phase.
 */
export function storyPhases(events) {
  const phases = [];
  const add = (phase, e) => phases.push({ phase, ts_ms: e.ts_ms, event: e });
  let received = null;
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    // Since core-4 no QueuePositions is logged (positions are derived state): a request whose
    // next step was not decided by its own arrival waited in the queue from its arrival on.
    const last = phases[phases.length - 1]?.phase;
    if (received && WAITED_UNTIL.has(e.type) && e.cause != null && e.cause !== received.seq &&
        (last === "received" || last === "selected")) {
      phases.push({ phase: "queued", ts_ms: received.ts_ms, event: received });
    }
    // A selector's request is received when the selector is named; its RequestReceived (the
    // chosen local model) follows under the same id, and its decisions are caused by that one.
    if (e.type === "RequestReceived" || e.type === "SelectorRequested") {
      if (!received) add("received", e);
      received = e;
    } else if (e.type === "SelectorChose") {
      const p = e.payload || {};
      phases.push({ phase: "selected", label: `selector ${p.selector ?? "?"} chose ${p.target ?? "?"}`, ts_ms: e.ts_ms, event: e });
    } else if (e.type === "QueuePositions") {
      if (!phases.some((p) => p.phase === "queued")) add("queued", e);
    } else if (e.type === "SwapPlanned" || e.type === "StartProcess") {
      if (!phases.some((p) => p.phase === "swap")) add("swap", e);
    } else if (e.type === "ProcessReady") add("ready", e);
    else if (e.type === "Dispatch") add("dispatched", e);
    else if (e.type === "Reject") add("rejected", e);
    else if (e.type === "RequestCancelled") add("cancelled", e);
    else if (e.type === "RequestAbandoned") add("abandoned", e);
    else if (e.type === "RequestFinished") add("finished", e);
    else if (e.type === "PeerRequestFinished") {
      // A peer request is one record written when it ends; its arrival time is in the payload.
      const arrived = e.payload?.received_ms;
      if (arrived && !received) phases.push({ phase: "received", ts_ms: arrived, event: e });
      phases.push({ phase: "peer", label: `served by peer ${e.payload?.peer ?? "?"}`, ts_ms: e.ts_ms, event: e });
    }
  }
  for (let i = 0; i < phases.length; i++) {
    phases[i].ms = i + 1 < phases.length ? phases[i + 1].ts_ms - phases[i].ts_ms : null;
  }
  return phases;
}

/**
 * Why a model is "failed", in words, from its newest ProcessStartFailed or ProcessExited: the
 * cause, how the process ended, and the last line of its own output (the whole tail, up to 20
 * lines, is `failureOutput`).
 */
export function failureText(event) {
  if (!event) return "";
  const p = event.payload || {};
  const last = lastLine(p.output_tail);
  const said = last ? `: "${last}"` : "";
  if (event.type === "ProcessStartFailed") {
    const how = exitText(p);
    return `start failed: ${p.error || "no reason recorded"}${how ? ` (${how})` : ""}${said}`;
  }
  if (event.type === "ProcessExited") return `crashed: ${exitText(p) || "exited with code ?"}${said}`;
  return "";
}

/** The tail of the model's own output recorded with its failure ("" when none). */
export function failureOutput(event) {
  return event?.payload?.output_tail || "";
}

function exitText(p) {
  if (p.signal) return `killed by signal ${p.signal}`;
  if (p.exit_code !== undefined && p.exit_code !== null) return `exited with code ${p.exit_code}`;
  return "";
}

function lastLine(text) {
  const lines = (text || "").split("\n").filter((l) => l.trim());
  return lines.length ? lines[lines.length - 1].trim() : "";
}

/**
 * The queue view derived from in-flight entries, for servers without `/api/queue`: per model the
 * number waiting and running, and each waiting request with its phase and wait.
 */
export function queueFromInflight(inflight, now = Date.now()) {
  const models = new Map();
  const requests = [];
  for (const r of inflight) {
    const m = models.get(r.model) || { id: r.model, state: "", queue_depth: 0, in_flight: 0 };
    const waiting = r.phase === "queued" || r.phase === "loading" || r.phase === "received";
    if (waiting) m.queue_depth++;
    else m.in_flight++;
    models.set(r.model, m);
    if (waiting) {
      requests.push({
        request_id: r.request_id || r.id,
        model: r.model,
        phase: r.phase || "received",
        position: r.queue_position ?? null,
        waited_ms: elapsedMs(r, now),
      });
    }
  }
  return { models: [...models.values()], requests };
}

/** The scheduler's "waiting" (for a model to load) reads as the in-flight view's "loading". */
export function phaseLabel(phase) {
  return phase === "waiting" ? "loading" : phase || "-";
}
