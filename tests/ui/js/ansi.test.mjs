import assert from "node:assert/strict";
import { test } from "node:test";
import { ansiToHtml, appendCapped, color256, filterLines, parseAnsi, stripAnsi } from "../../../ui/js/lib/ansi.js";

test("SGR colours, bold and reset become styled segments", () => {
  const segs = parseAnsi("a\x1b[1;31mred\x1b[0m b");
  assert.deepEqual(
    segs.map((s) => s.text),
    ["a", "red", " b"],
  );
  assert.equal(segs[1].style.bold, true);
  assert.equal(segs[1].style.fg, color256(1, true));
  assert.deepEqual({ ...segs[2].style }, {});
});

test("256-colour and 24-bit colours, foreground and background", () => {
  const [seg] = parseAnsi("\x1b[38;5;196;48;2;1;2;3mx");
  assert.equal(seg.style.fg, "rgb(255,0,0)");
  assert.equal(seg.style.bg, "rgb(1,2,3)");
  assert.equal(color256(232), "rgb(8,8,8)");
});

test("other escape sequences are dropped, not shown", () => {
  assert.equal(stripAnsi("\x1b[2K\x1b[1Gdone\x1b]0;title\x07!"), "done!");
  assert.equal(ansiToHtml("\x1b[2Kok"), "ok");
});

test("text is HTML-escaped so log lines cannot inject markup", () => {
  const html = ansiToHtml('<img src=x onerror="alert(1)">\x1b[32m<b>\x1b[0m');
  assert.ok(!html.includes("<img"));
  assert.ok(html.includes("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"));
  assert.ok(html.includes('<span style="color:'));
  assert.ok(html.includes("&lt;b&gt;"));
});

test("regex filter is case-insensitive, ignores colours, and an invalid regex filters nothing", () => {
  const text = "INFO one\n\x1b[31mERROR\x1b[0m two\ninfo three";
  assert.equal(filterLines(text, "info"), "INFO one\ninfo three");
  assert.equal(filterLines(text, "^error"), "\x1b[31mERROR\x1b[0m two");
  assert.equal(filterLines(text, "("), text);
  assert.equal(filterLines(text, ""), text);
});

test("log buffers keep only the newest bytes, cut at a line start", () => {
  const out = appendCapped("line1\nline2\n", "line3\n", 10);
  assert.equal(out, "line3\n");
  assert.equal(appendCapped("a", "b", 10), "ab");
});
