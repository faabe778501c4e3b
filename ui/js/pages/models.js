// Models: every model with its state and load/unload, profiles, selectors and peers.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { enc, errorText, getJSON, postJSON } from "../api.js";
import { failureOutput, failureText } from "../lib/event-log.js";
import { formatContext, formatNumber } from "../lib/format.js";
import { useModelList, useStore } from "../store.js";
import { Card, Empty, ErrorNote, Spinner, StatusDot, Switch, usePersisted } from "../ui/common.js";

const CAPABILITY_LABELS = {
  vision: "Vision",
  audio_transcriptions: "Transcription",
  audio_speech: "Speech",
  image_generation: "Image Gen",
  image_to_image: "Img→Img",
  function_calling: "Function Calling",
  reranker: "Reranker",
};

export function CapabilityTags({ model }) {
  const caps = Object.entries(model.capabilities || {}).filter(([, v]) => v);
  const ctx = formatContext(model.context_length);
  if (!caps.length && !ctx) return null;
  return html`<span class="caps">
    ${caps.map(([k]) => html`<span class="tag cap">${CAPABILITY_LABELS[k] || k}</span>`)}
    ${ctx && html`<span class="tag cap">${ctx}</span>`}
  </span>`;
}

// Pending loads live outside components so navigating away and back keeps the spinner and the
// ability to cancel.
const pendingLoads = new Map();
const loadListeners = new Set();
const notify = () => {
  for (const fn of loadListeners) fn();
};

/**
 * Load a model by asking its `/upstream/<id>/` (llama-swap's way). `retry`: its last start
 * failed, so the server is leaving it alone for a while (the start backoff); the user's click is
 * an explicit retry, so the model is unloaded first, which ends the backoff, and loaded at once.
 */
export function startLoad(id, onError, { retry = false } = {}) {
  if (pendingLoads.has(id)) return;
  const ctrl = new AbortController();
  pendingLoads.set(id, ctrl);
  notify();
  const ready = retry ? postJSON(`/api/models/unload/${enc(id)}`).catch(() => null) : Promise.resolve();
  ready
    .then(() => fetch(`/upstream/${enc(id)}/?_=${Date.now()}`, { signal: ctrl.signal }))
    .then(async (r) => {
      if (!r.ok && r.status >= 500) onError?.(`Loading ${id} failed (${r.status}): ${await errorText(r)}`);
    })
    .catch((e) => {
      if (e.name !== "AbortError") onError?.(`Loading ${id} failed: ${e.message}`);
    })
    .finally(() => {
      pendingLoads.delete(id);
      notify();
    });
}

export function cancelLoad(id) {
  pendingLoads.get(id)?.abort();
}

function usePendingLoads() {
  const [, setT] = useState(0);
  useEffect(() => {
    const fn = () => setT((t) => t + 1);
    loadListeners.add(fn);
    return () => loadListeners.delete(fn);
  }, []);
  return pendingLoads;
}

/** The per-model load/unload button (stopped → load, pending → cancel, ready → unload). */
export function LoadButton({ model, onError, small = false }) {
  const pending = usePendingLoads();
  const [unloading, setUnloading] = useState(false);
  const cls = small ? "btn small" : "btn";
  const name = model.name || model.id;
  if (model.state === "ready") {
    return html`<button
      type="button"
      class=${`${cls} danger`}
      disabled=${unloading}
      aria-label=${`Unload ${name}`}
      onClick=${async () => {
        setUnloading(true);
        try {
          await postJSON(`/api/models/unload/${enc(model.id)}`);
        } catch (e) {
          onError?.(e.message);
        } finally {
          setUnloading(false);
        }
      }}
    >
      ${unloading ? html`<${Spinner} label="Unloading" />` : "Unload"}
    </button>`;
  }
  if (pending.has(model.id)) {
    return html`<button type="button" class=${cls} aria-label=${`Cancel loading ${name}`} onClick=${() => cancelLoad(model.id)}>
      <${Spinner} label="Loading" /> Cancel
    </button>`;
  }
  if (model.state === "starting" || model.state === "stopping") {
    return html`<button type="button" class=${cls} disabled aria-label=${`${name} is ${model.state}`}><${Spinner} label=${model.state} /></button>`;
  }
  return html`<button type="button" class=${`${cls} primary`} aria-label=${`Load ${name}`} onClick=${() => startLoad(model.id, onError, { retry: model.failed === true })}>
    Load
  </button>`;
}

const NO_FAILURE = { text: "", output: "" };

/** Why a model's last start failed (`failed` in modelStatus is ours), read from the event log
 * by the model's key; llama-swap's state for it stays "stopped". `output` is the tail of the
 * model's own output recorded with the failure (shown on hover). */
