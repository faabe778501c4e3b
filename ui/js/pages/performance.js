// Performance: CPU, memory, load, network and GPU charts (uPlot) with window and refresh controls.

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import uPlot from "../../vendor/uPlot.esm.js";
import { getJSON, query } from "../api.js";
import { Card, Empty, ErrorNote, Segmented, usePersisted } from "../ui/common.js";

const WINDOWS = [
  { value: 300, label: "5 min" },
  { value: 900, label: "15 min" },
  { value: 3600, label: "1 hr" },
];
/** Samples older than the largest window are dropped, so polling cannot grow them forever. */
const KEEP_MS = Math.max(...WINDOWS.map((w) => w.value)) * 1000;
const trimSamples = (list) => {
  const cutoff = Date.now() - KEEP_MS;
  return list.filter((x) => Date.parse(x.timestamp) >= cutoff);
};
const REFRESH = [
  { value: 0, label: "Off" },
  { value: 5, label: "5s" },
  { value: 10, label: "10s" },
  { value: 30, label: "30s" },
  { value: 60, label: "60s" },
];
const PALETTE = ["#3b82f6", "#f59e0b", "#22c55e", "#ef4444", "#a855f7", "#14b8a6", "#ec4899", "#84cc16"];

/** Network Mbit/s per interface from byte counters (needs two samples). */
export function netRates(samples) {
  const out = {};
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = (Date.parse(b.timestamp) - Date.parse(a.timestamp)) / 1000;
    if (dt <= 0) continue;
    for (const n of b.net_io || []) {
      const prev = (a.net_io || []).find((x) => x.name === n.name);
      if (!prev) continue;
      out[`${n.name} in`] ??= [];
      out[`${n.name} out`] ??= [];
      out[`${n.name} in`].push([b.timestamp, Math.max(0, ((n.bytes_recv - prev.bytes_recv) * 8) / dt / 1e6)]);
      out[`${n.name} out`].push([b.timestamp, Math.max(0, ((n.bytes_sent - prev.bytes_sent) * 8) / dt / 1e6)]);
    }
  }
  return out;
}

function Chart({ title, series, unit, legend = true, caption }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const names = Object.keys(series);
    if (!el.current || !names.length) return;
    const times = [...new Set(names.flatMap((n) => series[n].map(([t]) => Date.parse(t) / 1000)))].sort((a, b) => a - b);
    const idx = new Map(times.map((t, i) => [t, i]));
    const cols = names.map((n) => {
      const col = new Array(times.length).fill(null);
      for (const [t, v] of series[n]) col[idx.get(Date.parse(t) / 1000)] = v;
      return col;
    });
    const width = Math.max(280, el.current.clientWidth);
    // Canvas cannot resolve CSS variables: read the theme's colours now.
    const css = getComputedStyle(document.documentElement);
    const ink = css.getPropertyValue("--muted").trim() || "#6b7280";
    const opts = {
      width,
      height: 220,
      legend: { show: legend },
      scales: { x: { time: true } },
      axes: [
        { stroke: ink, grid: { stroke: "rgba(128,128,128,.15)" } },
        { stroke: ink, size: 64, grid: { stroke: "rgba(128,128,128,.15)" }, values: (u, v) => v.map((x) => `${x}${unit}`) },
      ],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: false } }))],
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, [times, ...cols], el.current);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.current.clientWidth), height: 220 }));
    ro.observe(el.current);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [series]);
  return html`<figure class="chart" aria-label=${title}>
    <figcaption>${title}</figcaption>
    ${Object.keys(series).length ? html`<div ref=${el} class="chart-box"></div>` : html`<p class="empty">No data</p>`}
    ${caption && html`<p class="small muted">${caption}</p>`}
  </figure>`;
}

