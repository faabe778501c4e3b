// Images, speech, transcription and rerank tabs.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { ApiError, errorText, getJSON, query } from "../api.js";
import { addLora, loraMultiplier, parseLoras, removeLora, txt2imgBody } from "../lib/sdapi.js";
import { CopyButton, ErrorNote, Segmented, usePersisted } from "../ui/common.js";
import { busy, ModelPicker, SESSION_HEADERS } from "./shared.js";

async function postRaw(url, body, signal, json = true) {
  const res = await fetch(url, {
    method: "POST",
    headers: json ? { "Content-Type": "application/json", ...SESSION_HEADERS } : SESSION_HEADERS,
    body: json ? JSON.stringify(body) : body,
    signal,
  });
  if (!res.ok) throw new ApiError(url, res.status, await errorText(res));
  return res;
}

function useRunner() {
  const [ctrl, setCtrl] = useState(null);
  const [error, setError] = useState("");
  const run = async (fn) => {
    const c = new AbortController();
    setCtrl(c);
    setError("");
    try {
      await busy(fn(c.signal));
    } catch (e) {
      setError(e.name === "AbortError" ? "Cancelled" : e.message);
    } finally {
      setCtrl(null);
    }
  };
  return { running: Boolean(ctrl), cancel: () => ctrl?.abort(), error, run };
}

const SIZES = ["512x512", "1024x1024", "1024x768", "1280x720", "1792x1024", "768x1024", "720x1280", "1024x1792"];
const SCHEDULERS = ["auto", "discrete", "karras", "exponential", "ays", "gits"];
const SAMPLERS = ["euler_a", "euler", "heun", "dpm2", "dpmpp2s_a", "dpmpp2m", "dpmpp2mv2", "ipndm", "ipndm_v", "lcm", "ddim_trailing", "tcd"];

/** Fetch the upstream's LoRAs, pick some with a multiplier each, drop them again. */
function LoraLoader({ model, picked, onChange }) {
  const [available, setAvailable] = useState(null); // null: not fetched for this model yet
  const [choice, setChoice] = useState("");
  const [multiplier, setMultiplier] = useState("1");
  const [fetching, setFetching] = useState(false);
  const [error, setError] = useState("");
  useEffect(() => {
    setAvailable(null);
    setError("");
  }, [model]);
  const fetchList = async () => {
    setFetching(true);
    setError("");
    try {
      const list = parseLoras(await getJSON(`/sdapi/v1/loras${query({ model })}`, { headers: { Accept: "application/json", ...SESSION_HEADERS } }));
      setAvailable(list);
      setChoice(list[0]?.path || "");
    } catch (e) {
      setAvailable(null);
      setError(`Could not list LoRAs: ${e.message}`);
    } finally {
      setFetching(false);
    }
  };
  const add = () => {
    const lora = available?.find((l) => l.path === choice);
    if (lora) onChange(addLora(picked, lora, multiplier));
  };
  return html`<fieldset class="lora-loader">
    <legend>LoRAs</legend>
    <div class="row-actions">
      <button type="button" class="btn small" disabled=${!model || fetching} onClick=${fetchList}>${available ? "Refresh list" : "Fetch LoRAs"}</button>
      ${available &&
      (available.length
        ? html`<label for="lora-choice">LoRA</label>
            <select id="lora-choice" value=${choice} onChange=${(e) => setChoice(e.target.value)}>
              ${available.map((l) => html`<option value=${l.path}>${l.name}</option>`)}
            </select>
            <label for="lora-multiplier">Multiplier</label>
            <input id="lora-multiplier" type="number" step="0.05" value=${multiplier} onInput=${(e) => setMultiplier(e.target.value)} />
            <button type="button" class="btn small" onClick=${add}>Add LoRA</button>`
        : html`<span class="muted small">${model} offers no LoRAs</span>`)}
    </div>
    <${ErrorNote} error=${error} />
    ${picked.length > 0 &&
    html`<ul class="lora-list" aria-label="Picked LoRAs">
      ${picked.map(
        (l) => html`<li>
          <span class="mono">${l.name}</span>
          <label><span class="sr-only">Multiplier for ${l.name}</span>
            <input type="number" step="0.05" value=${l.multiplier} onChange=${(e) => onChange(addLora(picked, l, loraMultiplier(e.target.value)))} />
          </label>
          <button type="button" class="btn tiny" aria-label=${`Remove LoRA ${l.name}`} onClick=${() => onChange(removeLora(picked, l.path))}>✕</button>
        </li>`,
      )}
    </ul>`}
  </fieldset>`;
}

