// HTTP helpers. Every call names its endpoint in the error it throws, so a failing panel can say
// what failed; a 404 on one of our newer endpoints is a distinct, recognisable error.

export class ApiError extends Error {
  constructor(url, status, message) {
    const text = String(message || "");
    const prefix = status && !text.startsWith(String(status)) ? `${status} ` : "";
    super(`${url}: ${prefix}${text}`);
    this.url = url;
    this.status = status;
    this.detail = message;
  }
}

const ERROR_TEXT_MAX = 500; // an HTML error page must not flood the note that shows it

/**
 * The message of a failed response: OpenAI's `{error: {message}}`, `{error: "…"}` or
 * `{message}`, else the body as text (cut to 500 characters), else the status text.
 */
export async function errorText(res) {
  const text = await res.text().catch(() => "");
  let msg = text;
  try {
    const obj = JSON.parse(text);
    const err = obj?.error;
    msg = (typeof err === "string" ? err : err?.message) || obj?.message || text;
  } catch {
    /* not JSON: the text itself */
  }
  return String(msg || res.statusText || "").slice(0, ERROR_TEXT_MAX);
}

/** A 404 from the router itself ("404 page not found"): the endpoint does not exist here. */
export function isMissingRoute(err) {
  return err?.status === 404 && /page not found/i.test(err.detail || "");
}

/** fetch + JSON; throws ApiError on network failure or a non-2xx answer. */
export async function getJSON(url, opts = {}) {
  let res;
  try {
    res = await fetch(url, { headers: { Accept: "application/json" }, ...opts });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError(url, 0, err?.message || "network error");
  }
  if (!res.ok) throw new ApiError(url, res.status, await errorText(res));
  const ct = res.headers.get("content-type") || "";
  return ct.includes("json") ? res.json() : res.text();
}

export function postJSON(url, body, opts = {}) {
  return getJSON(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: body == null ? undefined : JSON.stringify(body),
    ...opts,
  });
}

export function putJSON(url, body) {
  return getJSON(url, {
    method: "PUT",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
}

/** Build a query string from an object; arrays repeat the key; empty values are skipped. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v == null || v === "") continue;
    if (Array.isArray(v)) for (const x of v) q.append(k, x);
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = (id) => String(id).split("/").map(encodeURIComponent).join("/");

/** One id per page load, sent as X-Session-ID on every playground request (lspg-xxxxx). */
export const PLAYGROUND_SESSION = `lspg-${Math.random().toString(36).slice(2, 7).padEnd(5, "0")}`;
