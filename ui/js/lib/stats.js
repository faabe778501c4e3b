// Percentiles and histograms, computed as the server computes them (api.md §16), so the UI's
// load-test summary and the server's stats card agree.

/** Percentile `p` (0–100) of an ascending array, linear interpolation at rank p/100·(n−1). */
export function percentile(sorted, p) {
  const n = sorted.length;
  if (!n) return null;
  if (n === 1) return sorted[0];
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/**
 * Histogram of positive values: bin count clamp(ceil(log2 n)+1, 5, 20), equal widths, last bin
 * inclusive; all values equal → one bin of size 0. Returns null when there is nothing to show.
 */
export function histogram(values) {
  const xs = values.filter((v) => Number.isFinite(v) && v > 0).sort((a, b) => a - b);
  const n = xs.length;
  if (!n) return null;
  const min = xs[0];
  const max = xs[n - 1];
  const pct = { p50: percentile(xs, 50), p95: percentile(xs, 95), p99: percentile(xs, 99) };
  if (min === max) return { bins: [n], min, max, binSize: 0, ...pct };
  const count = Math.min(20, Math.max(5, Math.ceil(Math.log2(n)) + 1));
  const binSize = (max - min) / count;
  const bins = new Array(count).fill(0);
  for (const v of xs) bins[Math.min(count - 1, Math.floor((v - min) / binSize))]++;
  return { bins, min, max, binSize, ...pct };
}

/** Where a value falls on a histogram's x axis, 0..1 (for the p50/p95/p99 marker lines). */
export function histogramFraction(h, value) {
  if (!h || h.max === h.min) return 0.5;
  return Math.min(1, Math.max(0, (value - h.min) / (h.max - h.min)));
}

/** Token-weighted average speed: Σtokens / Σ(tokens/speed) over rows with a known speed. */
export function weightedSpeed(rows, tokensKey, speedKey) {
  let tokens = 0;
  let seconds = 0;
  for (const r of rows) {
    const t = r.tokens?.[tokensKey] ?? 0;
    const s = r.tokens?.[speedKey] ?? -1;
    if (t > 0 && s > 0) {
      tokens += t;
      seconds += t / s;
    }
  }
  return seconds > 0 ? tokens / seconds : null;
}
