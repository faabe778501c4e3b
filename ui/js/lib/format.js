// Pure formatting helpers: no DOM, no globals, so node's test runner can check them.

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

/** Bytes as B/KB/MB/… with one decimal above bytes ("1.5 KB"). */
export function formatBytes(n) {
  if (n == null || !Number.isFinite(n) || n < 0) return "-";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${BYTE_UNITS[i]}`;
}

/** Locale-grouped integer ("12,345"); "-" for missing values. */
export function formatNumber(n) {
  if (n == null || !Number.isFinite(n)) return "-";
  return Math.round(n).toLocaleString("en-US");
}

/** Token count column: "-" for 0 or the server's "unknown" sentinel (-1). */
export function formatTokens(n) {
  if (n == null || n <= 0) return "-";
  return formatNumber(n);
}

/** Tokens per second with 2 decimals; the -1 sentinel (and any negative) reads "unknown". */
export function formatSpeed(v) {
  if (v == null) return "-";
  if (v < 0) return "unknown";
  if (v === 0) return "-";
  return `${v.toFixed(2)} t/s`;
}

/** Milliseconds as seconds with two decimals ("1.23s"). */
export function formatSeconds(ms) {
  if (ms == null || !Number.isFinite(ms)) return "-";
  return `${(ms / 1000).toFixed(2)}s`;
}

/** Wait/elapsed time, short: "850ms", "12.3s", "4m 05s", "2h 03m". */
export function formatWait(ms) {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local "YYYY-MM-DD HH:mm:ss". */
export function absoluteTime(date) {
  const d = date instanceof Date ? date : new Date(date);
  if (Number.isNaN(d.getTime())) return "-";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Local "HH:mm:ss.mmm" for event timestamps. */
export function clockTime(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "-";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(
    d.getMilliseconds(),
  ).padStart(3, "0")}`;
}

/** "now", "12s ago", "5m ago", "3h ago"; absolute once older than 24 h (as llama-swap does). */
export function relativeTime(when, now = Date.now()) {
  const t = when instanceof Date ? when.getTime() : new Date(when).getTime();
  if (Number.isNaN(t)) return "-";
  const s = Math.floor((now - t) / 1000);
  if (s < 1) return "now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return absoluteTime(t);
}

/** Keep the start and the end of a long value: "abcdef…uvwxyz". */
export function middleEllipsis(text, max = 32) {
  const s = String(text ?? "");
  if (s.length <= max) return s;
  const keep = max - 1;
  const head = Math.ceil(keep / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (keep - head))}`;
}

/** Context length as "8K", "128K", "1M". */
export function formatContext(n) {
  if (!n || n <= 0) return "";
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)}M`;
  if (n >= 1000000) return `${Math.round(n / 1000000)}M`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}K`;
  if (n >= 1000) return `${Math.round(n / 1000)}K`;
  return String(n);
}

/** Draft acceptance "p% (accepted/drafted)", or "-" when the server did not know. */
export function formatDraft(accepted, drafted) {
  if (!drafted || drafted <= 0 || accepted == null || accepted < 0) return "-";
  return `${Math.round((accepted / drafted) * 100)}% (${accepted}/${drafted})`;
}

/** Natural ordering so "model-2" sorts before "model-10". */
export function naturalCompare(a, b) {
  return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
}

/** Trim, strip newlines, cap at 64 chars, default "llamaswap-es" (the inline title editor's rule). */
export function cleanTitle(text, fallback = "llamaswap-es") {
  const s = String(text ?? "")
    .replace(/[\r\n]+/g, " ")
    .trim()
    .slice(0, 64);
  return s || fallback;
}
