// localStorage with JSON values and defaults. Keys are llama-swap's where the spec lists them,
// so a user's settings carry over. Storage failures (private mode, quota) never break the page.

const mem = new Map();

function backend() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** Read key as JSON; raw non-JSON strings are returned as-is; missing → fallback. */
export function load(key, fallback) {
  const ls = backend();
  let raw = null;
  try {
    raw = ls ? ls.getItem(key) : (mem.get(key) ?? null);
  } catch {
    raw = mem.get(key) ?? null;
  }
  if (raw == null) return fallback;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

export function save(key, value) {
  const raw = JSON.stringify(value);
  mem.set(key, raw);
  try {
    backend()?.setItem(key, raw);
  } catch {
    /* storage full or disabled: keep the in-memory copy */
  }
}

export function remove(key) {
  mem.delete(key);
  try {
    backend()?.removeItem(key);
  } catch {
    /* ignore */
  }
}
