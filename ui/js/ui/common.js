// Small shared components: cards, buttons, tabs, switches, dialogs, status dots, error notes.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { mergeOrder, moveItem } from "../lib/order.js";
import { load, save } from "../lib/storage.js";

export { html };

/** useState persisted in localStorage under `key`. */
export function usePersisted(key, fallback) {
  const [value, setValue] = useState(() => load(key, fallback));
  const set = (v) =>
    setValue((old) => {
      const next = typeof v === "function" ? v(old) : v;
      save(key, next);
      return next;
    });
  return [value, set];
}

export function Card({ title, actions, children, class: cls = "", id, headingLevel = 2 }) {
  const Tag = `h${headingLevel}`;
  return html`<section class=${`card ${cls}`} id=${id} aria-label=${typeof title === "string" ? title : undefined}>
    ${(title || actions) &&
    html`<header class="card-head">
      ${title && html`<${Tag} class="card-title">${title}</${Tag}>`}
      <div class="card-actions">${actions}</div>
    </header>`}
    ${[].concat(children).some((c) => c != null && c !== false && c !== "") && html`<div class="card-body">${children}</div>`}
  </section>`;
}

export function Spinner({ label = "Working" }) {
  return html`<span class="spinner" role="status" aria-label=${label}></span>`;
}

export function StatusDot({ state, label }) {
  const cls =
    state === "ready" || state === "connected"
      ? "ok"
      : state === "starting" || state === "stopping" || state === "connecting"
        ? "warn"
        : state === "disconnected" || state === "failed"
          ? "bad"
          : "off";
  return html`<span class=${`dot dot-${cls}`} title=${label || state} aria-label=${label || state} role="img"></span>`;
}

export function Tabs({ tabs, value, onChange, label }) {
  const onKey = (e) => {
    const i = tabs.findIndex((t) => t.id === value);
    if (e.key === "ArrowRight") onChange(tabs[(i + 1) % tabs.length].id);
    if (e.key === "ArrowLeft") onChange(tabs[(i - 1 + tabs.length) % tabs.length].id);
  };
  return html`<div class="tabs" role="tablist" aria-label=${label} onKeyDown=${onKey}>
    ${tabs.map(
      (t) => html`<button
        role="tab"
        type="button"
        id=${`tab-${t.id}`}
        aria-selected=${t.id === value ? "true" : "false"}
        tabindex=${t.id === value ? 0 : -1}
        class=${t.id === value ? "tab active" : "tab"}
        onClick=${() => onChange(t.id)}
      >
        ${t.label}
      </button>`,
    )}
  </div>`;
}

export function Switch({ checked, onChange, label, id }) {
  return html`<label class="switch">
    <input type="checkbox" role="switch" id=${id} checked=${checked} onChange=${(e) => onChange(e.target.checked)} />
    <span class="switch-track" aria-hidden="true"></span>
    <span>${label}</span>
  </label>`;
}

export function Segmented({ options, value, onChange, label }) {
  return html`<div class="segmented" role="radiogroup" aria-label=${label}>
    ${options.map(
      (o) => html`<button
        type="button"
        role="radio"
        aria-checked=${String(o.value) === String(value) ? "true" : "false"}
        class=${String(o.value) === String(value) ? "seg active" : "seg"}
        onClick=${() => onChange(o.value)}
      >
        ${o.label}
      </button>`,
    )}
  </div>`;
}

/** Modal dialog using <dialog>: focus moves in, Escape closes, focus returns. */
export function Dialog({ title, onClose, children, wide = false }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    const prev = document.activeElement;
    if (d && !d.open) d.showModal();
    return () => prev?.focus?.();
  }, []);
  return html`<dialog
    ref=${ref}
    class=${wide ? "dialog wide" : "dialog"}
    aria-label=${title}
    onClose=${onClose}
    onCancel=${(e) => {
      e.preventDefault();
      onClose();
    }}
  >
    <header class="dialog-head">
      <h2>${title}</h2>
      <button type="button" class="btn ghost" aria-label="Close" onClick=${onClose}>✕</button>
    </header>
    <div class="dialog-body">${children}</div>
  </dialog>`;
}

export function ErrorNote({ error, children }) {
  if (!error && !children) return null;
  return html`<p class="note error" role="alert">${children || String(error?.message || error)}</p>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}

/** Copy text, falling back to selecting it for plain-http pages where the clipboard is refused. */
export async function copyText(text, fallbackEl) {
  try {
    await navigator.clipboard.writeText(text);
    return "Copied";
  } catch {
    if (fallbackEl) {
      fallbackEl.focus();
      fallbackEl.select?.();
    }
    return "Press Ctrl+C to copy";
  }
}

export function CopyButton({ text, label = "Copy" }) {
  const [said, setSaid] = useState("");
  return html`<button
    type="button"
    class="btn small"
    onClick=${async () => {
      setSaid(await copyText(typeof text === "function" ? text() : text));
      setTimeout(() => setSaid(""), 1500);
    }}
  >
    ${said || label}
  </button>`;
}

/** Checkbox list of columns with up/down reordering (keyboard friendly, persisted by caller). */
export function ColumnChooser({ columns, visible, order, onChange, label = "Columns" }) {
  const [open, setOpen] = useState(false);
  const ids = mergeOrder(order, columns.map((c) => c.id));
  const byId = Object.fromEntries(columns.map((c) => [c.id, c]));
  const move = (i, d) => onChange(visible, moveItem(ids, i, i + d));
  return html`<div class="popover-wrap">
    <button type="button" class="btn small" aria-expanded=${open ? "true" : "false"} onClick=${() => setOpen(!open)}>
      ${label}
    </button>
    ${open &&
    html`<div class="popover" role="group" aria-label=${label}>
      ${ids.map(
        (id, i) => html`<div class="col-row">
          <label>
            <input
              type="checkbox"
              checked=${visible.includes(id)}
              onChange=${(e) =>
                onChange(e.target.checked ? [...visible, id] : visible.filter((v) => v !== id), ids)}
            />
            ${byId[id].label}
          </label>
          <span>
            <button type="button" class="btn tiny" aria-label=${`Move ${byId[id].label} up`} onClick=${() => move(i, -1)}>↑</button>
            <button type="button" class="btn tiny" aria-label=${`Move ${byId[id].label} down`} onClick=${() => move(i, 1)}>↓</button>
          </span>
        </div>`,
      )}
    </div>`}
  </div>`;
}

/** A re-render every animation frame while mounted (for ticking elapsed times). */
export function useFrameTick(active = true) {
  const [, setT] = useState(0);
  useEffect(() => {
    if (!active) return;
    let id = requestAnimationFrame(function tick() {
      setT((t) => t + 1);
      id = requestAnimationFrame(tick);
    });
    return () => cancelAnimationFrame(id);
  }, [active]);
}

/** A re-render every `ms` while mounted. */
export function useInterval(ms) {
  const [, setT] = useState(0);
  useEffect(() => {
    const id = setInterval(() => setT((t) => t + 1), ms);
    return () => clearInterval(id);
  }, [ms]);
}
