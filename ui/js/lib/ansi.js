// ANSI SGR → styled segments → escaped HTML. Handles bold/italic/underline/strike, 8/16 colours,
// 256-colour and 24-bit foreground and background; every other escape sequence is dropped.

const BASE_DARK = [
  "#3f3f46", "#f87171", "#4ade80", "#facc15", "#60a5fa", "#e879f9", "#22d3ee", "#e4e4e7",
  "#71717a", "#fca5a5", "#86efac", "#fde047", "#93c5fd", "#f0abfc", "#67e8f9", "#fafafa",
];
const BASE_LIGHT = [
  "#18181b", "#b91c1c", "#15803d", "#a16207", "#1d4ed8", "#a21caf", "#0e7490", "#52525b",
  "#3f3f46", "#dc2626", "#16a34a", "#ca8a04", "#2563eb", "#c026d3", "#0891b2", "#27272a",
];

/** Colour of a 256-colour index, using the theme's 16 base colours for 0–15. */
export function color256(i, dark = true) {
  const base = dark ? BASE_DARK : BASE_LIGHT;
  if (i < 16) return base[i];
  if (i < 232) {
    const v = i - 16;
    const steps = [0, 95, 135, 175, 215, 255];
    const r = steps[Math.floor(v / 36)];
    const g = steps[Math.floor(v / 6) % 6];
    const b = steps[v % 6];
    return `rgb(${r},${g},${b})`;
  }
  const l = 8 + (i - 232) * 10;
  return `rgb(${l},${l},${l})`;
}

const EMPTY = Object.freeze({});

function applySgr(style, params, dark) {
  const s = { ...style };
  const codes = params.length ? params : [0];
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) {
      for (const k of Object.keys(s)) delete s[k];
    } else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 9) s.strike = true;
    else if (c === 22) {
      delete s.bold;
      delete s.dim;
    } else if (c === 23) delete s.italic;
    else if (c === 24) delete s.underline;
    else if (c === 29) delete s.strike;
    else if (c >= 30 && c <= 37) s.fg = color256(c - 30, dark);
    else if (c >= 90 && c <= 97) s.fg = color256(c - 90 + 8, dark);
    else if (c >= 40 && c <= 47) s.bg = color256(c - 40, dark);
    else if (c >= 100 && c <= 107) s.bg = color256(c - 100 + 8, dark);
    else if (c === 39) delete s.fg;
    else if (c === 49) delete s.bg;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? "fg" : "bg";
      if (codes[i + 1] === 5 && codes[i + 2] != null) {
        s[key] = color256(codes[i + 2] & 255, dark);
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] != null) {
        s[key] = `rgb(${codes[i + 2] & 255},${codes[i + 3] & 255},${codes[i + 4] & 255})`;
        i += 4;
      }
    }
  }
  return s;
}

// CSI sequences (ESC [ … final byte), OSC (ESC ] … BEL/ST), and lone two-byte escapes.
// biome-ignore lint: control characters are the point here.
const ESCAPE_RE = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** Split text into `{text, style}` segments; only SGR (`ESC[…m`) changes the style. */
export function parseAnsi(text, dark = true) {
  const out = [];
  let style = EMPTY;
  let last = 0;
  ESCAPE_RE.lastIndex = 0;
  for (let m = ESCAPE_RE.exec(text); m; m = ESCAPE_RE.exec(text)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index), style });
    last = ESCAPE_RE.lastIndex;
    if (m[2] === "m") {
      const params = m[1] === "" ? [] : m[1].split(";").map((p) => Number.parseInt(p || "0", 10));
      style = Object.freeze(applySgr(style, params, dark));
    }
  }
  if (last < text.length) out.push({ text: text.slice(last), style });
  return out;
}

/** Strip every escape sequence (for filtering and copying). */
export function stripAnsi(text) {
  return text.replace(ESCAPE_RE, "");
}

export function escapeHtml(s) {
  return String(s)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function styleCss(st) {
  const parts = [];
  if (st.fg) parts.push(`color:${st.fg}`);
  if (st.bg) parts.push(`background-color:${st.bg}`);
  if (st.bold) parts.push("font-weight:bold");
  if (st.dim) parts.push("opacity:.7");
  if (st.italic) parts.push("font-style:italic");
  const deco = [st.underline && "underline", st.strike && "line-through"].filter(Boolean);
  if (deco.length) parts.push(`text-decoration:${deco.join(" ")}`);
  return parts.join(";");
}

/** ANSI text → HTML where every piece of text is escaped and styles are inline spans. */
export function ansiToHtml(text, dark = true) {
  let html = "";
  for (const seg of parseAnsi(text, dark)) {
    const css = styleCss(seg.style);
    const body = escapeHtml(seg.text);
    html += css ? `<span style="${css}">${body}</span>` : body;
  }
  return html;
}

/**
 * Keep only lines matching `pattern` (case-insensitive regex, matched against text without
 * escapes). An invalid pattern filters nothing, as llama-swap's log panel does.
 */
export function filterLines(text, pattern) {
  if (!pattern) return text;
  let re;
  try {
    re = new RegExp(pattern, "i");
  } catch {
    return text;
  }
  return text
    .split("\n")
    .filter((line) => re.test(stripAnsi(line)))
    .join("\n");
}

/** Append to a log buffer and keep only its last `cap` characters, cut at a line start. */
export function appendCapped(buffer, text, cap = 100 * 1024) {
  const all = buffer + text;
  if (all.length <= cap) return all;
  const cut = all.slice(all.length - cap);
  const nl = cut.indexOf("\n");
  return nl >= 0 && nl < cut.length - 1 ? cut.slice(nl + 1) : cut;
}
