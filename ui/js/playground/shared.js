// What every Playground tab shares: the model list and picker, streaming chat, busy state.

import { html, useEffect } from "../../vendor/htm-preact-standalone.mjs";
import { errorText, PLAYGROUND_SESSION } from "../api.js";
import { buildChatBody, chatDelta, ENDPOINTS, splitLoadingState } from "../lib/chat-stream.js";
import { SSEParser } from "../lib/sse.js";
import { setState, useModelList } from "../store.js";

export const SESSION_HEADERS = { "X-Session-ID": PLAYGROUND_SESSION };

let busyCount = 0;
/** Track playground activity for the sidebar's busy animation. */
export async function busy(promise) {
  busyCount++;
  setState({ playgroundBusy: true });
  try {
    return await promise;
  } finally {
    busyCount--;
    setState({ playgroundBusy: busyCount > 0 });
  }
}

/** Picker groups: profile pins, matching capabilities, selectors, local (+aliases), peers. */
export function pickerGroups(list, capability) {
  const type = (m) => m.meta?.llamaswap?.type || "model";
  const groups = [];
  const add = (label, items) => items.length && groups.push({ label, items });
  add("Profile", list.filter((m) => type(m) === "profile").map((m) => ({ value: m.id, label: m.id })));
  if (capability) {
    add(
      "Matching capabilities",
      list.filter((m) => type(m) === "model" && m.capabilities?.[capability]).map((m) => ({ value: m.id, label: m.name || m.id })),
    );
  }
  add("Selectors", list.filter((m) => type(m) === "selector").map((m) => ({ value: m.id, label: m.name || m.id })));
  const local = [];
  for (const m of list.filter((x) => type(x) === "model")) {
    local.push({ value: m.id, label: m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id });
    for (const a of m.meta?.llamaswap?.aliases || []) local.push({ value: a, label: `↳ ${a}` });
  }
  add("Local", local);
  add("Peers", list.filter((m) => type(m) === "peer").map((m) => ({ value: m.id, label: m.name || m.id })));
  return groups;
}

export function ModelPicker({ id, value, onChange, capability, label = "Model" }) {
  const list = useModelList();
  const groups = pickerGroups(list, capability);
  useEffect(() => {
    if (!value && groups.length) onChange(groups[0].items[0].value);
  }, [list.length]);
  return html`<label class="picker" for=${id}>
    <span>${label}</span>
    <select id=${id} value=${value} onChange=${(e) => onChange(e.target.value)} disabled=${!groups.length}>
      ${!groups.length && html`<option value="">No models listed</option>`}
      ${groups.map(
        (g) => html`<optgroup label=${g.label}>
          ${g.items.map((o) => html`<option value=${o.value} selected=${o.value === value}>${o.label}</option>`)}
        </optgroup>`,
      )}
    </select>
  </label>`;
}

/**
 * Stream a chat request; `onUpdate({content, reasoning, loading, loadingDone, firstTokenAt})`
 * is called with the accumulated text after each event. Resolves with the final state; throws
 * an Error naming the status and server message on a non-2xx answer.
 */
export async function streamChat({ endpoint, messages, opts, signal, onUpdate }) {
  const body = buildChatBody(endpoint, messages, opts);
  const res = await fetch(ENDPOINTS[endpoint], {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...SESSION_HEADERS },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw new Error(`${res.status}: ${await errorText(res)}`);
  const parser = new SSEParser();
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let rawReasoning = "";
  const st = { content: "", reasoning: "", loading: "", loadingDone: true, firstTokenAt: null, loadingDoneAt: null };
  const apply = (events) => {
    for (const ev of events) {
      const d = chatDelta(endpoint, ev);
      if (d.error) throw new Error(d.error);
      if (!d.content && !d.reasoning) continue;
      rawReasoning += d.reasoning;
      st.content += d.content;
      const split = splitLoadingState(rawReasoning);
      st.loading = split.loading;
      st.reasoning = split.reasoning;
      if (split.loadingDone && st.loading && st.loadingDoneAt == null) st.loadingDoneAt = Date.now();
      st.loadingDone = split.loadingDone;
      if ((d.content || split.reasoning) && st.firstTokenAt == null) st.firstTokenAt = Date.now();
      onUpdate({ ...st });
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    apply(parser.push(dec.decode(value, { stream: true })));
  }
  apply(parser.end());
  return st;
}

/** Read image files as data URLs (jpg/png/gif/webp, ≤ 20 MB each). */
export async function readImages(files) {
  const ok = ["image/jpeg", "image/png", "image/gif", "image/webp"];
  const out = [];
  for (const f of files) {
    if (!ok.includes(f.type)) throw new Error(`${f.name}: only JPEG, PNG, GIF and WebP images can be attached`);
    if (f.size > 20 * 1024 * 1024) throw new Error(`${f.name}: images must be 20 MB or smaller`);
    out.push(
      await new Promise((resolve, reject) => {
        const r = new FileReader();
        r.onload = () => resolve(r.result);
        r.onerror = () => reject(new Error(`${f.name}: could not be read`));
        r.readAsDataURL(f);
      }),
    );
  }
  return out;
}
