import assert from "node:assert/strict";
import { test } from "node:test";
import {
  cleanTitle,
  formatBytes,
  formatContext,
  formatDraft,
  formatSeconds,
  formatSpeed,
  formatTokens,
  formatWait,
  middleEllipsis,
  naturalCompare,
  relativeTime,
} from "../../../ui/js/lib/format.js";

test("bytes use binary units with one decimal", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MB");
  assert.equal(formatBytes(-1), "-");
});

test("the server's -1 'unknown' sentinel never shows as a number", () => {
  assert.equal(formatSpeed(-1), "unknown");
  assert.equal(formatSpeed(0), "-");
  assert.equal(formatSpeed(12.345), "12.35 t/s");
  assert.equal(formatTokens(-1), "-");
  assert.equal(formatTokens(0), "-");
  assert.equal(formatTokens(12345), "12,345");
  assert.equal(formatDraft(-1, -1), "-");
  assert.equal(formatDraft(30, 40), "75% (30/40)");
});

test("durations and waits", () => {
  assert.equal(formatSeconds(1234), "1.23s");
  assert.equal(formatWait(850), "850ms");
  assert.equal(formatWait(12_340), "12.3s");
  assert.equal(formatWait(245_000), "4m 05s");
  assert.equal(formatWait(2 * 3600_000 + 3 * 60_000), "2h 03m");
});

test("relative time turns absolute after a day", () => {
  const now = Date.parse("2026-03-04T12:00:00Z");
  assert.equal(relativeTime("2026-03-04T12:00:00Z", now), "now");
  assert.equal(relativeTime("2026-03-04T11:59:15Z", now), "45s ago");
  assert.equal(relativeTime("2026-03-04T11:50:00Z", now), "10m ago");
  assert.equal(relativeTime("2026-03-04T09:00:00Z", now), "3h ago");
  assert.match(relativeTime("2026-03-01T09:00:00Z", now), /^2026-03-0\d \d\d:\d\d:\d\d$/);
  assert.equal(relativeTime("not a date", now), "-");
});

test("middle ellipsis keeps both ends", () => {
  assert.equal(middleEllipsis("short", 10), "short");
  const out = middleEllipsis("abcdefghijklmnopqrstuvwxyz", 11);
  assert.equal(out.length, 11);
  assert.ok(out.startsWith("abcde") && out.endsWith("vwxyz") && out.includes("…"));
});

test("context sizes, natural order, app title rules", () => {
  assert.equal(formatContext(131072), "128K");
  assert.equal(formatContext(1048576), "1M");
  assert.equal(formatContext(0), "");
  assert.deepEqual(["m10", "m2", "m1"].sort(naturalCompare), ["m1", "m2", "m10"]);
  assert.equal(cleanTitle("  My\nBox  "), "My Box");
  assert.equal(cleanTitle("   "), "llamaswap-es");
  assert.equal(cleanTitle("x".repeat(100)).length, 64);
});
