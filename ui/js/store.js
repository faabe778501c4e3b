// The global state and the one /api/events connection that keeps every page live.

import { useEffect, useState } from "../vendor/htm-preact-standalone.mjs";
import { getJSON } from "./api.js";
import { appendCapped } from "./lib/ansi.js";
import { naturalCompare } from "./lib/format.js";
import { mergeEvents } from "./lib/event-log.js";
import { applyInflight, backoffDelay, decodeEnvelope } from "./lib/sse.js";
import { load } from "./lib/storage.js";

const LOG_CAP = 100 * 1024;

let state = {
  connection: "connecting",
  models: [],
  logs: { proxy: "", upstream: "" },
  inflight: [],
  uiConfig: { activity: { session_id: ["X-Session-ID", "X-Litellm-Session-Id"] } },
  profiles: { active: null, profiles: [] },
  profileSwitching: false,
  activityRev: 0,
  liveEvents: [],
  version: null,
  perfEnabled: false,
  title: load("app-title", "llamaswap-es"),
  playgroundBusy: false,
};
const listeners = new Set();

export function getState() {
  return state;
}

export function setState(patch) {
  state = { ...state, ...(typeof patch === "function" ? patch(state) : patch) };
  for (const fn of listeners) fn(state);
}

export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Re-render when `select(state)` changes identity. */
export function useStore(select) {
  const [value, setValue] = useState(() => select(state));
  useEffect(() => {
    let last = select(state);
    setValue(() => last);
    return subscribe((s) => {
      const next = select(s);
      if (next !== last) {
        last = next;
        setValue(() => next);
      }
    });
  }, []);
  return value;
}

function sortModels(models) {
  return [...(models || [])].sort(
    (a, b) => naturalCompare(a.name || a.id, b.name || b.id) || naturalCompare(a.id, b.id),
  );
}

const handlers = {
  modelStatus: (p) => setState({ models: sortModels(p) }),
  logData: (p) => {
    if (!p || (p.source !== "proxy" && p.source !== "upstream")) return;
    setState((s) => ({
      logs: { ...s.logs, [p.source]: appendCapped(s.logs[p.source], p.data || "", LOG_CAP) },
    }));
  },
  activity: () => setState((s) => ({ activityRev: s.activityRev + 1 })),
  inflight: (p) => setState((s) => ({ inflight: applyInflight(s.inflight, p) })),
  uiConfig: (p) => p && setState({ uiConfig: p }),
  profileChanged: (p) => setState((s) => ({ profiles: { ...s.profiles, active: p?.active ?? null } })),
  logEvent: (p) => p && setState((s) => ({ liveEvents: mergeEvents(s.liveEvents, [p], 1000) })),
};

export function handleMessage(raw) {
  const msg = decodeEnvelope(raw);
  if (!msg) return;
  handlers[msg.type]?.(msg.payload);
}

export async function refreshProfiles() {
  try {
    const p = await getJSON("/api/profiles");
    setState({ profiles: { active: p.active ?? null, profiles: p.profiles || [] } });
  } catch {
    setState({ profiles: { active: null, profiles: [] } });
  }
}

async function refreshMeta() {
  refreshProfiles();
  getJSON("/api/version")
    .then((v) => setState({ version: v }))
    .catch(() => setState({ version: null }));
  fetch("/api/performance?after=2100-01-01T00:00:00Z")
    .then((r) => setState({ perfEnabled: r.ok }))
    .catch(() => setState({ perfEnabled: false }));
}

let source = null;
let attempt = 0;
let retryTimer = null;

/** Open (or reopen) the event stream; on every connect the live state is rebuilt from scratch. */
export function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  setState({ connection: "connecting" });
  const es = new EventSource("/api/events");
  source = es;
  es.onopen = () => {
    attempt = 0;
    setState((s) => ({
      connection: "connected",
      logs: { proxy: "", upstream: "" },
      inflight: [],
      models: [],
      activityRev: s.activityRev + 1,
    }));
    refreshMeta();
  };
  es.onmessage = (e) => handleMessage(e.data);
  es.onerror = () => {
    if (source !== es) return;
    es.close();
    setState({ connection: "disconnected" });
    retryTimer = setTimeout(connect, backoffDelay(attempt++));
  };
}

/**
 * The /v1/models list, refetched when the model set changes (connect, reload, profile). One
 * fetch per change, shared by every caller: the Playground's pickers and the Models page.
 */
let listCache = { key: null, promise: null };

export function useModelList() {
  const models = useStore((s) => s.models);
  const [list, setList] = useState([]);
  useEffect(() => {
    if (listCache.key !== models) {
      listCache = {
        key: models,
        promise: getJSON("/v1/models")
          .then((d) => d.data || [])
          .catch(() => []),
      };
    }
    let live = true;
    listCache.promise.then((l) => live && setList(l));
    return () => {
      live = false;
    };
  }, [models]);
  return list;
}
