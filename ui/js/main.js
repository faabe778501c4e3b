// The app shell: sidebar, header, hash routing (llama-swap's routes plus ours), the always-mounted
// Playground, and the one /api/events connection.

import { html, render, useEffect, useRef, useState } from "../vendor/htm-preact-standalone.mjs";
import { putJSON } from "./api.js";
import { cleanTitle } from "./lib/format.js";
import { save } from "./lib/storage.js";
import { ActivityPage } from "./pages/activity.js";
import { EventsPage } from "./pages/events.js";
import { HardwarePage } from "./pages/hardware.js";
import { LogsPage } from "./pages/logs.js";
import { ModelDetailPage } from "./pages/model-detail.js";
import { ModelsPage } from "./pages/models.js";
import { PerformancePage } from "./pages/performance.js";
import { QueuePage } from "./pages/queue.js";
import { SettingsPage } from "./pages/settings.js";
import { StoryPage } from "./pages/story.js";
import { Playground, PLAYGROUND_TABS, usePlaygroundTab } from "./playground/index.js";
import { connect, refreshProfiles, setState, useStore } from "./store.js";
import { applyTheme, cycleThemeMode, themeMode } from "./theme.js";
import { StatusDot, usePersisted } from "./ui/common.js";

/** Parse `#/models/abc?x=1` → {name, arg}. Unknown routes fall back to Activity. */
export function parseRoute(hash) {
  const path = (hash || "").replace(/^#/, "").split("?")[0];
  const parts = path.split("/").filter(Boolean);
  const [head, ...rest] = parts;
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : "";
  switch (head) {
    case undefined:
    case "activity":
      return { name: "activity" };
    case "models":
      return arg ? { name: "model", arg } : { name: "models" };
    case "story":
      return arg ? { name: "story", arg } : { name: "activity" };
    case "logs":
    case "playground":
    case "performance":
    case "hardware":
    case "settings":
    case "events":
    case "queue":
      return { name: head };
    default:
      return { name: "activity" };
  }
}

// A path route such as /ui/models/x (llama-swap also redirects /upstream to /ui/models) becomes
// the equivalent hash route on the /ui/ document.
(function normalisePath() {
  const m = /^\/ui\/(.+)$/.exec(location.pathname);
  if (m && !location.hash && !m[1].includes(".")) history.replaceState(null, "", `/ui/#/${m[1]}`);
})();

function useRoute() {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const fn = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", fn);
    return () => window.removeEventListener("hashchange", fn);
  }, []);
  return route;
}

function EditableTitle() {
  const title = useStore((s) => s.title);
  const ref = useRef(null);
  const commit = () => {
    const t = cleanTitle(ref.current.textContent);
    ref.current.textContent = t;
    save("app-title", t);
    setState({ title: t });
  };
  return html`<span
    ref=${ref}
    class="app-title"
    contenteditable="true"
    role="textbox"
    aria-label="App title (editable)"
    spellcheck="false"
    onBlur=${commit}
    onKeyDown=${(e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        ref.current.blur();
      }
    }}
  >${title}</span>`;
}

const NAV = [
  { id: "activity", label: "Activity", icon: "◷" },
  { id: "playground", label: "Playground", icon: "✎" },
  { id: "models", label: "Models", icon: "▦" },
  { id: "logs", label: "Logs", icon: "≣" },
  { id: "events", label: "Events", icon: "⚡" },
  { id: "queue", label: "Queue", icon: "⇶" },
  { id: "performance", label: "Performance", icon: "∿" },
  { id: "hardware", label: "Hardware", icon: "⌂" },
];

