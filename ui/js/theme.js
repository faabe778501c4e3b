// Theme mode (light/dark/system) and palette, applied as data attributes on <html>.

import { load, save } from "./lib/storage.js";

export const PALETTES = [
  { id: "default", label: "Default" },
  { id: "ocean", label: "Ocean" },
  { id: "violet", label: "Violet" },
  { id: "emerald", label: "Emerald" },
  { id: "rose", label: "Rose" },
  { id: "amber", label: "Amber" },
  { id: "slate", label: "Slate" },
  { id: "sunset", label: "Sunset" },
  { id: "green-terminal", label: "Green Terminal" },
  { id: "midnight-commander", label: "Midnight Commander" },
  { id: "solarized", label: "Solarized" },
];

const media = globalThis.matchMedia?.("(prefers-color-scheme: dark)");

export function themeMode() {
  // The legacy boolean key `theme` (true = dark) is migrated once.
  const legacy = load("theme", null);
  if (typeof legacy === "boolean" && load("theme-mode", null) == null) {
    save("theme-mode", legacy ? "dark" : "light");
  }
  return load("theme-mode", "system");
}

export function applyTheme() {
  const mode = themeMode();
  const dark = mode === "dark" || (mode === "system" && media?.matches);
  document.documentElement.dataset.mode = dark ? "dark" : "light";
  document.documentElement.dataset.theme = load("theme-name", "default");
}

export function cycleThemeMode() {
  const order = ["system", "light", "dark"];
  const next = order[(order.indexOf(themeMode()) + 1) % order.length];
  save("theme-mode", next);
  applyTheme();
  return next;
}

media?.addEventListener?.("change", applyTheme);