function useLastFailure(id, failed) {
  const [failure, setFailure] = useState(NO_FAILURE);
  useEffect(() => {
    if (!failed) {
      setFailure(NO_FAILURE);
      return undefined;
    }
    let live = true;
    const url = `/api/log/events?key=${enc(id)}&type=ProcessStartFailed&type=ProcessExited&limit=1`;
    getJSON(url)
      .then((doc) => {
        const event = doc.events?.[0];
        if (live) setFailure({ text: failureText(event), output: failureOutput(event) });
      })
      .catch(() => live && setFailure(NO_FAILURE));
    return () => {
      live = false;
    };
  }, [id, failed]);
  return failure;
}

/** A model's GPU memory need and where it was learnt (placement by memory: measured on a run,
 * declared in the config, or estimated from its GGUF file); `detail` says how, on hover. */
function FootprintTag({ footprint, devices }) {
  if (!footprint) return null;
  const span = footprint.devices > 1 ? ` on ${footprint.devices} GPUs` : "";
  const where = devices?.length ? ` · GPU ${devices.join(",")}` : "";
  return html`<span class=${`tag footprint source-${footprint.source}`} data-testid="model-footprint" title=${footprint.detail}
    >${formatNumber(footprint.mb)} MiB${span} · ${footprint.source}${where}</span
  >`;
}

/** Each GPU's memory as placement last sampled it (`gpus` of /api/queue), refreshed whenever the
 * model status changes (a new sample or footprint republishes it). Hidden without samples. */
function GpuMemoryCard() {
  const models = useStore((s) => s.models);
  const [gpus, setGpus] = useState([]);
  useEffect(() => {
    let live = true;
    getJSON("/api/queue")
      .then((d) => live && setGpus(d.gpus || []))
      .catch(() => live && setGpus([]));
    return () => {
      live = false;
    };
  }, [models]);
  if (!gpus.length) return null;
  return html`<${Card} title="GPU memory">
    <ul class="list">
      ${gpus.map(
        (g) => html`<li class="model-row" data-testid="gpu-memory" data-gpu=${g.index}>
          <strong>GPU${g.index}</strong>
          <span class="muted small">${g.name}</span>
          <span class="spacer"></span>
          <span class="mono small" title=${`free as sampled: ${formatNumber(g.sampled_free_mb)} MiB; counting models started or stopped since: ${formatNumber(g.free_mb)} MiB`}
            >${formatNumber(g.sampled_free_mb)} of ${formatNumber(g.total_mb)} MiB free</span
          >
        </li>`,
      )}
    </ul>
  <//>`;
}

