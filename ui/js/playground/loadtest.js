// Load test: fire many streaming chats at once and watch each one's queue, load and generation.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { formatWait } from "../lib/format.js";
import { phaseTotals, timelineSegments, trackLoading } from "../lib/loadtest.js";
import { moveItem } from "../lib/order.js";
import { Empty, useFrameTick, usePersisted } from "../ui/common.js";
import { useModelList } from "../store.js";
import { busy, pickerGroups, streamChat } from "./shared.js";

const DEFAULT_PROMPT = "Write a short paragraph about llamas.";
const KINDS = ["queue", "load", "wait", "reasoning", "generate", "error"];

function Timeline({ runs, now }) {
  const starts = runs.map((r) => r.marks.start).filter(Boolean);
  if (!starts.length) return html`<${Empty}>Press Go to start<//>`;
  const t0 = Math.min(...starts);
  const t1 = Math.max(...runs.map((r) => r.marks.end ?? now));
  const span = Math.max(1, t1 - t0);
  return html`<div class="gantt" role="img" aria-label="Request timeline">
    <div class="gantt-legend">${KINDS.map((k) => html`<span><i class=${`seg seg-${k}`}></i>${k}</span>`)}</div>
    ${runs.map((r, i) => {
      const segs = r.marks.start ? timelineSegments(r.marks, now) : [];
      const totals = phaseTotals(segs);
      return html`<div class="gantt-row" data-run=${i} data-status=${r.status}>
        <span class="gantt-label" title=${r.model}>${i + 1}. ${r.model}</span>
        <span class="gantt-track">
          ${segs.map(
            (s) => html`<span
              class=${`seg seg-${s.kind}`}
              data-kind=${s.kind}
              style=${`left:${((s.from - t0) / span) * 100}%;width:${((s.to - s.from) / span) * 100}%`}
              title=${`${s.kind}: ${formatWait(s.to - s.from)}`}
            ></span>`,
          )}
        </span>
        <span class="gantt-total small">${Object.entries(totals).map(([k, v]) => `${k} ${formatWait(v)}`).join(" · ")}</span>
      </div>`;
    })}
    <div class="small muted">Total ${formatWait(span)}</div>
  </div>`;
}

