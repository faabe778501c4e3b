// Events: a live, filterable tail of the event log; a decision opens its explanation.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON, isMissingRoute, query } from "../api.js";
import { describeEvent, isDecision, matchesFilter, mergeEvents } from "../lib/event-log.js";
import { clockTime } from "../lib/format.js";
import { useStore } from "../store.js";
import { Card, Dialog, Empty, ErrorNote, Switch } from "../ui/common.js";

const PAGE = 500;
const KEEP = 1000;
const POLL_MS = 2000;

/** Query parameters for a filter; `type` may list several types, sent as repeated keys. */
export function filterParams(filter) {
  const types = (filter.type || "").split(",").map((t) => t.trim()).filter(Boolean);
  return { model: filter.model, request: filter.request, type: types };
}

/** The newest events matching `filter` (without since_seq the API answers the tail). */
export async function fetchTail(filter) {
  const d = await getJSON(`/api/log/events${query({ ...filterParams(filter), limit: KEEP })}`);
  return { events: mergeEvents([], d.events || [], KEEP), head: d.last_seq ?? 0 };
}

export function ExplainDialog({ seq, onClose }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    getJSON(`/api/log/explain${query({ seq })}`)
      .then(setData)
      .catch((e) =>
        setError(
          isMissingRoute(e)
            ? `No explanation available for #${seq}: this server has no /api/log/explain yet`
            : e.message,
        ),
      );
  }, [seq]);
  return html`<${Dialog} title=${`Why #${seq}?`} onClose=${onClose} wide>
    <${ErrorNote} error=${error} />
    ${!data && !error && html`<p class="empty">Loading…</p>`}
    ${data &&
    html`<pre class="explanation" data-testid="explanation">${data.explanation}</pre>
      ${data.decision && html`<h3>Decision</h3><p>${data.decision.type}: ${describeEvent(data.decision)}</p>`}
      ${data.cause && html`<h3>Cause</h3><p>#${data.cause.seq} ${data.cause.type}: ${describeEvent(data.cause)}</p>`}
      ${data.state_before &&
      html`<details class="section"><summary>Scheduler state before</summary>
        <pre class="mono body-pre">${JSON.stringify(data.state_before, null, 2)}</pre>
      </details>`}`}
  <//>`;
}

