// A log viewer: ANSI colours, regex filter, wrap, font size, sticky auto-scroll.

import { html, useEffect, useLayoutEffect, useMemo, useRef } from "../../vendor/htm-preact-standalone.mjs";
import { ansiToHtml, filterLines } from "../lib/ansi.js";
import { ErrorNote, usePersisted } from "./common.js";

const FONT_SIZES = ["xxs", "xs", "small", "normal"];

export function isDarkMode() {
  return document.documentElement.dataset.mode === "dark";
}

/** `id` scopes the persisted settings (logPanel-<id>-fontSize / wrapText / showFilter). */
export function LogPanel({ id, title, text, error }) {
  const [fontSize, setFontSize] = usePersisted(`logPanel-${id}-fontSize`, "xs");
  const [wrap, setWrap] = usePersisted(`logPanel-${id}-wrapText`, false);
  const [showFilter, setShowFilter] = usePersisted(`logPanel-${id}-showFilter`, false);
  const [pattern, setPattern] = usePersisted(`logPanel-${id}-filter`, "");
  const box = useRef(null);
  const stick = useRef(true);
  const htmlText = useMemo(
    () => ansiToHtml(filterLines(text || "", showFilter ? pattern : ""), isDarkMode()),
    [text, pattern, showFilter],
  );
  const onScroll = () => {
    const el = box.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight <= 40;
  };
  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [htmlText, wrap, fontSize]);
  useEffect(() => {
    stick.current = true;
  }, [id]);
  const nextFont = () => setFontSize(FONT_SIZES[(FONT_SIZES.indexOf(fontSize) + 1) % FONT_SIZES.length]);
  const filterId = `log-filter-${id}`;
  return html`<section class="log-panel" aria-label=${`${title} log`}>
    <header class="log-head">
      <h3>${title}</h3>
      <div class="card-actions">
        <button type="button" class="btn small" onClick=${nextFont} title="Font size" aria-label=${`Font size: ${fontSize}`}>
          A ${fontSize}
        </button>
        <button type="button" class="btn small" aria-pressed=${wrap ? "true" : "false"} onClick=${() => setWrap(!wrap)}>
          Wrap
        </button>
        <button
          type="button"
          class="btn small"
          aria-pressed=${showFilter ? "true" : "false"}
          onClick=${() => setShowFilter(!showFilter)}
        >
          Filter
        </button>
      </div>
    </header>
    ${showFilter &&
    html`<div class="log-filter">
      <label for=${filterId} class="sr-only">Regex filter for ${title}</label>
      <input
        id=${filterId}
        type="search"
        placeholder="regex filter (case-insensitive)"
        value=${pattern}
        onInput=${(e) => setPattern(e.target.value)}
      />
      ${pattern && html`<button type="button" class="btn small" onClick=${() => setPattern("")}>Clear</button>`}
    </div>`}
    <${ErrorNote} error=${error} />
    <pre
      ref=${box}
      class=${`log-text font-${fontSize} ${wrap ? "wrap" : ""}`}
      tabindex="0"
      role="log"
      aria-live="off"
      onScroll=${onScroll}
      dangerouslySetInnerHTML=${{ __html: htmlText }}
    ></pre>
  </section>`;
}
