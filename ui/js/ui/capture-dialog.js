// The capture viewer: request/response headers and bodies; SSE responses get a Chat view.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { enc, getJSON } from "../api.js";
import { base64ToText, bodyKind, headerValue, prettyJson, stitchSseChat } from "../lib/capture.js";
import { CopyButton, Dialog, ErrorNote, Segmented } from "./common.js";
import { Markdown } from "./markdown.js";

function HeaderTable({ headers }) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return html`<p class="empty">No headers captured</p>`;
  return html`<table class="table kv">
    <tbody>
      ${entries.map(([k, v]) => html`<tr><th scope="row">${k}</th><td class="mono">${v}</td></tr>`)}
    </tbody>
  </table>`;
}

function Section({ title, children, open = true }) {
  return html`<details class="section" open=${open}>
    <summary>${title}</summary>
    <div class="section-body">${children}</div>
  </details>`;
}

function Body({ b64, contentType, isResponse }) {
  const kind = bodyKind(contentType, b64);
  const text = kind === "image" || kind === "binary" || kind === "empty" ? null : base64ToText(b64);
  const pretty = text != null ? prettyJson(text) : null;
  const views = kind === "sse" ? ["chat", "raw"] : pretty != null ? ["pretty", "raw"] : ["raw"];
  const [view, setView] = useState(views[0]);
  if (kind === "empty") return html`<p class="empty">${isResponse ? "No body captured" : "No body"}</p>`;
  if (kind === "image") return html`<img class="capture-img" alt="Captured image" src=${`data:${contentType};base64,${b64}`} />`;
  if (kind === "binary") return html`<p class="empty">Binary body (${contentType || "unknown type"})</p>`;
  let content;
  if (view === "chat") {
    const chat = stitchSseChat(text);
    content = html`<div class="capture-chat">
      ${chat.reasoning && html`<div class="reasoning"><h4>Reasoning</h4><pre class="wrap">${chat.reasoning}</pre></div>`}
      <h4>Response</h4>
      <${Markdown} text=${chat.content} />
    </div>`;
  } else {
    content = html`<pre class="mono body-pre">${view === "pretty" ? pretty : text}</pre>`;
  }
  return html`<div>
    <div class="row-actions">
      ${views.length > 1 && html`<${Segmented} label="Body view" options=${views.map((v) => ({ value: v, label: v[0].toUpperCase() + v.slice(1) }))} value=${view} onChange=${setView} />`}
      <${CopyButton} text=${() => (view === "pretty" ? pretty : text)} />
    </div>
    ${content}
  </div>`;
}

export function CaptureDialog({ row, onClose }) {
  const [cap, setCap] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    getJSON(`/api/captures/${enc(row.id)}`)
      .then(setCap)
      .catch((e) =>
        setError(e.status === 404 ? "Capture not found (may have expired or never been recorded)" : e.message),
      );
  }, [row.id]);
  return html`<${Dialog} title=${`Capture #${row.id}`} onClose=${onClose} wide>
    <p class="mono muted">${cap?.req_path || row.req_path}</p>
    <${ErrorNote} error=${error} />
    ${!cap && !error && html`<p class="empty">Loading…</p>`}
    ${cap &&
    html`
      <${Section} title="Request Headers" open=${false}><${HeaderTable} headers=${cap.req_headers} /><//>
      <${Section} title="Request Body"><${Body} b64=${cap.req_body} contentType=${headerValue(cap.req_headers, "content-type") || "application/json"} /><//>
      <${Section} title="Response Headers" open=${false}><${HeaderTable} headers=${cap.resp_headers} /><//>
      <${Section} title="Response Body"><${Body} b64=${cap.resp_body} contentType=${headerValue(cap.resp_headers, "content-type")} isResponse /><//>
    `}
  <//>`;
}