/** A table of events; decisions get a "why?" button. Shared with the story page. */
export function EventTable({ events, label = "Events" }) {
  const [explain, setExplain] = useState(null);
  return html`<div class="table-wrap scroll-70">
    <table class="table events" aria-label=${label}>
      <thead><tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Key</th><th scope="col">What</th><th scope="col"><span class="sr-only">Explain</span></th></tr></thead>
      <tbody>
        ${events.map(
          (e) => html`<tr data-seq=${e.seq} data-type=${e.type} class=${isDecision(e) ? "decision" : ""}>
            <td class="num">${e.seq}</td>
            <td class="mono small">${clockTime(e.ts_ms)}</td>
            <td><span class=${isDecision(e) ? "tag decision" : "tag"}>${e.type}</span></td>
            <td class="mono small">${e.key
              ? e.key.length > 20
                ? html`<a href=${`#/story/${encodeURIComponent(e.key)}`}>${e.key.slice(-10)}</a>`
                : e.key
              : ""}</td>
            <td>${describeEvent(e)}${e.cause ? html` <span class="muted small">← #${e.cause}</span>` : ""}</td>
            <td>${isDecision(e) &&
            html`<button type="button" class="btn tiny" aria-label=${`Explain decision ${e.seq}`} onClick=${() => setExplain(e.seq)}>why?</button>`}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${explain != null && html`<${ExplainDialog} seq=${explain} onClose=${() => setExplain(null)} />`}
  </div>`;
}

function parseHashQuery() {
  const q = location.hash.split("?")[1] || "";
  const p = new URLSearchParams(q);
  return { model: p.get("model") || "", request: p.get("request") || "", type: p.get("type") || "" };
}

export function EventsPage() {
  const [filter, setFilter] = useState(parseHashQuery);
  const [draft, setDraft] = useState(filter);
  const [events, setEvents] = useState([]);
  const [error, setError] = useState(null);
  const [missing, setMissing] = useState(false);
  const [follow, setFollow] = useState(true);
  const [decisionsOnly, setDecisionsOnly] = useState(false);
  const live = useStore((s) => s.liveEvents);
  const models = useStore((s) => s.models);
  const headRef = useRef(0);
  useEffect(() => {
    let stop = false;
    let timer = null;
    setEvents([]);
    setError(null);
    fetchTail(filter)
      .then(({ events: evs, head }) => {
        if (stop) return;
        setEvents(evs);
        headRef.current = Math.max(head, evs.length ? evs[evs.length - 1].seq : 0);
        const poll = async () => {
          if (stop) return;
          if (!document.hidden) {
            try {
              const d = await getJSON(`/api/log/events${query({ ...filterParams(filter), since_seq: headRef.current, limit: PAGE })}`);
              if (d.events?.length) {
                headRef.current = d.events[d.events.length - 1].seq;
                setEvents((old) => mergeEvents(old, d.events, KEEP));
              }
            } catch {
              /* the next poll tries again; the header dot shows a lost connection */
            }
          }
          timer = setTimeout(poll, POLL_MS);
        };
        timer = setTimeout(poll, POLL_MS);
      })
      .catch((e) => {
        if (stop) return;
        if (e.status === 404) setMissing(true);
        else setError(e);
      });
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [filter.model, filter.request, filter.type]);
  // Live tail from /api/events (logEvent), filtered here as the server would.
  // Only the poll moves headRef: an SSE message lost to a drop or a reconnect
  // is then still fetched by the next poll (mergeEvents dedups by seq).
  useEffect(() => {
    const fresh = live.filter((e) => e.seq > headRef.current && matchesFilter(e, filter));
    if (fresh.length) setEvents((old) => mergeEvents(old, fresh, KEEP));
  }, [live]);
  const box = useRef(null);
  useEffect(() => {
    const el = box.current?.querySelector(".table-wrap");
    if (follow && el) el.scrollTop = el.scrollHeight;
  }, [events, follow]);
  const apply = (e) => {
    e.preventDefault();
    setFilter({ ...draft });
    const q = query(draft);
    history.replaceState(null, "", `#/events${q}`);
  };
  const shown = decisionsOnly ? events.filter(isDecision) : events;
  return html`<div class="page" ref=${box}>
    <${Card} title="Event log" actions=${html`<span class="count">${shown.length} shown</span>`}>
      <form class="filter-drawer" onSubmit=${apply} aria-label="Event filters">
        <label>Model
          <input list="event-models" value=${draft.model} onInput=${(e) => setDraft({ ...draft, model: e.target.value })} placeholder="any" />
          <datalist id="event-models">${models.map((m) => html`<option value=${m.id} />`)}</datalist>
        </label>
        <label>Request <input value=${draft.request} onInput=${(e) => setDraft({ ...draft, request: e.target.value })} placeholder="request id" /></label>
        <label>Type <input value=${draft.type} onInput=${(e) => setDraft({ ...draft, type: e.target.value })} placeholder="e.g. SwapPlanned,Dispatch" /></label>
        <button type="submit" class="btn small primary">Apply</button>
        <button type="button" class="btn small" onClick=${() => { const empty = { model: "", request: "", type: "" }; setDraft(empty); setFilter(empty); history.replaceState(null, "", "#/events"); }}>Clear</button>
        <${Switch} checked=${decisionsOnly} onChange=${setDecisionsOnly} label="Decisions only" />
        <${Switch} checked=${follow} onChange=${setFollow} label="Follow" />
      </form>
      <${ErrorNote} error=${error} />
      ${missing
        ? html`<${Empty}>This server does not expose the event log (/api/log/events answered 404).<//>`
        : shown.length
          ? html`<${EventTable} events=${shown} />`
          : html`<${Empty}>No events match<//>`}
    <//>
  </div>`;
}