export function PerformancePage() {
  const [win, setWin] = usePersisted("perf-window", 300);
  const [refresh, setRefresh] = usePersisted("perf-refresh-interval", 5);
  const [sys, setSys] = useState([]);
  const [gpu, setGpu] = useState([]);
  const [error, setError] = useState(null);
  const [disabled, setDisabled] = useState(false);
  const [busy, setBusy] = useState(false);
  const last = useRef(null);
  const load = async (full) => {
    setBusy(true);
    try {
      const after = full ? null : last.current;
      const d = await getJSON(`/api/performance${query({ after })}`);
      const s = d.sys_stats || [];
      const g = d.gpu_stats || [];
      setSys((old) => trimSamples(full ? s : [...old, ...s]));
      setGpu((old) => trimSamples(full ? g : [...old, ...g]));
      const stamps = [...s, ...g].map((x) => x.timestamp).sort();
      if (stamps.length) last.current = stamps[stamps.length - 1];
      setError(null);
    } catch (e) {
      if (e.status === 503) setDisabled(true);
      else setError(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    load(true);
  }, []);
  useEffect(() => {
    if (!refresh) return;
    const id = setInterval(() => !document.hidden && load(false), refresh * 1000);
    const vis = () => !document.hidden && load(true);
    document.addEventListener("visibilitychange", vis);
    return () => {
      clearInterval(id);
      document.removeEventListener("visibilitychange", vis);
    };
  }, [refresh]);
  const cutoff = Date.now() - win * 1000;
  const recent = sys.filter((s) => Date.parse(s.timestamp) >= cutoff);
  const recentGpu = gpu.filter((s) => Date.parse(s.timestamp) >= cutoff);
  const cores = Math.max(0, ...recent.map((s) => s.cpu_util_per_core?.length || 0));
  const cpu = {};
  for (let c = 0; c < cores; c++) cpu[`core ${c}`] = recent.map((s) => [s.timestamp, s.cpu_util_per_core?.[c] ?? null]);
  const last1 = recent[recent.length - 1];
  const mem = recent.length
    ? {
        memory: recent.map((s) => [s.timestamp, (100 * s.mem_used_mb) / (s.mem_total_mb || 1)]),
        swap: recent.map((s) => [s.timestamp, s.swap_total_mb ? (100 * s.swap_used_mb) / s.swap_total_mb : 0]),
      }
    : {};
  const loadAvg = recent.length
    ? {
        "1m": recent.map((s) => [s.timestamp, s.load_avg_1]),
        "5m": recent.map((s) => [s.timestamp, s.load_avg_5]),
        "15m": recent.map((s) => [s.timestamp, s.load_avg_15]),
      }
    : {};
  const gpuSeries = (field) => {
    const out = {};
    for (const g of recentGpu) {
      if (g[field] == null) continue;
      (out[`${g.id} ${g.name || ""}`.trim()] ??= []).push([g.timestamp, g[field]]);
    }
    return out;
  };
  const vramTemp = gpuSeries("vram_temp_c");
  return html`<div class="page">
    <${Card}
      title="Performance"
      actions=${html`
        <${Segmented} label="Time window" options=${WINDOWS} value=${win} onChange=${setWin} />
        <${Segmented} label="Auto refresh" options=${REFRESH} value=${refresh} onChange=${setRefresh} />
        <button type="button" class="btn small" disabled=${busy} onClick=${() => load(true)}>${busy ? "Refreshing…" : "Refresh"}</button>
      `}
    >
      ${error && html`<${ErrorNote} error=${error} />`}
      ${disabled && html`<${Empty}>Performance monitoring is disabled on this server.<//>`}
    <//>
    ${!disabled &&
    html`<${Card} title="GPU">
        ${recentGpu.length
          ? html`<div class="grid two">
              <${Chart} title="Utilization" unit="%" series=${gpuSeries("gpu_util_pct")} />
              <${Chart} title="Memory utilization" unit="%" series=${gpuSeries("mem_util_pct")} />
              <${Chart} title="Temperature" unit="°C" series=${gpuSeries("temp_c")} />
              ${Object.keys(vramTemp).length > 0 && html`<${Chart} title="VRAM temperature" unit="°C" series=${vramTemp} />`}
              <${Chart} title="Power draw" unit="W" series=${gpuSeries("power_draw_w")} />
            </div>`
          : html`<${Empty}>No GPU data available<//>`}
      <//>
      <${Card} title="System">
        <div class="grid two">
          <${Chart} title="CPU utilization per core" unit="%" series=${cpu} legend=${false} />
          <${Chart}
            title="Memory & swap used"
            unit="%"
            series=${mem}
            caption=${last1 && `${Math.round(last1.mem_used_mb)} of ${Math.round(last1.mem_total_mb)} MB memory, ${Math.round(last1.swap_used_mb)} of ${Math.round(last1.swap_total_mb)} MB swap`}
          />
          <${Chart} title="Load average" unit="" series=${loadAvg} />
          ${recent.length >= 2 && html`<${Chart} title="Network" unit=" Mb/s" series=${netRates(recent)} />`}
        </div>
      <//>`}
  </div>`;
}