export function ImagesTab() {
  const [model, setModel] = usePersisted("playground-image-model", "");
  const [size, setSize] = usePersisted("playground-image-size", "1024x1024");
  const [mode, setMode] = usePersisted("playground-image-api-mode", "openai");
  const [steps, setSteps] = usePersisted("playground-sdapi-steps", 20);
  const [cfg, setCfg] = usePersisted("playground-sdapi-cfg-scale", 7);
  const [seed, setSeed] = usePersisted("playground-sdapi-seed", -1);
  const [sampler, setSampler] = usePersisted("playground-sdapi-sampler", "euler_a");
  const [negative, setNegative] = usePersisted("playground-sdapi-negative-prompt", "");
  const [batch, setBatch] = usePersisted("playground-sdapi-batch-size", 1);
  const [scheduler, setScheduler] = usePersisted("playground-sdapi-scheduler", "auto");
  const [loras, setLoras] = useState([]);
  const [prompt, setPrompt] = useState("");
  const [images, setImages] = useState([]);
  const r = useRunner();
  const generate = () =>
    r.run(async (signal) => {
      const [w, h] = size.split("x").map(Number);
      if (mode === "sdapi") {
        const body = txt2imgBody({ model, prompt, negative, width: w, height: h, steps, cfg, seed, batch, sampler, scheduler, loras });
        const res = await postRaw("/sdapi/v1/txt2img", body, signal);
        const d = await res.json();
        setImages((d.images || []).map((b) => `data:image/png;base64,${b}`));
      } else {
        const res = await postRaw("/v1/images/generations", { model, prompt, size, n: 1, response_format: "b64_json" }, signal);
        const d = await res.json();
        setImages((d.data || []).map((x) => (x.b64_json ? `data:image/png;base64,${x.b64_json}` : x.url)).filter(Boolean));
      }
    });
  return html`<div class="tool">
    <div class="toolbar">
      <${ModelPicker} id="image-model" value=${model} onChange=${setModel} capability="image_generation" />
      <${Segmented} label="API" options=${[{ value: "openai", label: "OpenAI" }, { value: "sdapi", label: "SDAPI" }]} value=${mode} onChange=${setMode} />
      <label>Size <select value=${size} onChange=${(e) => setSize(e.target.value)}>${SIZES.map((s) => html`<option value=${s} selected=${s === size}>${s}</option>`)}</select></label>
    </div>
    ${mode === "sdapi" &&
    html`<div class="filter-drawer">
      <label>Steps <input type="number" min="1" value=${steps} onChange=${(e) => setSteps(Number(e.target.value))} /></label>
      <label>CFG <input type="number" step="0.5" value=${cfg} onChange=${(e) => setCfg(Number(e.target.value))} /></label>
      <label>Seed <input type="number" value=${seed} onChange=${(e) => setSeed(Number(e.target.value))} /></label>
      <label>Batch <input type="number" min="1" max="8" value=${batch} onChange=${(e) => setBatch(Math.max(1, Number(e.target.value) || 1))} /></label>
      <label>Sampler <select value=${sampler} onChange=${(e) => setSampler(e.target.value)}>${SAMPLERS.map((s) => html`<option value=${s} selected=${s === sampler}>${s}</option>`)}</select></label>
      <label>Scheduler <select value=${scheduler} onChange=${(e) => setScheduler(e.target.value)}>${SCHEDULERS.map((s) => html`<option value=${s} selected=${s === scheduler}>${s}</option>`)}</select></label>
      <label>Negative prompt <input value=${negative} onInput=${(e) => setNegative(e.target.value)} /></label>
    </div>
    <${LoraLoader} model=${model} picked=${loras} onChange=${setLoras} />`}
    <label class="sr-only" for="image-prompt">Image prompt</label>
    <textarea id="image-prompt" rows="3" placeholder="Describe the image" value=${prompt} onInput=${(e) => setPrompt(e.target.value)}></textarea>
    <div class="row-actions">
      ${r.running
        ? html`<button type="button" class="btn danger" onClick=${r.cancel}>Cancel</button>`
        : html`<button type="button" class="btn primary" disabled=${!prompt.trim() || !model} onClick=${generate}>Generate</button>`}
      <button type="button" class="btn" disabled=${!images.length} onClick=${() => setImages([])}>Clear</button>
    </div>
    <${ErrorNote} error=${r.error} />
    <div class=${images.length > 1 ? "grid two" : ""}>
      ${images.map((src, i) => html`<figure><img class="generated" src=${src} alt=${`Generated image ${i + 1}`} /><a class="btn small" href=${src} download=${`image-${i + 1}.png`}>Download PNG</a></figure>`)}
    </div>
  </div>`;
}

