// The live in-flight card: elapsed ticks locally, cancel per request, our phase and queue
// position, and a link to the request's story.

import { html, useState } from "../../vendor/htm-preact-standalone.mjs";
import { enc, postJSON } from "../api.js";
import { formatBytes, middleEllipsis } from "../lib/format.js";
import { mergeOrder } from "../lib/order.js";
import { elapsedMs, sessionIdOf } from "../lib/sse.js";
import { useStore } from "../store.js";
import { Card, ColumnChooser, Empty, ErrorNote, useFrameTick, usePersisted } from "./common.js";

const COLUMNS = [
  { id: "cancel", label: "Cancel" },
  { id: "elapsed", label: "Elapsed" },
  { id: "phase", label: "Phase" },
  { id: "model", label: "Model" },
  { id: "request", label: "Request" },
  { id: "address", label: "Address" },
  { id: "ua", label: "User Agent" },
  { id: "session", label: "Session ID" },
  { id: "bytes", label: "Bytes Received" },
];

function phaseText(r) {
  if (!r.phase) return "-";
  return r.phase === "queued" && r.queue_position != null ? `queued #${r.queue_position}` : r.phase;
}

export function InflightCard({ prefix = "activity", model }) {
  const all = useStore((s) => s.inflight);
  const sessionHeaders = useStore((s) => s.uiConfig?.activity?.session_id);
  const rows = model ? all.filter((r) => r.model === model) : all;
  const [open, setOpen] = usePersisted(`${prefix}-inflight-open`, true);
  const [visible, setVisible] = usePersisted(`${prefix}-inflight-columns`, COLUMNS.map((c) => c.id));
  const [order, setOrder] = usePersisted(`${prefix}-inflight-column-order`, COLUMNS.map((c) => c.id));
  const [pending, setPending] = useState({});
  const [error, setError] = useState("");
  useFrameTick(open && rows.length > 0);
  const ids = mergeOrder(order, COLUMNS.map((c) => c.id));
  const cols = ids
    .filter((id) => visible.includes(id))
    .map((id) => COLUMNS.find((c) => c.id === id))
    .filter(Boolean);
  const cancel = async (id) => {
    setPending((p) => ({ ...p, [id]: true }));
    setError("");
    try {
      await postJSON(`/api/inflight/${enc(id)}/cancel`);
    } catch (e) {
      setError(`Cancel failed: ${e.message}`);
      setPending((p) => ({ ...p, [id]: false }));
    }
  };
  const now = Date.now();
  const cell = (c, r) => {
    switch (c.id) {
      case "cancel":
        return html`<button
          type="button"
          class="btn small danger"
          disabled=${pending[r.id]}
          aria-label=${`Cancel request ${r.id}`}
          onClick=${() => cancel(r.id)}
        >
          Cancel
        </button>`;
      case "elapsed":
        return html`<span class="num">${(elapsedMs(r, now) / 1000).toFixed(2)}s</span>`;
      case "phase":
        return html`<span class=${`tag phase-${r.phase || "none"}`}>${phaseText(r)}</span>`;
      case "model":
        return html`<a href=${`#/models/${enc(r.model)}`}>${r.model}</a>`;
      case "request":
        return html`<span title=${`${r.method} ${r.req_path}`}>${r.method} ${middleEllipsis(r.req_path, 40)}</span>
          ${r.request_id && html` <a class="story-link" href=${`#/story/${encodeURIComponent(r.request_id)}`}>story</a>`}`;
      case "address":
        return r.remote_ip || "-";
      case "ua": {
        const ua = r.req_headers?.["User-Agent"] || "";
        return html`<span title=${ua}>${middleEllipsis(ua, 28) || "-"}</span>`;
      }
      case "session":
        return middleEllipsis(sessionIdOf(r.req_headers, sessionHeaders), 24) || "-";
      case "bytes":
        return formatBytes(r.resp_bytes || 0);
      default:
        return "";
    }
  };
  return html`<${Card}
    title=${html`In-flight requests <span class="count" aria-live="polite">${rows.length} active</span>`}
    actions=${html`
      <${ColumnChooser}
        columns=${COLUMNS}
        visible=${visible}
        order=${ids}
        onChange=${(v, o) => {
          setVisible(v);
          setOrder(o);
        }}
      />
      <button type="button" class="btn small" aria-expanded=${open ? "true" : "false"} onClick=${() => setOpen(!open)}>
        ${open ? "Hide" : "Show"}
      </button>
    `}
  >
    <${ErrorNote} error=${error} />
    ${open &&
    html`<div class="table-wrap">
      <table class="table" aria-label="In-flight requests">
        <thead><tr>${cols.map((c) => html`<th scope="col">${c.label}</th>`)}</tr></thead>
        <tbody>
          ${rows.length === 0
            ? html`<tr><td colspan=${cols.length}><${Empty}>No in-flight requests<//></td></tr>`
            : rows.map((r) => html`<tr data-inflight-id=${r.id}>${cols.map((c) => html`<td>${cell(c, r)}</td>`)}</tr>`)}
        </tbody>
      </table>
    </div>`}
  <//>`;
}
