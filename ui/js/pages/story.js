// A request's story: received → queued → swap → dispatched → finished, with the time spent in
// each phase and every event, decisions explainable.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { enc, getJSON, query } from "../api.js";
import { storyPhases } from "../lib/event-log.js";
import { clockTime, formatWait } from "../lib/format.js";
import { Card, Empty, ErrorNote } from "../ui/common.js";
import { EventTable } from "./events.js";

export function StoryPage({ id }) {
  const [events, setEvents] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setEvents(null);
    setError(null);
    getJSON(`/api/requests/${enc(id)}/story`)
      .then((d) => setEvents(d.events || []))
      .catch(async (e) => {
        if (e.status !== 404) return setError(e);
        try {
          const d = await getJSON(`/api/log/events${query({ request: id, since_seq: 0, limit: 500 })}`);
          setEvents(d.events || []);
        } catch (e2) {
          setError(e2.status === 404 ? new Error(`No story for request ${id} on this server`) : e2);
        }
      });
  }, [id]);
  const phases = events ? storyPhases(events) : [];
  const total = phases.length > 1 ? phases[phases.length - 1].ts_ms - phases[0].ts_ms : 0;
  return html`<div class="page">
    <${Card} title=${html`Request <span class="mono">${id}</span>`}>
      <${ErrorNote} error=${error} />
      ${events && !events.length && html`<${Empty}>No events recorded for this request<//>`}
      ${phases.length > 0 &&
      html`<ol class="story" aria-label="Phases">
          ${phases.map(
            (p) => html`<li class=${`story-phase phase-${p.phase}`} data-phase=${p.phase}>
              <span class="story-name">${p.label ?? p.phase}</span>
              <span class="mono small">${clockTime(p.ts_ms)}</span>
              <span class="muted small">${p.ms != null ? `+${formatWait(p.ms)}` : ""}</span>
            </li>`,
          )}
        </ol>
        ${total > 0 &&
        html`<div class="story-bar" role="img" aria-label="Time per phase">
          ${phases.slice(0, -1).map(
            (p) => html`<span class=${`seg phase-${p.phase}`} style=${`flex-grow:${Math.max(p.ms, 1)}`} title=${`${p.phase}: ${formatWait(p.ms)}`}></span>`,
          )}
        </div>
        <p class="small muted">Total ${formatWait(total)}</p>`}`}
    <//>
    ${events?.length > 0 && html`<${Card} title="Events"><${EventTable} events=${events} label="Request events" /><//>`}
  </div>`;
}