/** Speech clips kept in the list; the object URLs of older ones are revoked. */
const KEEP_CLIPS = 10;

const DEFAULT_VOICES = ["coral", "alloy", "echo", "fable", "onyx", "nova", "shimmer"];

/** Accept a bare list, `{voices: [...]}` of strings or `{id}` objects; else the defaults. */
export function parseVoices(d) {
  const arr = Array.isArray(d) ? d : Array.isArray(d?.voices) ? d.voices : null;
  const names = (arr || []).map((v) => (typeof v === "string" ? v : v?.id)).filter(Boolean);
  return names.length ? names : DEFAULT_VOICES;
}

export function SpeechTab() {
  const [model, setModel] = usePersisted("playground-speech-model", "");
  const [voice, setVoice] = usePersisted("playground-speech-voice", "coral");
  const [autoplay, setAutoplay] = usePersisted("playground-speech-autoplay", true);
  const [cache, setCache] = usePersisted("playground-speech-voices-cache", {});
  const [text, setText] = useState("");
  const [clips, setClips] = useState([]);
  const clipsRef = useRef(clips);
  clipsRef.current = clips;
  useEffect(() => () => clipsRef.current.forEach((c) => URL.revokeObjectURL(c.url)), []);
  const r = useRunner();
  const voices = cache[model] || DEFAULT_VOICES;
  const refreshVoices = async () => {
    try {
      const res = await fetch(`/v1/audio/voices${query({ model })}`);
      setCache({ ...cache, [model]: parseVoices(res.ok ? await res.json() : null) });
    } catch {
      setCache({ ...cache, [model]: DEFAULT_VOICES });
    }
  };
  const speak = () =>
    r.run(async (signal) => {
      const res = await postRaw("/v1/audio/speech", { model, input: text, voice }, signal);
      const url = URL.createObjectURL(await res.blob());
      const next = [{ url, voice, at: new Date().toLocaleTimeString() }, ...clipsRef.current];
      next.slice(KEEP_CLIPS).forEach((c) => URL.revokeObjectURL(c.url));
      clipsRef.current = next.slice(0, KEEP_CLIPS);
      setClips(clipsRef.current);
    });
  return html`<div class="tool">
    <div class="toolbar">
      <${ModelPicker} id="speech-model" value=${model} onChange=${setModel} capability="audio_speech" />
      <label>Voice <select value=${voice} onChange=${(e) => setVoice(e.target.value)}>${voices.map((v) => html`<option value=${v} selected=${v === voice}>${v}</option>`)}</select></label>
      <button type="button" class="btn small" onClick=${refreshVoices}>Refresh voices</button>
      <label><input type="checkbox" checked=${autoplay} onChange=${(e) => setAutoplay(e.target.checked)} /> Auto-play</label>
    </div>
    <label class="sr-only" for="speech-text">Text to speak</label>
    <textarea id="speech-text" rows="3" placeholder="Text to speak" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
    <div class="row-actions">
      ${r.running
        ? html`<button type="button" class="btn danger" onClick=${r.cancel}>Cancel</button>`
        : html`<button type="button" class="btn primary" disabled=${!text.trim() || !model} onClick=${speak}>Speak</button>`}
    </div>
    <${ErrorNote} error=${r.error} />
    <ul class="list">
      ${clips.map(
        (c, i) => html`<li class="model-row">${c.voice} · ${c.at}
          <audio controls src=${c.url} autoplay=${autoplay && i === 0}></audio>
          <a class="btn small" href=${c.url} download="speech.mp3">Download</a></li>`,
      )}
    </ul>
  </div>`;
}

