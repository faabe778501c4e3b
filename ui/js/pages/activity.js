// Activity: speed histograms and totals, the live in-flight table, the activity history.

import { html, useEffect, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON, isMissingRoute } from "../api.js";
import { formatNumber } from "../lib/format.js";
import { useStore } from "../store.js";
import { ActivityTable } from "../ui/activity-table.js";
import { Card, ErrorNote, usePersisted } from "../ui/common.js";
import { Histogram } from "../ui/histogram.js";
import { InflightCard } from "../ui/inflight-table.js";

function StatsCard({ title = "Token speeds" }) {
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
    title=${title}
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

/**
 * The fleet this node belongs to, when its history database is shared (llamaswap-es.
 * historyDatabase): [{ node, nodes }, error]. The fleet is null otherwise, and where the server
 * has no /api/history (an older one): the page is then this node's own activity, as always.
 * A node list that cannot be read (the database is down) leaves the filter with this node only;
 * the table then says why the fleet's rows cannot be read.
 */
function useFleet() {
  const [fleet, setFleet] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let live = true;
    getJSON("/api/history")
      .then(async (status) => {
        if (!status?.shared) return;
        let nodes = [];
        try {
          nodes = ((await getJSON("/api/history/nodes")).nodes || []).map((n) => n.node);
        } catch (err) {
          if (live) setError(err);
        }
        if (live) setFleet({ node: status.node, nodes: nodes.includes(status.node) ? nodes : [status.node, ...nodes] });
      })
      .catch((err) => {
        if (live && !isMissingRoute(err)) setError(err);
      });
    return () => {
      live = false;
    };
  }, []);
  return [fleet, error];
}

export function ActivityPage() {
  const [fleet, fleetError] = useFleet();
  return html`<div class="page">
    <${StatsCard} title=${fleet ? `Token speeds (${fleet.node})` : "Token speeds"} />
    <${InflightCard} prefix="activity" />
    <${ErrorNote} error=${fleetError} />
    ${fleet
      ? html`<${ActivityTable} key="fleet" prefix="fleet" fleet=${fleet} />`
      : html`<${ActivityTable} key="local" prefix="activity" />`}
  </div>`;
}
