// Logs: proxy, upstream, or both side by side in a resizable split.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { useStore } from "../store.js";
import { Tabs, usePersisted } from "../ui/common.js";
import { LogPanel } from "../ui/log-panel.js";

function useNarrow() {
  const q = "(max-width: 767px)";
  const [narrow, setNarrow] = useState(() => matchMedia(q).matches);
  useEffect(() => {
    const mql = matchMedia(q);
    const fn = () => setNarrow(mql.matches);
    mql.addEventListener("change", fn);
    return () => mql.removeEventListener("change", fn);
  }, []);
  return narrow;
}

function Split({ first, second }) {
  const narrow = useNarrow();
  const key = `panel-size-logviewer-panel-group${narrow ? "-vertical" : ""}`;
  const [size, setSize] = usePersisted(key, 50);
  const box = useRef(null);
  const clamp = (v) => Math.min(95, Math.max(5, v));
  const startDrag = (e) => {
    e.preventDefault();
    const rect = box.current.getBoundingClientRect();
    const move = (ev) => {
      const p = ev.touches ? ev.touches[0] : ev;
      const f = narrow ? (p.clientY - rect.top) / rect.height : (p.clientX - rect.left) / rect.width;
      setSize(clamp(Math.round(f * 1000) / 10));
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  };
  const onKey = (e) => {
    const dec = narrow ? "ArrowUp" : "ArrowLeft";
    const inc = narrow ? "ArrowDown" : "ArrowRight";
    if (e.key === dec) setSize(clamp(size - 2));
    if (e.key === inc) setSize(clamp(size + 2));
  };
  return html`<div ref=${box} class=${`split ${narrow ? "vertical" : "horizontal"}`}>
    <div class="split-pane" style=${`flex-basis:${size}%`}>${first}</div>
    <div
      class="split-handle"
      role="separator"
      tabindex="0"
      aria-orientation=${narrow ? "horizontal" : "vertical"}
      aria-valuenow=${Math.round(size)}
      aria-valuemin="5"
      aria-valuemax="95"
      aria-label="Resize log panels"
      onPointerDown=${startDrag}
      onKeyDown=${onKey}
    ></div>
    <div class="split-pane" style=${`flex-basis:${100 - size}%`}>${second}</div>
  </div>`;
}

export function LogsPage() {
  const logs = useStore((s) => s.logs);
  const [mode, setMode] = usePersisted("logviewer-view-mode", "both");
  const proxy = html`<${LogPanel} id="proxy" title="Proxy" text=${logs.proxy} />`;
  const upstream = html`<${LogPanel} id="upstream" title="Upstream" text=${logs.upstream} />`;
  return html`<div class="page page-fill">
    <${Tabs}
      label="Log view"
      tabs=${[
        { id: "both", label: "Both" },
        { id: "proxy", label: "Proxy" },
        { id: "upstream", label: "Upstream" },
      ]}
      value=${mode}
      onChange=${setMode}
    />
    <div class="logs-body" role="tabpanel" aria-labelledby=${`tab-${mode}`}>
      ${mode === "both" ? html`<${Split} first=${proxy} second=${upstream} />` : mode === "proxy" ? proxy : upstream}
    </div>
  </div>`;
}