function Sidebar({ route, open, onNavigate }) {
  const connection = useStore((s) => s.connection);
  const models = useStore((s) => s.models);
  const perf = useStore((s) => s.perfEnabled);
  const busyPg = useStore((s) => s.playgroundBusy);
  const [menuOpen, setMenuOpen] = usePersisted("models-menu-open", false);
  const [showUnlisted] = usePersisted("models-dash-show-unlisted", false);
  const [mode, setMode] = useState(themeMode());
  const active = (id) => route.name === id || (id === "models" && route.name === "model");
  const local = models.filter((m) => !m.peerID && (showUnlisted || !m.unlisted));
  const peers = models.filter((m) => m.peerID);
  return html`<nav class=${`sidebar ${open ? "open" : ""}`} aria-label="Main">
    <div class="sidebar-head">
      <${StatusDot} state=${connection} label=${`Event Stream: ${connection}`} />
      <${EditableTitle} />
    </div>
    <ul class="nav">
      ${NAV.filter((n) => n.id !== "performance" || perf).map(
        (n) => html`<li>
          <a
            href=${`#/${n.id}`}
            class=${`nav-link ${active(n.id) ? "active" : ""} ${n.id === "playground" && busyPg ? "busy" : ""}`}
            aria-current=${active(n.id) ? "page" : undefined}
            onClick=${onNavigate}
          >
            <span class="nav-icon" aria-hidden="true">${n.icon}</span><span class="nav-label">${n.label}</span>
          </a>
          ${n.id === "models" &&
          html`<button type="button" class="nav-expand" aria-expanded=${menuOpen ? "true" : "false"} aria-label="Show models in menu" onClick=${() => setMenuOpen(!menuOpen)}>
              ${menuOpen ? "▾" : "▸"}
            </button>
            ${menuOpen &&
            html`<ul class="subnav">
              ${local.map(
                (m) => html`<li><a href=${`#/models/${encodeURIComponent(m.id)}`} onClick=${onNavigate}><${StatusDot} state=${m.state} /> ${m.name || m.id}</a></li>`,
              )}
              ${peers.length > 0 && html`<li class="subnav-head">Peers</li>`}
              ${peers.map((m) => html`<li><a href=${`#/models/${encodeURIComponent(m.id)}`} onClick=${onNavigate}>${m.id}</a></li>`)}
            </ul>`}`}
        </li>`,
      )}
    </ul>
    <div class="sidebar-foot">
      <a href="#/settings" class=${`nav-link ${route.name === "settings" ? "active" : ""}`} onClick=${onNavigate}>
        <span class="nav-icon" aria-hidden="true">⚙</span><span class="nav-label">Settings</span>
      </a>
      <button type="button" class="btn ghost theme-btn" aria-label=${`Theme: ${mode} (click to change)`} title=${`Theme: ${mode}`} onClick=${() => setMode(cycleThemeMode())}>
        ${mode === "system" ? "◐" : mode === "light" ? "☀" : "☾"}
      </button>
    </div>
  </nav>`;
}

function ProfileSelect() {
  const { active, profiles } = useStore((s) => s.profiles);
  const switching = useStore((s) => s.profileSwitching);
  if (!profiles?.length) return null;
  const change = async (e) => {
    const name = e.target.value || null;
    setState({ profileSwitching: true });
    try {
      await putJSON("/api/profiles/active", { name });
    } catch {
      /* the profileChanged event or the refresh below shows the truth */
    } finally {
      await refreshProfiles();
      setState({ profileSwitching: false });
    }
  };
  return html`<label class="profile-select">Profile
    <select value=${active || ""} disabled=${switching} onChange=${change}>
      <option value="">None</option>
      ${profiles.map((p) => html`<option value=${p.id}>${p.id}</option>`)}
    </select>
  </label>`;
}

function headerTitle(route, pgTab) {
  switch (route.name) {
    case "playground":
      return `Playground / ${PLAYGROUND_TABS.find((t) => t.id === pgTab)?.label || "Chat"}`;
    case "models":
      return "Models";
    case "model":
      return `Models / ${route.arg}`;
    case "story":
      return "Request story";
    default:
      return route.name[0].toUpperCase() + route.name.slice(1);
  }
}

function App() {
  const route = useRoute();
  const [pgTab, setPgTab] = usePlaygroundTab();
  const [sideOpen, setSideOpen] = useState(false);
  const [collapsed, setCollapsed] = usePersisted("sidebar-collapsed", false);
  const connection = useStore((s) => s.connection);
  const title = useStore((s) => s.title);
  const main = useRef(null);
  useEffect(() => {
    const dot = connection === "connected" ? "🟢" : connection === "connecting" ? "🟡" : "🔴";
    document.title = `${dot} ${title}`;
  }, [connection, title]);
  useEffect(() => {
    main.current?.focus({ preventScroll: true });
  }, [route.name, route.arg]);
  const toggle = () => (matchMedia("(max-width: 767px)").matches ? setSideOpen(!sideOpen) : setCollapsed(!collapsed));
  let page = null;
  switch (route.name) {
    case "models":
      page = html`<${ModelsPage} />`;
      break;
    case "model":
      page = html`<${ModelDetailPage} id=${route.arg} key=${route.arg} />`;
      break;
    case "logs":
      page = html`<${LogsPage} />`;
      break;
    case "performance":
      page = html`<${PerformancePage} />`;
      break;
    case "hardware":
      page = html`<${HardwarePage} />`;
      break;
    case "settings":
      page = html`<${SettingsPage} />`;
      break;
    case "events":
      page = html`<${EventsPage} />`;
      break;
    case "queue":
      page = html`<${QueuePage} />`;
      break;
    case "story":
      page = html`<${StoryPage} id=${route.arg} key=${route.arg} />`;
      break;
    case "playground":
      page = null;
      break;
    default:
      page = html`<${ActivityPage} />`;
  }
  return html`<div class=${`shell ${collapsed ? "collapsed" : ""}`}>
    <a class="skip-link" href="#main" onClick=${(e) => { e.preventDefault(); main.current?.focus(); }}>Skip to content</a>
    <${Sidebar} route=${route} open=${sideOpen} onNavigate=${() => setSideOpen(false)} />
    ${sideOpen && html`<div class="scrim" onClick=${() => setSideOpen(false)} aria-hidden="true"></div>`}
    <div class="main-col">
      <header class="topbar">
        <button type="button" class="btn ghost" aria-label="Toggle sidebar" aria-expanded=${sideOpen || !collapsed ? "true" : "false"} onClick=${toggle}>☰</button>
        <h1 class="section-title">${headerTitle(route, pgTab)}</h1>
        <span class="spacer"></span>
        <${ProfileSelect} />
        <span class=${`conn conn-${connection}`} role="status" aria-live="polite" data-testid="connection">${connection}</span>
      </header>
      <main id="main" ref=${main} tabindex="-1" data-route=${route.name}>
        ${page}
        <${Playground} visible=${route.name === "playground"} tab=${pgTab} setTab=${setPgTab} />
      </main>
    </div>
  </div>`;
}

applyTheme();
render(html`<${App} />`, document.getElementById("app"));
connect();
