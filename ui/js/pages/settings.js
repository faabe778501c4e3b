// Settings: theme mode and palette, app title, capability tags, build information.

import { html } from "../../vendor/htm-preact-standalone.mjs";
import { cleanTitle } from "../lib/format.js";
import { save } from "../lib/storage.js";
import { setState, useStore } from "../store.js";
import { Card, Segmented, Switch, usePersisted } from "../ui/common.js";
import { applyTheme, PALETTES } from "../theme.js";

export function SettingsPage() {
  const [mode, setMode] = usePersisted("theme-mode", "system");
  const [palette, setPalette] = usePersisted("theme-name", "default");
  const [caps, setCaps] = usePersisted("models-dash-show-capability-tags", false);
  const title = useStore((s) => s.title);
  const connection = useStore((s) => s.connection);
  const version = useStore((s) => s.version);
  return html`<div class="page">
    <${Card} title="Appearance">
      <div class="form-row">
        <span id="mode-label">Mode</span>
        <${Segmented}
          label="Colour mode"
          options=${[{ value: "light", label: "Light" }, { value: "dark", label: "Dark" }, { value: "system", label: "System" }]}
          value=${mode}
          onChange=${(m) => {
            setMode(m);
            applyTheme();
          }}
        />
      </div>
      <div class="form-row">
        <label for="palette">Theme</label>
        <select id="palette" value=${palette} onChange=${(e) => { setPalette(e.target.value); applyTheme(); }}>
          ${PALETTES.map((p) => html`<option value=${p.id}>${p.label}</option>`)}
        </select>
      </div>
      <div class="form-row">
        <label for="app-title-input">App title</label>
        <input
          id="app-title-input"
          value=${title}
          maxlength="64"
          onChange=${(e) => {
            const t = cleanTitle(e.target.value);
            save("app-title", t);
            setState({ title: t });
          }}
        />
      </div>
    <//>
    <${Card} title="Models page">
      <${Switch} checked=${caps} onChange=${setCaps} label="Show capability tags" />
    <//>
    <${Card} title="Build information">
      <dl class="kv-list">
        <dt>Event stream</dt><dd data-testid="connection-state">${connection}</dd>
        <dt>Version</dt><dd>${version?.version || "-"}</dd>
        <dt>Commit</dt><dd class="mono">${(version?.commit || "-").slice(0, 7)}</dd>
        <dt>Build date</dt><dd>${version?.build_date || "-"}</dd>
      </dl>
    <//>
  </div>`;
}
