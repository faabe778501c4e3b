// Hardware: the snapshot detected at startup, as cards and as copyable text for bug reports.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON } from "../api.js";
import { formatBytes } from "../lib/format.js";
import { Card, CopyButton, ErrorNote, Tabs } from "../ui/common.js";

export function hardwareText(h) {
  const lines = [];
  const os = h.operating_system || {};
  lines.push(`OS: ${[os.name, os.version].filter(Boolean).join(" ") || os.family || "unknown"}`);
  if (os.kernel) lines.push(`Kernel: ${os.kernel}`);
  lines.push(`Architecture: ${h.architecture?.name || "unknown"}`);
  const env = h.environment || {};
  lines.push(`Environment: ${[env.kind, env.name, env.version].filter(Boolean).join(" ") || "unknown"}`);
  if (h.memory?.capacity_bytes) lines.push(`Memory: ${formatBytes(h.memory.capacity_bytes)}`);
  const cpu = h.cpu || {};
  lines.push(
    `CPU: ${cpu.model || "unknown"} (${cpu.vendor || "?"}), ${cpu.socket_count ?? "?"} socket(s), ${cpu.physical_core_count ?? "?"} cores, ${cpu.logical_thread_count ?? "?"} threads`,
  );
  const accs = h.accelerators || [];
  if (!accs.length) lines.push("Accelerators: none detected");
  for (const a of accs) {
    lines.push(
      `Accelerator ${a.index}: ${a.vendor || ""} ${a.model || ""} [${a.kind}]` +
        `${a.memory?.capacity_bytes ? `, ${formatBytes(a.memory.capacity_bytes)} ${a.memory.kind || ""}` : ""}` +
        `${a.driver ? `, driver ${a.driver.name || ""} ${a.driver.version || ""}` : ""}` +
        `${a.power_limit_watts ? `, ${a.power_limit_watts} W` : ""}`,
    );
  }
  return lines.join("\n");
}

const v = (x) => (x == null || x === "" ? html`<span class="muted">Not detected</span>` : x);

export function HardwarePage() {
  const [hw, setHw] = useState(null);
  const [error, setError] = useState("");
  const [tab, setTab] = useState("overview");
  useEffect(() => {
    getJSON("/api/hardware").then(setHw).catch(() => setError("Hardware detection unavailable"));
  }, []);
  if (error) return html`<div class="page"><${Card} title="Hardware"><${ErrorNote} error=${error} /><//></div>`;
  if (!hw) return html`<div class="page"><p class="empty">Loading…</p></div>`;
  const os = hw.operating_system || {};
  const cpu = hw.cpu || {};
  const env = hw.environment || {};
  return html`<div class="page">
    <${Tabs} label="Hardware view" tabs=${[{ id: "overview", label: "Overview" }, { id: "text", label: "Text" }]} value=${tab} onChange=${setTab} />
    ${tab === "overview"
      ? html`<div class="grid two">
          <${Card} title="System">
            <dl class="kv-list">
              <dt>OS</dt><dd>${v([os.name, os.version].filter(Boolean).join(" "))}</dd>
              <dt>Kernel</dt><dd>${v(os.kernel)}</dd>
              <dt>Architecture</dt><dd>${v(hw.architecture?.name)}</dd>
              <dt>Environment</dt><dd>${v([env.kind, env.name].filter(Boolean).join(" · "))}</dd>
              <dt>Memory</dt><dd>${v(hw.memory?.capacity_bytes && formatBytes(hw.memory.capacity_bytes))}</dd>
            </dl>
          <//>
          <${Card} title="CPU">
            <dl class="kv-list">
              <dt>Model</dt><dd>${v(cpu.model)}</dd>
              <dt>Vendor</dt><dd>${v(cpu.vendor)}</dd>
              <dt>Sockets</dt><dd>${v(cpu.socket_count)}</dd>
              <dt>Physical cores</dt><dd>${v(cpu.physical_core_count)}</dd>
              <dt>Logical threads</dt><dd>${v(cpu.logical_thread_count)}</dd>
            </dl>
          <//>
          ${(hw.accelerators?.length ? hw.accelerators : [null]).map(
            (a) => html`<${Card} title=${a ? `Accelerator ${a.index}: ${a.model || a.kind}` : "Accelerators"}>
              ${a
                ? html`<dl class="kv-list">
                    <dt>Vendor · kind</dt><dd>${v(a.vendor)} · ${a.kind}</dd>
                    <dt>Architecture</dt><dd>${v(a.architecture)}</dd>
                    <dt>Memory</dt><dd>${v(a.memory?.capacity_bytes && `${formatBytes(a.memory.capacity_bytes)} ${a.memory.kind || ""}`)}</dd>
                    <dt>Driver</dt><dd>${v(a.driver && `${a.driver.name || ""} ${a.driver.version || ""}`)}</dd>
                    <dt>Power limit</dt><dd>${v(a.power_limit_watts && `${a.power_limit_watts} W`)}</dd>
                  </dl>`
                : html`<p class="muted">Not detected</p>`}
            <//>`,
          )}
        </div>`
      : html`<${Card} title="Hardware summary" actions=${html`<${CopyButton} text=${hardwareText(hw)} />`}>
          <label class="sr-only" for="hw-text">Hardware summary text</label>
          <textarea id="hw-text" class="mono export" readonly rows="14" value=${hardwareText(hw)}></textarea>
        <//>`}
  </div>`;
}