export function LoadTestTab() {
  const list = useModelList();
  const [prompt, setPrompt] = usePersisted("concurrency-prompt", DEFAULT_PROMPT);
  const [maxTokens, setMaxTokens] = usePersisted("concurrency-max-tokens", 256);
  const [entries, setEntries] = usePersisted("concurrency-test-list", []);
  const [collapsed, setCollapsed] = usePersisted("concurrency-timeline-collapsed", false);
  const [runs, setRuns] = useState([]);
  const ctrls = useRef([]);
  const running = runs.some((r) => r.status === "waiting" || r.status === "streaming");
  useFrameTick(running);
  const groups = pickerGroups(list).filter((g) => g.label !== "Profile");
  const go = () => {
    const start = Date.now();
    ctrls.current = entries.map(() => new AbortController());
    setRuns(entries.map((model) => ({ model, status: "waiting", marks: { start }, content: "" })));
    const patch = (i, fn) => setRuns((rs) => rs.map((r, j) => (j === i ? fn(r) : r)));
    busy(
      Promise.all(
        entries.map((model, i) =>
          streamChat({
            endpoint: "chat",
            messages: [{ role: "user", content: prompt }],
            opts: { model, maxTokens },
            signal: ctrls.current[i].signal,
            onUpdate: (st) =>
              patch(i, (r) => {
                const now = Date.now();
                let marks = trackLoading(r.marks, st.loading, st.loadingDone, now);
                if (st.reasoning && marks.firstReasoning == null) marks = { ...marks, firstReasoning: now };
                if (st.content && marks.firstContent == null) marks = { ...marks, firstContent: now };
                return { ...r, status: st.content || st.reasoning ? "streaming" : "waiting", marks, content: st.content };
              }),
          })
            .then(() => patch(i, (r) => ({ ...r, status: "done", marks: { ...r.marks, end: Date.now() } })))
            .catch((e) =>
              patch(i, (r) => ({
                ...r,
                status: "error",
                error: e.name === "AbortError" ? "Stopped" : e.message,
                marks: { ...r.marks, end: Date.now(), error: true },
              })),
            ),
        ),
      ),
    );
  };
  // Reordering (drag, or the arrows for the keyboard) moves the request and, after a run, its
  // result and timeline row with it. Not while running: the streams update their cards by index.
  const [dragOver, setDragOver] = useState(null);
  const drag = useRef(null);
  const endDrag = () => {
    drag.current = null;
    setDragOver(null);
  };
  const grid = useRef(null);
  const refocus = useRef(null); // after an arrow move, focus follows the card to its new place
  const move = (from, to, arrow) => {
    if (running || from === to) return;
    setEntries(moveItem(entries, from, to));
    setRuns(runs.length === entries.length ? moveItem(runs, from, to) : []);
    refocus.current = arrow ? { index: to, arrow } : null;
  };
  useEffect(() => {
    const want = refocus.current;
    if (!want) return;
    refocus.current = null;
    const buttons = grid.current?.children[want.index]?.querySelectorAll("[data-move]") || [];
    const [up, down] = buttons;
    const target = want.arrow === "up" ? (up?.disabled ? down : up) : down?.disabled ? up : down;
    target?.focus();
  });
  const cards = runs.length ? runs : entries.map((model) => ({ model, status: "idle", marks: {} }));
  const now = Date.now();
  return html`<div class="loadtest">
    <div class="loadtest-left">
      <div class="row-actions">
        ${running
          ? html`<button type="button" class="btn danger" onClick=${() => ctrls.current.forEach((c) => c.abort())}>Stop</button>`
          : html`<button type="button" class="btn primary" disabled=${!entries.length} onClick=${go}>Go</button>`}
        <button type="button" class="btn" disabled=${running || !entries.length} onClick=${() => { setEntries([]); setRuns([]); }}>Clear (${entries.length})</button>
      </div>
      <p class="small muted">Click a model to add a request; add one several times to test parallel requests.</p>
      ${groups.map(
        (g) => html`<div><h4>${g.label}</h4>
          <ul class="pick-list">
            ${g.items.filter((o) => !o.label.startsWith("↳")).map(
              (o) => html`<li><button type="button" class="btn small ghost" disabled=${running} onClick=${() => { setEntries([...entries, o.value]); setRuns([]); }}>+ ${o.label}</button></li>`,
            )}
          </ul></div>`,
      )}
      <label>Prompt <textarea rows="3" value=${prompt} onInput=${(e) => setPrompt(e.target.value)}></textarea></label>
      <label>Max tokens <input type="number" min="1" value=${maxTokens} onChange=${(e) => setMaxTokens(Number(e.target.value) || 256)} /></label>
      <button type="button" class="btn small" onClick=${() => { setPrompt(DEFAULT_PROMPT); setMaxTokens(256); }}>Reset defaults</button>
    </div>
    <div class="loadtest-right">
      <section class="card">
        <header class="card-head"><h3 class="card-title">Timeline</h3>
          <div class="card-actions"><button type="button" class="btn small" aria-expanded=${collapsed ? "false" : "true"} onClick=${() => setCollapsed(!collapsed)}>${collapsed ? "Show" : "Hide"}</button></div>
        </header>
        ${!collapsed && html`<div class="card-body"><${Timeline} runs=${runs.length ? runs : entries.map((model) => ({ model, marks: {} }))} now=${now} /></div>`}
      </section>
      <div class="result-grid" ref=${grid} aria-label="Requests (drag a card, or use its arrows, to reorder)" role="list">
        ${cards.map(
          (r, i) => html`<article
            class=${`card result${dragOver === i ? " drop-target" : ""}${drag.current === i ? " dragging" : ""}`}
            role="listitem"
            data-status=${r.status}
            draggable=${running ? "false" : "true"}
            onDragStart=${(e) => {
              drag.current = i;
              e.dataTransfer.effectAllowed = "move";
              e.dataTransfer.setData("text/plain", String(i));
            }}
            onDragOver=${(e) => {
              if (drag.current == null) return;
              e.preventDefault();
              e.dataTransfer.dropEffect = "move";
              if (dragOver !== i) setDragOver(i);
            }}
            onDrop=${(e) => {
              e.preventDefault();
              if (drag.current != null) move(drag.current, i);
              endDrag();
            }}
            onDragEnd=${endDrag}
          >
            <header class="card-head"><h4 class="card-title">${i + 1}. ${r.model}</h4>
              <span class=${`tag status-${r.status}`}>${r.status}</span>
              ${r.marks.start && html`<span class="small num">${formatWait((r.marks.end ?? now) - r.marks.start)}</span>`}
              ${!running &&
              html`<span class="card-actions">
                <button type="button" class="btn tiny" data-move="up" aria-label=${`Move ${i + 1}. ${r.model} up`} disabled=${i === 0} onClick=${() => move(i, i - 1, "up")}>↑</button>
                <button type="button" class="btn tiny" data-move="down" aria-label=${`Move ${i + 1}. ${r.model} down`} disabled=${i === cards.length - 1} onClick=${() => move(i, i + 1, "down")}>↓</button>
                <button type="button" class="btn tiny" aria-label=${`Remove ${r.model}`} onClick=${() => { setEntries(entries.filter((_, j) => j !== i)); setRuns([]); }}>✕</button>
              </span>`}
            </header>
            <div class="card-body"><pre class="wrap small">${r.error || r.content}</pre></div>
          </article>`,
        )}
      </div>
    </div>
  </div>`;
}
