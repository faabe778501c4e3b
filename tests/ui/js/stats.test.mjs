import assert from "node:assert/strict";
import { test } from "node:test";
import { histogram, histogramFraction, percentile, weightedSpeed } from "../../../ui/js/lib/stats.js";

test("percentiles interpolate linearly at rank p/100·(n−1), as the server does", () => {
  const xs = [10, 20, 30, 40];
  assert.equal(percentile(xs, 50), 25);
  assert.equal(percentile(xs, 0), 10);
  assert.equal(percentile(xs, 100), 40);
  assert.ok(Math.abs(percentile(xs, 95) - 38.5) < 1e-9);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), null);
});

test("histogram bins: clamp(ceil(log2 n)+1, 5, 20), last bin inclusive, positives only", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  const h = histogram([...values, 0, -1, Number.NaN]);
  assert.equal(h.bins.length, 8);
  assert.equal(h.bins.reduce((a, b) => a + b, 0), 100);
  assert.equal(h.min, 1);
  assert.equal(h.max, 100);
  assert.equal(h.p50, 50.5);
  assert.equal(histogram([1, 2]).bins.length, 5);
  assert.equal(histogram([]), null);
});

test("equal values give one bin of size zero", () => {
  assert.deepEqual(histogram([3, 3, 3]), { bins: [3], min: 3, max: 3, binSize: 0, p50: 3, p95: 3, p99: 3 });
  assert.equal(histogramFraction(histogram([3, 3]), 3), 0.5);
  assert.equal(histogramFraction({ min: 0, max: 10 }, 2.5), 0.25);
});

test("weighted speed is tokens over time, skipping unknown speeds", () => {
  const rows = [
    { tokens: { output_tokens: 100, tokens_per_second: 50 } }, // 2 s
    { tokens: { output_tokens: 100, tokens_per_second: 25 } }, // 4 s
    { tokens: { output_tokens: 100, tokens_per_second: -1 } },
  ];
  assert.ok(Math.abs(weightedSpeed(rows, "output_tokens", "tokens_per_second") - 200 / 6) < 1e-9);
  assert.equal(weightedSpeed([], "output_tokens", "tokens_per_second"), null);
});
