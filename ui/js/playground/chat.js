// Chat: streaming over chat-completions, messages or responses; markdown with highlighted code,
// reasoning shown apart (and the proxy's loading block apart from that), image attachments,
// edit & resend, regenerate, copy.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { save } from "../lib/storage.js";
import { CopyButton, Dialog, ErrorNote, usePersisted } from "../ui/common.js";
import { onMarkdownClick, useMarkdown } from "../ui/markdown.js";
import { busy, ModelPicker, readImages, streamChat } from "./shared.js";

/** The proxy's loading-status block: live while loading, then folded to one line. */
function LoadingBlock({ m }) {
  if (!m.loading) return null;
  const done = /Done! \(([\d.]+s)\)/.exec(m.loading);
  if (!done) return html`<pre class="loading-box" aria-label="Model loading status" aria-live="polite">${m.loading}</pre>`;
  return html`<details class="loading-box">
    <summary>Model loaded in ${done[1]}</summary>
    <pre class="wrap">${m.loading}</pre>
  </details>`;
}

function Reasoning({ m }) {
  if (!m.reasoning) return null;
  const secs = m.reasoningMs != null ? ` · ${(m.reasoningMs / 1000).toFixed(1)}s` : "";
  const live = m.streaming && !m.content;
  return html`<details class="reasoning" open=${live}>
    <summary>Reasoning (${m.reasoning.length} chars${secs})${live ? html` <span class="pulse">reasoning…</span>` : ""}</summary>
    <pre class="wrap">${m.reasoning}</pre>
  </details>`;
}

function Message({ m, index, onEdit, onRegenerate, streaming }) {
  const [raw, setRaw] = useState(false);
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.content);
  const isUser = m.role === "user";
  const plain = isUser || raw;
  // Rendered once per content change: a streaming token re-renders every Message, not just its own.
  const markdown = useMarkdown(m.content, !plain);
  return html`<li class=${`msg ${m.role}`} data-role=${m.role}>
    <div class="msg-who">${isUser ? "You" : "Assistant"}</div>
    <${LoadingBlock} m=${m} />
    <${Reasoning} m=${m} />
    ${(m.images || []).map((src) => html`<img class="thumb" src=${src} alt="Attached image" />`)}
    ${editing
      ? html`<div class="edit">
          <label class="sr-only" for=${`edit-${index}`}>Edit message</label>
          <textarea id=${`edit-${index}`} value=${draft} onInput=${(e) => setDraft(e.target.value)} rows="3"></textarea>
          <div class="row-actions">
            <button type="button" class="btn small primary" onClick=${() => { setEditing(false); onEdit(index, draft); }}>Save & resend</button>
            <button type="button" class="btn small" onClick=${() => setEditing(false)}>Cancel</button>
          </div>
        </div>`
      : plain
        ? html`<pre class="wrap msg-text">${m.content}</pre>`
        : html`<div class="markdown msg-text" onClick=${onMarkdownClick} dangerouslySetInnerHTML=${{ __html: markdown }}></div>`}
    <${ErrorNote} error=${m.error} />
    ${!streaming &&
    html`<div class="msg-actions">
      <${CopyButton} text=${m.content} />
      ${!isUser && html`<button type="button" class="btn tiny" aria-pressed=${raw ? "true" : "false"} onClick=${() => setRaw(!raw)}>${raw ? "Rendered" : "Raw"}</button>`}
      ${!isUser && html`<button type="button" class="btn tiny" onClick=${() => onRegenerate(index)}>Regenerate</button>`}
      ${isUser && !m.images?.length && html`<button type="button" class="btn tiny" onClick=${() => { setDraft(m.content); setEditing(true); }}>Edit</button>`}
    </div>`}
  </li>`;
}

function SettingsDialog({ settings, set, onClose }) {
  return html`<${Dialog} title="Chat settings" onClose=${onClose}>
    <div class="form-col">
      <label>Endpoint
        <select value=${settings.endpoint} onChange=${(e) => set.endpoint(e.target.value)}>
          <option value="chat">/v1/chat/completions</option>
          <option value="messages">/v1/messages</option>
          <option value="responses">/v1/responses</option>
        </select>
      </label>
      <label>System prompt
        <textarea rows="4" value=${settings.system} onInput=${(e) => set.system(e.target.value)}></textarea>
      </label>
      <label>Temperature: ${Number(settings.temperature).toFixed(2)}
        <input type="range" min="0" max="2" step="0.05" value=${settings.temperature} onInput=${(e) => set.temperature(Number(e.target.value))} />
      </label>
      <label>Max tokens
        <input type="number" min="1" value=${settings.maxTokens} onChange=${(e) => set.maxTokens(Number(e.target.value) || 4096)} />
      </label>
    </div>
  <//>`;
}