export function TranscriptionTab() {
  const [model, setModel] = usePersisted("playground-audio-model", "");
  const [file, setFile] = useState(null);
  const [result, setResult] = useState("");
  const [over, setOver] = useState(false);
  const r = useRunner();
  const transcribe = () =>
    r.run(async (signal) => {
      const form = new FormData();
      form.append("file", file);
      form.append("model", model);
      const res = await postRaw("/v1/audio/transcriptions", form, signal, false);
      const ct = res.headers.get("content-type") || "";
      setResult(ct.includes("json") ? ((await res.json()).text ?? "") : await res.text());
    });
  return html`<div class="tool">
    <div class="toolbar"><${ModelPicker} id="audio-model" value=${model} onChange=${setModel} capability="audio_transcriptions" /></div>
    <div
      class=${`dropzone ${over ? "over" : ""}`}
      onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e) => { e.preventDefault(); setOver(false); setFile(e.dataTransfer.files[0] || null); }}
    >
      <p>${file ? `${file.name} (${Math.round(file.size / 1024)} KB)` : "Drop an audio file here (mp3, wav, ogg)"}</p>
      <label class="btn small">Browse<input type="file" accept=".mp3,.wav,.ogg,audio/*" class="sr-only" onChange=${(e) => setFile(e.target.files[0] || null)} /></label>
    </div>
    <div class="row-actions">
      ${r.running
        ? html`<button type="button" class="btn danger" onClick=${r.cancel}>Cancel</button>`
        : html`<button type="button" class="btn primary" disabled=${!file || !model} onClick=${transcribe}>Transcribe</button>`}
      <button type="button" class="btn" onClick=${() => { setFile(null); setResult(""); }}>Clear</button>
    </div>
    <${ErrorNote} error=${r.error} />
    ${result && html`<div><div class="row-actions"><${CopyButton} text=${result} /></div><pre class="wrap">${result}</pre></div>`}
  </div>`;
}

const SAMPLE_DOCS = [
  "The capital of France is Paris.",
  "Bananas are rich in potassium.",
  "Paris is known for the Eiffel Tower.",
];

export function RerankTab() {
  const [model, setModel] = usePersisted("playground-rerank-model", "");
  const [q, setQ] = useState("What is the capital of France?");
  const [docs, setDocs] = useState(SAMPLE_DOCS);
  const [results, setResults] = useState(null);
  const [sort, setSort] = useState("none");
  const r = useRunner();
  const real = docs.filter((d) => d.trim());
  const rerank = () =>
    r.run(async (signal) => {
      const res = await postRaw("/v1/rerank", { model, query: q, documents: real }, signal);
      setResults(await res.json());
    });
  const rows = (results?.results || []).map((x) => ({ doc: real[x.index] ?? "", score: x.relevance_score ?? x.score }));
  if (sort === "desc") rows.sort((a, b) => b.score - a.score);
  if (sort === "asc") rows.sort((a, b) => a.score - b.score);
  const setDoc = (i, v) => {
    const next = [...docs];
    next[i] = v;
    if (i === next.length - 1 && v) next.push("");
    setDocs(next);
  };
  return html`<div class="tool">
    <div class="toolbar"><${ModelPicker} id="rerank-model" value=${model} onChange=${setModel} capability="reranker" /></div>
    <label>Query <input value=${q} onInput=${(e) => setQ(e.target.value)} onKeyDown=${(e) => e.key === "Enter" && rerank()} /></label>
    <ol class="docs">
      ${[...docs, ...(docs[docs.length - 1] ? [""] : [])].map(
        (d, i) => html`<li><label class="sr-only" for=${`doc-${i}`}>Document ${i + 1}</label>
          <input id=${`doc-${i}`} value=${d} onInput=${(e) => setDoc(i, e.target.value)} placeholder="Add a document" />
          ${d && html`<button type="button" class="btn tiny" aria-label=${`Delete document ${i + 1}`} onClick=${() => setDocs(docs.filter((_, j) => j !== i))}>✕</button>`}</li>`,
      )}
    </ol>
    <div class="row-actions">
      ${r.running
        ? html`<button type="button" class="btn danger" onClick=${r.cancel}>Cancel</button>`
        : html`<button type="button" class="btn primary" disabled=${!model || !real.length} onClick=${rerank}>Rerank</button>`}
      <button type="button" class="btn" onClick=${() => { setDocs(SAMPLE_DOCS); setResults(null); }}>Clear</button>
    </div>
    <${ErrorNote} error=${r.error} />
    ${results &&
    html`<table class="table"><thead><tr><th scope="col">Document</th><th scope="col">
        <button type="button" class="th-sort" onClick=${() => setSort(sort === "none" ? "desc" : sort === "desc" ? "asc" : "none")}>Score ${sort === "desc" ? "▼" : sort === "asc" ? "▲" : ""}</button></th></tr></thead>
      <tbody>${rows.map((x) => html`<tr><td>${x.doc}</td><td class=${x.score > 0 ? "num good" : "num badc"}>${Number(x.score).toFixed(3)}</td></tr>`)}</tbody></table>
      ${results.usage && html`<p class="small muted">Tokens: ${JSON.stringify(results.usage)}</p>`}`}
  </div>`;
}
