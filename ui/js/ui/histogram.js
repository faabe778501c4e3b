// A speed histogram as SVG: bars per bin with tooltips, 0/50/100 % ticks, min/max labels and
// dashed p50 / p95 / p99 lines.

import { html } from "../../vendor/htm-preact-standalone.mjs";
import { histogramFraction } from "../lib/stats.js";

const W = 1200;
const H = 250;
const PAD = { l: 48, r: 12, t: 14, b: 34 };

export function Histogram({ data, title, color }) {
  if (!data || !data.bins?.length) {
    return html`<figure class="histogram"><figcaption>${title}</figcaption><p class="empty">No data yet</p></figure>`;
  }
  const maxCount = Math.max(...data.bins);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const bw = iw / data.bins.length;
  const x = (f) => PAD.l + f * iw;
  const lines = [
    ["p50", data.p50, "var(--muted)"],
    ["p95", data.p95, "#f97316"],
    ["p99", data.p99, "#22c55e"],
  ].filter(([, v]) => v != null);
  const fmt = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
  return html`<figure class="histogram">
    <figcaption>
      ${title}
      <span class="legend">
        ${lines.map(([n, v, c]) => html`<span style=${`color:${c}`}>${n} ${fmt(v)} t/s</span>`)}
      </span>
    </figcaption>
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${`${title} histogram`}>
      ${[0, 0.5, 1].map(
        (f) => html`<g>
          <line x1=${PAD.l} x2=${W - PAD.r} y1=${PAD.t + ih * (1 - f)} y2=${PAD.t + ih * (1 - f)} class="grid" />
          <text x=${PAD.l - 6} y=${PAD.t + ih * (1 - f) + 4} text-anchor="end" class="axis">${Math.round(maxCount * f)}</text>
        </g>`,
      )}
      ${data.bins.map((c, i) => {
        const h = maxCount ? (c / maxCount) * ih : 0;
        const lo = data.min + i * data.binSize;
        const hi = lo + data.binSize;
        return html`<rect x=${PAD.l + i * bw + 1} y=${PAD.t + ih - h} width=${Math.max(1, bw - 2)} height=${h} fill=${color}>
          <title>${data.binSize ? `${fmt(lo)}–${fmt(hi)} t/s` : `${fmt(lo)} t/s`}: ${c}</title>
        </rect>`;
      })}
      ${lines.map(([n, v, c]) => {
        const px = x(histogramFraction(data, v));
        return html`<line x1=${px} x2=${px} y1=${PAD.t} y2=${PAD.t + ih} stroke=${c} stroke-dasharray="6 4" stroke-width="2">
          <title>${n}: ${fmt(v)} t/s</title>
        </line>`;
      })}
      <text x=${PAD.l} y=${H - 10} class="axis">${fmt(data.min)} t/s</text>
      <text x=${W - PAD.r} y=${H - 10} text-anchor="end" class="axis">${fmt(data.max)} t/s</text>
    </svg>
  </figure>`;
}
