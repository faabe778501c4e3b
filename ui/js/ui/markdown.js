// Model output → sanitised HTML. marked parses, highlight.js colours code, DOMPurify removes
// anything executable. Model output is never inserted as raw HTML anywhere else.

import DOMPurify from "../../vendor/purify.es.mjs";
import hljs from "../../vendor/highlight.min.mjs";
import { Marked } from "../../vendor/marked.esm.js";
import { escapeHtml } from "../lib/ansi.js";

const marked = new Marked({
  gfm: true,
  breaks: false,
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

/** Markdown to sanitised HTML (no scripts, no event handlers, no javascript: links). */
export function renderMarkdown(text) {
  const raw = marked.parse(String(text ?? ""));
  return DOMPurify.sanitize(raw, { USE_PROFILES: { html: true }, ADD_ATTR: ["target"] });
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