export function ChatTab() {
  const [model, setModel] = usePersisted("playground-selected-model", "");
  const [system, setSystem] = usePersisted("playground-system-prompt", "");
  const [temperature, setTemperature] = usePersisted("playground-temperature", 0.7);
  const [endpoint, setEndpoint] = usePersisted("playground-endpoint", "chat");
  const [maxTokens, setMaxTokens] = usePersisted("playground-max-tokens", 4096);
  const [messages, setMessages] = useState(() => {
    try {
      const saved = JSON.parse(localStorage.getItem("playground-messages") || "[]");
      return Array.isArray(saved) ? saved.map((m) => ({ ...m, streaming: false })) : [];
    } catch {
      return [];
    }
  });
  const [input, setInput] = useState("");
  const [images, setImages] = useState([]);
  const [error, setError] = useState("");
  const [showSettings, setShowSettings] = useState(false);
  const ctrl = useRef(null);
  const list = useRef(null);
  const stick = useRef(true);
  const saveTimer = useRef(null);
  const streaming = Boolean(ctrl.current);
  const messagesRef = useRef(messages);
  messagesRef.current = messages;
  // Persist at most every 2 s while streaming.
  useEffect(() => {
    if (saveTimer.current) return;
    saveTimer.current = setTimeout(() => {
      saveTimer.current = null;
      save("playground-messages", messagesRef.current);
    }, 2000);
  }, [messages]);
  useEffect(() => {
    const el = list.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [messages]);

  const run = async (history) => {
    const c = new AbortController();
    ctrl.current = c;
    const startedAt = Date.now();
    const assistant = { role: "assistant", content: "", reasoning: "", loading: "", streaming: true };
    setMessages([...history, assistant]);
    const update = (patch) =>
      setMessages((ms) => {
        const next = [...ms];
        next[next.length - 1] = { ...next[next.length - 1], ...patch };
        return next;
      });
    try {
      await busy(
        streamChat({
          endpoint,
          messages: history,
          opts: { model, system, temperature, maxTokens },
          signal: c.signal,
          onUpdate: (st) =>
            update({
              content: st.content,
              reasoning: st.reasoning,
              loading: st.loading,
              reasoningMs: st.reasoning ? Date.now() - (st.loadingDoneAt || startedAt) : undefined,
            }),
        }),
      );
    } catch (e) {
      update({ error: e.name === "AbortError" ? "Cancelled" : e.message });
    } finally {
      ctrl.current = null;
      update({ streaming: false });
    }
  };
  const send = async () => {
    if (!input.trim() || streaming || !model) return;
    const user = { role: "user", content: input, images };
    setInput("");
    setImages([]);
    stick.current = true;
    await run([...messages.filter((m) => !m.error || m.content), user]);
  };
  const onKey = (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  };
  const onEdit = (i, text) => run([...messages.slice(0, i), { ...messages[i], content: text }]);
  const onRegenerate = (i) => run(messages.slice(0, i));
  const attach = async (e) => {
    setError("");
    try {
      const imgs = await readImages([...e.target.files]);
      if (images.length + imgs.length > 5) throw new Error("At most 5 images per message");
      setImages([...images, ...imgs]);
    } catch (err) {
      setError(err.message);
    }
    e.target.value = "";
  };
  return html`<div class="chat">
    <div class="toolbar">
      <${ModelPicker} id="chat-model" value=${model} onChange=${setModel} />
      <button type="button" class="btn small" onClick=${() => setShowSettings(true)}>Settings</button>
      <button type="button" class="btn small" disabled=${streaming} onClick=${() => { setMessages([]); save("playground-messages", []); }}>New Chat</button>
    </div>
    <ul
      class="messages"
      ref=${list}
      aria-label="Conversation"
      aria-live="polite"
      onScroll=${(e) => {
        const el = e.currentTarget;
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      }}
    >
      ${messages.length === 0 && html`<li class="empty">Send a message to start chatting${model ? ` with ${model}` : ""}.</li>`}
      ${messages.map(
        (m, i) => html`<${Message} key=${i} m=${m} index=${i} onEdit=${onEdit} onRegenerate=${onRegenerate} streaming=${streaming} />`,
      )}
    </ul>
    <${ErrorNote} error=${error} />
    ${images.length > 0 &&
    html`<div class="attachments">
      ${images.map(
        (src, i) => html`<span class="attachment"><img class="thumb" src=${src} alt=${`Attachment ${i + 1}`} />
          <button type="button" class="btn tiny" aria-label=${`Remove attachment ${i + 1}`} onClick=${() => setImages(images.filter((_, j) => j !== i))}>✕</button></span>`,
      )}
    </div>`}
    <div class="composer">
      <label class="sr-only" for="chat-input">Message</label>
      <textarea id="chat-input" rows="2" placeholder="Message (Enter sends, Shift+Enter for a new line)" value=${input} onInput=${(e) => setInput(e.target.value)} onKeyDown=${onKey}></textarea>
      <label class="btn small" title="Attach images">Attach<span class="sr-only"> images</span>
        <input type="file" accept="image/jpeg,image/png,image/gif,image/webp" multiple class="sr-only" onChange=${attach} />
      </label>
      ${streaming
        ? html`<button type="button" class="btn danger" onClick=${() => ctrl.current?.abort()}>Cancel</button>`
        : html`<button type="button" class="btn primary" disabled=${!input.trim() || !model} onClick=${send}>Send</button>`}
    </div>
    ${showSettings &&
    html`<${SettingsDialog}
      settings=${{ endpoint, system, temperature, maxTokens }}
      set=${{ endpoint: setEndpoint, system: setSystem, temperature: setTemperature, maxTokens: setMaxTokens }}
      onClose=${() => setShowSettings(false)}
    />`}
  </div>`;
}
