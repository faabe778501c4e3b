// Activity: speed histograms and totals, the live in-flight table, the activity history.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON } from "../api.js";
import { formatNumber } from "../lib/format.js";
import { useStore } from "../store.js";
import { ActivityTable } from "../ui/activity-table.js";
import { Card, ErrorNote, usePersisted } from "../ui/common.js";
import { Histogram } from "../ui/histogram.js";
import { InflightCard } from "../ui/inflight-table.js";

function StatsCard() {
  const rev = useStore((s) => s.activityRev);
  const [stats, setStats] = useState(null);
  const [error, setError] = useState(null);
  const [collapsed, setCollapsed] = usePersisted("activity-histogram-collapsed", false);
  useEffect(() => {
    const t = setTimeout(
      () =>
        getJSON("/api/metrics/stats")
          .then((s) => {
            setStats(s);
            setError(null);
          })
          .catch(setError),
      rev > 1 ? 500 : 0,
    );
    return () => clearTimeout(t);
  }, [rev]);
  const totals = [
    ["Requests", stats?.total_requests],
    ["Cached", stats?.total_cache_tokens],
    ["Processed", stats?.total_input_tokens],
    ["Generated", stats?.total_output_tokens],
  ];
  return html`<${Card}
    title="Token speeds"
    actions=${html`<button type="button" class="btn small" aria-expanded=${collapsed ? "false" : "true"} onClick=${() => setCollapsed(!collapsed)}>
      ${collapsed ? "Show charts" : "Hide charts"}
    </button>`}
  >
    <${ErrorNote} error=${error} />
    ${!collapsed &&
    html`<div class="grid two">
      <${Histogram} title="Prompt Processing" data=${stats?.prompt_histogram} color="#f59e0b" />
      <${Histogram} title="Token Generation" data=${stats?.gen_histogram} color="#3b82f6" />
    </div>`}
    <dl class="totals">
      ${totals.map(([k, v]) => html`<div><dt>${k}</dt><dd data-total=${k.toLowerCase()}>${formatNumber(v ?? 0)}</dd></div>`)}
    </dl>
  <//>`;
}

export function ActivityPage() {
  return html`<div class="page">
    <${StatsCard} />
    <${InflightCard} prefix="activity" />
    <${ActivityTable} prefix="activity" />
  </div>`;
}
