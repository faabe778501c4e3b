// Model output → sanitised HTML. marked parses, highlight.js colours code, DOMPurify removes
// anything executable, KaTeX typesets math. Model output is never inserted as raw HTML anywhere
// else.
//
// Math: marked's math extensions (lib/math.js) leave an empty numbered slot for each formula;
// DOMPurify sanitises that HTML; then each slot is replaced by KaTeX's HTML for its formula.
// KaTeX's output is not passed through DOMPurify (which would strip its MathML): it is safe by
// KaTeX's own contract, since `trust` is off (no \href, \includegraphics, \htmlClass…) and every
// character of the source is escaped. Slots are matched only as whole tags, which cannot occur
// inside a sanitised attribute (DOMPurify escapes the quotes there). KaTeX (≈600 kB) is loaded
// the first time a message holds math; until then a formula shows as its source.

import DOMPurify from "../../vendor/purify.es.mjs";
import hljs from "../../vendor/highlight.min.mjs";
import { html, useEffect, useMemo, useState } from "../../vendor/htm-preact-standalone.mjs";
import { Marked } from "../../vendor/marked.esm.js";
import { escapeHtml } from "../lib/ansi.js";
import { mathExtensions } from "../lib/math.js";

let formulas = []; // the formulas of the parse under way (marked parses synchronously)

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: mathExtensions((tex, display) => {
    formulas.push({ tex, display });
    return `<span data-math-slot="${formulas.length - 1}"></span>`; // one attribute: DOMPurify may reorder several
  }),
  renderer: {
    code({ text, lang }) {
      const language = (lang || "").split(/\s/)[0];
      let body;
      try {
        body =
          language && hljs.getLanguage(language)
            ? hljs.highlight(text, { language }).value
            : escapeHtml(text);
      } catch {
        body = escapeHtml(text);
      }
      return `<div class="code-block"><div class="code-head"><span>${escapeHtml(
        language || "text",
      )}</span><button type="button" class="btn tiny copy-code">Copy</button></div><pre><code class="hljs">${body}</code></pre></div>`;
    },
  },
});

const SLOT = /<span data-math-slot="(\d+)"><\/span>/g;
const KATEX_OPTIONS = { throwOnError: false, trust: false, strict: "ignore", maxExpand: 1000, maxSize: 50 };
let katex = null;
let katexLoading = null;

/** Load KaTeX and its stylesheet once; resolves when formulas can be typeset. */
export function loadMath() {
  if (!katexLoading) {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = new URL("../../vendor/katex/katex.min.css", import.meta.url).href;
    document.head.append(css);
    katexLoading = import("../../vendor/katex/katex.mjs").then((mod) => {
      katex = mod.default;
    });
  }
  return katexLoading;
}

function typeset({ tex, display }) {
  if (!katex) {
    const source = display ? `$$${tex}$$` : `$${tex}$`;
    return `<code class="math-source">${escapeHtml(source)}</code>`;
  }
  return katex.renderToString(tex, { ...KATEX_OPTIONS, displayMode: display });
}

/**
 * Markdown to `{html, needsMath}`: sanitised HTML (no scripts, no event handlers, no
 * javascript: links) with its formulas typeset, and whether some of them still wait for KaTeX.
 */
export function renderMarkdown(text) {
  formulas = [];
  const raw = marked.parse(String(text ?? ""));
  const found = formulas;
  formulas = [];
  const clean = DOMPurify.sanitize(raw, { USE_PROFILES: { html: true }, ADD_ATTR: ["target"] });
  if (!found.length) return { html: clean, needsMath: false };
  const html = clean.replace(SLOT, (_, i) => (found[Number(i)] ? typeset(found[Number(i)]) : ""));
  return { html, needsMath: !katex };
}

/** The rendered HTML of `text` (once per change), re-rendered when KaTeX arrives. */
export function useMarkdown(text, enabled = true) {
  const [mathReady, setMathReady] = useState(Boolean(katex));
  const out = useMemo(
    () => (enabled ? renderMarkdown(text) : { html: "", needsMath: false }),
    [text, enabled, mathReady],
  );
  useEffect(() => {
    if (!out.needsMath) return undefined;
    let live = true;
    loadMath().then(
      () => live && setMathReady(true),
      () => {}, // KaTeX failed to load: the formulas stay as source
    );
    return () => {
      live = false;
    };
  }, [out.needsMath]);
  return out.html;
}

/** A block of rendered markdown (copy buttons on its code blocks work). */
export function Markdown({ text }) {
  const rendered = useMarkdown(text);
  return html`<div class="markdown" onClick=${onMarkdownClick} dangerouslySetInnerHTML=${{ __html: rendered }}></div>`;
}

/** Delegated click handler for the per-block copy buttons. */
export function onMarkdownClick(e) {
  const btn = e.target.closest?.(".copy-code");
  if (!btn) return;
  const code = btn.closest(".code-block")?.querySelector("code")?.textContent || "";
  navigator.clipboard?.writeText(code).then(
    () => {
      btn.textContent = "Copied";
      setTimeout(() => {
        btn.textContent = "Copy";
      }, 1500);
    },
    () => {
      btn.textContent = "Select & Ctrl+C";
    },
  );
}
