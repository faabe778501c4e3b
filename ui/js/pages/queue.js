// Queue: per model its depth and in-flight count; each waiting request with its state and wait.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON } from "../api.js";
import { phaseLabel, queueFromInflight } from "../lib/event-log.js";
import { formatWait } from "../lib/format.js";
import { useStore } from "../store.js";
import { Card, Empty, ErrorNote, StatusDot, useInterval } from "../ui/common.js";

export function QueuePage() {
  const [data, setData] = useState(null);
  const [fallback, setFallback] = useState(false);
  const [error, setError] = useState(null);
  const inflight = useStore((s) => s.inflight);
  const models = useStore((s) => s.models);
  useInterval(1000);
  useEffect(() => {
    let stop = false;
    let timer = null;
    const poll = async () => {
      try {
        const d = await getJSON("/api/queue");
        if (!stop) {
          setData(d);
          setError(null);
        }
      } catch (e) {
        if (e.status === 404) {
          setFallback(true);
          return; // derive from the in-flight stream instead
        }
        if (!stop) setError(e);
      }
      if (!stop) timer = setTimeout(poll, document.hidden ? 5000 : 1000);
    };
    poll();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, []);
  const view = fallback ? queueFromInflight(inflight) : data;
  const state = Object.fromEntries(models.map((m) => [m.id, m.state]));
  const modelRows = (view?.models || []).map((m) => ({ ...m, state: m.state || state[m.id] || "" }));
  const requests = [...(view?.requests || [])].sort(
    (a, b) => String(a.model).localeCompare(b.model) || (a.position ?? 1e9) - (b.position ?? 1e9),
  );
  return html`<div class="page">
    ${fallback && html`<p class="note">This server has no /api/queue; showing the queue derived from in-flight requests.</p>`}
    <${ErrorNote} error=${error} />
    <${Card} title="Models">
      ${modelRows.length
        ? html`<div class="table-wrap"><table class="table" aria-label="Queue per model">
            <thead><tr><th scope="col">Model</th><th scope="col">State</th><th scope="col">Queue depth</th><th scope="col">In flight</th></tr></thead>
            <tbody>
              ${modelRows.map(
                (m) => html`<tr data-model=${m.id}>
                  <td><${StatusDot} state=${m.state} /> <a href=${`#/models/${encodeURIComponent(m.id)}`}>${m.id}</a></td>
                  <td>${m.state || "-"}${m.swapping ? html` <span class="tag phase-loading">swapping</span>` : ""}</td>
                  <td class="num" data-testid="queue-depth">${m.queue_depth}</td>
                  <td class="num">${m.in_flight}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : html`<${Empty}>${view ? "Nothing queued or running" : "Loading…"}<//>`}
    <//>
    <${Card} title=${`Waiting requests (${requests.length})`}>
      ${requests.length
        ? html`<div class="table-wrap"><table class="table" aria-label="Waiting requests">
            <thead><tr><th scope="col">Request</th><th scope="col">Model</th><th scope="col">State</th><th scope="col">Position</th><th scope="col">Waited</th></tr></thead>
            <tbody>
              ${requests.map(
                (r) => html`<tr data-request=${r.request_id}>
                  <td class="mono"><a href=${`#/story/${encodeURIComponent(r.request_id)}`}>${r.request_id}</a></td>
                  <td>${r.model}</td>
                  <td><span class=${`tag phase-${phaseLabel(r.phase)}`} title=${r.phase === "waiting" ? "waiting for its model to load" : ""}>${phaseLabel(r.phase)}</span>${r.is_load ? html` <span class="tag">load</span>` : ""}</td>
                  <td class="num">${r.position != null ? `#${r.position}` : "-"}</td>
                  <td class="num">${formatWait(r.waited_ms)}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : html`<${Empty}>No request is waiting<//>`}
    <//>
  </div>`;
}
