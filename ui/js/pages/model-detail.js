// One model: header with state and load/unload; tabs for its activity, live logs and details.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { enc } from "../api.js";
import { appendCapped } from "../lib/ansi.js";
import { useStore } from "../store.js";
import { ActivityTable } from "../ui/activity-table.js";
import { Card, ErrorNote, StatusDot, Tabs } from "../ui/common.js";
import { InflightCard } from "../ui/inflight-table.js";
import { LogPanel } from "../ui/log-panel.js";
import { CapabilityTags, LoadButton } from "./models.js";

export function resolveModel(models, id) {
  return models.find((m) => m.id === id) || models.find((m) => (m.aliases || []).includes(id)) || null;
}

function ModelLogs({ id }) {
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  useEffect(() => {
    const ctrl = new AbortController();
    setText("");
    setError("");
    (async () => {
      try {
        const res = await fetch(`/logs/stream/${enc(id)}`, { signal: ctrl.signal });
        if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const chunk = dec.decode(value, { stream: true });
          setText((t) => appendCapped(t, chunk));
        }
      } catch (e) {
        if (e.name !== "AbortError") setError(`Log stream failed: ${e.message}`);
      }
    })();
    return () => ctrl.abort();
  }, [id]);
  return html`<${LogPanel} id=${`model-${id}`} title=${`${id} logs`} text=${text} error=${error} />`;
}

export function ModelDetailPage({ id }) {
  const models = useStore((s) => s.models);
  const [tab, setTab] = useState("activity");
  const [error, setError] = useState("");
  const m = resolveModel(models, id);
  if (!m) {
    return html`<div class="page"><${Card} title="Model">
      <p>${models.length ? `Model “${id}” not found` : "Loading…"}</p>
      <a href="#/models">Back to models</a>
    <//></div>`;
  }
  return html`<div class="page">
    <${Card}
      title=${html`${!m.peerID && html`<${StatusDot} state=${m.state} />`} ${m.name || m.id}${m.name && m.name !== m.id ? html` <span class="muted">(${m.id})</span>` : ""}`}
      actions=${!m.peerID &&
      html`<span class="state" data-testid="model-state">${m.state}</span>
        <a class="btn small ghost" href=${`/upstream/${enc(m.id)}/`} target="_blank" rel="noopener">Open server ↗</a>
        <${LoadButton} model=${m} onError=${setError} small />`}
    >
      <${ErrorNote}>${error}<//>
      ${m.description && html`<p class="muted" style="margin-top:0"><em>${m.description}</em></p>`}
      ${m.aliases?.length ? html`<p class="small">Aliases: ${m.aliases.join(", ")}</p>` : ""}
    <//>
    <${Tabs}
      label="Model sections"
      tabs=${[
        { id: "activity", label: "Activity" },
        { id: "logs", label: "Logs" },
        { id: "details", label: "Details" },
      ]}
      value=${tab}
      onChange=${setTab}
    />
    <div role="tabpanel" aria-labelledby=${`tab-${tab}`}>
      ${tab === "activity" &&
      html`<${InflightCard} prefix="model-detail" model=${m.id} />
        <${ActivityTable} prefix="model-detail" model=${m.id} compact />`}
      ${tab === "logs" && (m.peerID ? html`<p class="empty">Peers have no local logs</p>` : html`<${ModelLogs} id=${m.id} />`)}
      ${tab === "details" &&
      html`<${Card} title="Details">
        ${Object.values(m.capabilities || {}).some(Boolean) || m.context_length
          ? html`<${CapabilityTags} model=${m} />`
          : html`<p class="empty">No capabilities reported</p>`}
        <dl class="kv-list">
          <dt>ID</dt><dd class="mono">${m.id}</dd>
          <dt>State</dt><dd>${m.state || "-"}</dd>
          <dt>Unlisted</dt><dd>${m.unlisted ? "yes" : "no"}</dd>
          ${m.peerID && html`<dt>Peer</dt><dd>${m.peerID}</dd>`}
          ${m.context_length ? html`<dt>Context</dt><dd>${m.context_length}</dd>` : ""}
        </dl>
      <//>`}
    </div>
  </div>`;
}