function ModelRow({ m, showCaps, onError }) {
  const isPeer = Boolean(m.peerID);
  const failure = useLastFailure(m.id, !isPeer && m.failed === true);
  return html`<li class="model-row" data-model=${m.id} data-state=${m.state || "peer"}>
    ${!isPeer && html`<${StatusDot} state=${m.state} />`}
    <a class="model-name" href=${`#/models/${enc(m.id)}`}>
      <strong>${m.name || m.id}</strong>
      ${m.name && m.name !== m.id && html`<span class="muted"> ${m.id}</span>`}
      ${m.aliases?.length ? html`<span class="muted small"> · ${m.aliases.join(", ")}</span>` : ""}
    </a>
    ${m.description && html`<span class="muted small desc">${m.description}</span>`}
    ${failure.text &&
    html`<span class="small failure" data-testid="model-failure" title=${failure.output}
      >${failure.text} · <a href=${`#/models/${enc(m.id)}`}>its log</a></span
    >`}
    ${showCaps && html`<${CapabilityTags} model=${m} />`}
    <span class="spacer"></span>
    ${!isPeer && html`<${FootprintTag} footprint=${m.footprint} devices=${m.devices} />`}
    ${!isPeer && html`<span class="state" data-testid="model-state">${m.state}</span>`}
    ${m.unlisted && html`<span class="tag">unlisted</span>`}
    ${!isPeer &&
    html`<a class="btn small ghost" href=${`/upstream/${enc(m.id)}/`} target="_blank" rel="noopener" aria-label=${`Open ${m.id} server`}>↗</a>
      <${LoadButton} model=${m} onError=${onError} small />`}
  </li>`;
}

function ProfilesCard() {
  const { active, profiles } = useStore((s) => s.profiles);
  if (!profiles?.length) return null;
  const p = profiles.find((x) => x.id === active);
  return html`<${Card} title="Profile">
    ${p
      ? html`<p><strong>${p.id}</strong> <span class="tag ok">Active</span></p>
          ${p.description && html`<p class="muted">${p.description}</p>`}
          <p class="muted small">${Object.keys(p.pins || {}).length} mappings</p>
          <ul class="pins">
            ${Object.entries(p.pins || {}).map(
              ([k, v]) => html`<li class="mono">${k} → ${v ? v : html`<span class="tag bad">disabled</span>`}</li>`,
            )}
          </ul>`
      : html`<p class="muted">No active profile</p>`}
  <//>`;
}

function SelectorsCard({ selectors }) {
  if (!selectors.length) return null;
  return html`<${Card} title="Selectors">
    <ul class="list">
      ${selectors.map((s) => {
        const meta = s.meta?.llamaswap || {};
        return html`<li class="model-row">
          <strong>${s.name || s.id}</strong>${s.name && html`<span class="muted"> ${s.id}</span>`}
          ${s.description && html`<span class="muted small desc">${s.description}</span>`}
          <span class="spacer"></span>
          ${(meta.targets || []).map((t) => html`<a class="tag" href=${`#/models/${enc(t)}`}>${t}</a>`)}
          ${meta.strategy && html`<span class="tag">${meta.strategy}</span>`}
          ${meta.spillover != null && html`<span class="tag">spillover ${meta.spillover}</span>`}
        </li>`;
      })}
    </ul>
  <//>`;
}

export function ModelsPage() {
  const models = useStore((s) => s.models);
  const [showUnlisted, setShowUnlisted] = usePersisted("models-dash-show-unlisted", false);
  const [showCaps] = usePersisted("models-dash-show-capability-tags", false);
  const [error, setError] = useState("");
  const [unloadingAll, setUnloadingAll] = useState(false);
  const errTimer = useRef(null);
  const onError = (msg) => {
    setError(msg);
    clearTimeout(errTimer.current);
    errTimer.current = setTimeout(() => setError(""), 8000);
  };
  const selectors = useModelList().filter((m) => m.meta?.llamaswap?.type === "selector");
  const local = models.filter((m) => !m.peerID);
  const peers = models.filter((m) => m.peerID);
  const unlistedCount = local.filter((m) => m.unlisted).length;
  const shown = local.filter((m) => showUnlisted || !m.unlisted);
  const ready = local.filter((m) => m.state === "ready").length;
  const [reloading, setReloading] = useState(false);
  const [notice, setNotice] = useState("");
  const reloadConfig = async () => {
    setReloading(true);
    setNotice("");
    try {
      await postJSON("/api/config/reload");
      setNotice("Configuration reloaded: only models whose settings changed restart.");
    } catch (e) {
      onError(e.message);
    } finally {
      setReloading(false);
    }
  };
  const unloadAll = async () => {
    setUnloadingAll(true);
    try {
      await postJSON("/api/models/unload");
    } catch (e) {
      onError(e.message);
    } finally {
      setUnloadingAll(false);
    }
  };
  return html`<div class="page">
    <${Card}
      title=${`Models (${shown.length} of ${local.length})`}
      actions=${html`<span class="count">${ready} ready</span>
        <button type="button" class="btn" disabled=${reloading} onClick=${reloadConfig}
          title="Read the configuration files again and apply them (as SIGHUP does)">
          ${reloading ? html`<${Spinner} label="Reloading" />` : ""} Reload config
        </button>
        <button type="button" class="btn danger" disabled=${unloadingAll || ready === 0} onClick=${unloadAll}>
          ${unloadingAll ? html`<${Spinner} label="Unloading all" />` : ""} Unload All
        </button>`}
    >
      <div aria-live="polite"><${ErrorNote}>${error}<//>${notice && !error && html`<p class="muted small" data-testid="reload-notice">${notice}</p>`}</div>
      <div class="section-head">
        <h3>Local models</h3>
        <${Switch} checked=${showUnlisted} onChange=${setShowUnlisted} label=${`Show unlisted models (${unlistedCount})`} />
      </div>
      ${shown.length
        ? html`<ul class="list">${shown.map((m) => html`<${ModelRow} key=${m.id} m=${m} showCaps=${showCaps} onError=${onError} />`)}</ul>`
        : html`<${Empty}>No models${models.length ? "" : " (waiting for the event stream)"}<//>`}
      ${peers.length > 0 &&
      html`<div class="section-head"><h3>Peer models</h3></div>
        <ul class="list">${peers.map((m) => html`<${ModelRow} key=${m.id} m=${m} showCaps=${showCaps} onError=${onError} />`)}</ul>`}
    <//>
    <${GpuMemoryCard} />
    <${ProfilesCard} />
    <${SelectorsCard} selectors=${selectors} />
  </div>`;
}
