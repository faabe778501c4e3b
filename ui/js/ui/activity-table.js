// The server-paged, sortable activity table with column chooser, ID and request-id filters, page size, markdown
// export, capture viewer and a link from each row to its request's story.
//
// With `fleet` ({ node, nodes }) it shows the fleet's shared history instead (/api/history/
// activity): a Node column, a node filter instead of the ID range, and story links only for this
// node's own requests (the others' stories and captures live on their nodes).

import { html, useEffect, useRef, useState } from "../../vendor/htm-preact-standalone.mjs";
import { getJSON, query } from "../api.js";
import { COLUMN_BY_ID, columnsFor, sanitizeColumns } from "../lib/activity-columns.js";
import { activityToMarkdown } from "../lib/export-md.js";
import { mergeOrder } from "../lib/order.js";
import { useStore } from "../store.js";
import { CaptureDialog } from "./capture-dialog.js";
import { Card, ColumnChooser, CopyButton, Dialog, ErrorNote, useInterval, usePersisted } from "./common.js";

const PAGE_SIZES = [10, 25, 50, 100, 250, 500];
const FLEET_REFRESH_MS = 5000;

/** Page numbers to show: at most 7 around the current page. */
export function pageWindow(page, total) {
  const n = Math.min(7, total);
  let start = Math.max(1, page - 3);
  start = Math.min(start, Math.max(1, total - n + 1));
  return Array.from({ length: n }, (_, i) => start + i);
}

function requestIdOf(r) {
  return r.request_id || r.metadata?.request_id || "";
}

export function ActivityTable({ prefix = "activity", model, compact = false, fleet = null }) {
  const pageKey = prefix === "activity" ? "activity-page-size" : `${prefix}-activity-page-size`;
  const filterKey = prefix === "activity" ? "activity-filters" : `${prefix}-activity-filters`;
  const [pageSize, setPageSize] = usePersisted(pageKey, 25);
  const [filters, setFilters] = usePersisted(filterKey, { min_id: "", max_id: "", node: "" });
  const [filterOpen, setFilterOpen] = usePersisted(`${prefix}-filter-open`, false);
  const [visibleRaw, setVisible] = usePersisted(`${prefix}-columns`, null);
  const [orderRaw, setOrder] = usePersisted(`${prefix}-column-order`, null);
  const columns = columnsFor(Boolean(fleet));
  const visible = sanitizeColumns(visibleRaw, Boolean(fleet));
  const ids = mergeOrder(orderRaw, columns.map((c) => c.id));
  const [page, setPage] = useState(1);
  const [sort, setSort] = useState({ key: "id", order: "desc" });
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [capture, setCapture] = useState(null);
  const [exporting, setExporting] = useState(false);
  const rev = useStore((s) => s.activityRev);
  const lastFetch = useRef(0);
  const throttle = useRef(null);
  const seq = useRef(0); // only the newest request's answer is shown
  const fetchRef = useRef(null); // the throttled timer calls the latest fetchPage
  useInterval(15000); // relative times stay honest

  const fetchPage = async () => {
    lastFetch.current = Date.now();
    const mine = ++seq.current;
    try {
      const q = query({
        page,
        limit: pageSize,
        sort: sort.key,
        order: sort.order,
        model: model ? [model] : undefined,
        ...(fleet
          ? { node: filters.node ? [filters.node] : undefined }
          : { min_id: filters.min_id, max_id: filters.max_id, request_id: filters.request_id || undefined }),
      });
      const d = await getJSON(`${fleet ? "/api/history/activity" : "/api/metrics/activity"}${q}`);
      if (mine !== seq.current) return;
      setData(d);
      setError(null);
    } catch (e) {
      if (mine !== seq.current) return;
      setError(e);
    }
  };
  fetchRef.current = fetchPage;
  useEffect(() => {
    fetchPage();
  }, [page, pageSize, sort.key, sort.order, filters.min_id, filters.max_id, filters.request_id, filters.node, model, Boolean(fleet)]);
  // Other nodes' requests raise no event here: the fleet's first page polls every 5 s.
  useEffect(() => {
    if (!fleet || page !== 1) return;
    const timer = setInterval(() => fetchRef.current(), FLEET_REFRESH_MS);
    return () => clearInterval(timer);
  }, [Boolean(fleet), page]);
  // New activity refreshes at most once a second, and only on page 1 (later pages stay put).
  useEffect(() => {
    if (page !== 1 || !rev) return;
    const wait = Math.max(0, 1000 - (Date.now() - lastFetch.current));
    clearTimeout(throttle.current);
    throttle.current = setTimeout(() => fetchRef.current(), wait);
    return () => clearTimeout(throttle.current);
  }, [rev]);

  const cols = ids.filter((id) => visible.includes(id)).map((id) => COLUMN_BY_ID[id]);
  const rows = data?.data || [];
  const totalPages = data?.total_pages || 0;
  const filterActive = fleet ? Boolean(filters.node) : Boolean(filters.min_id || filters.max_id || filters.request_id);
  const now = Date.now();
  const toggleSort = (c) => {
    if (!c.sort) return;
    setPage(1);
    setSort((s) => (s.key === c.sort ? { key: c.sort, order: s.order === "desc" ? "asc" : "desc" } : { key: c.sort, order: "desc" }));
  };
  const cell = (c, r) => {
    if (c.id === "model" && (!fleet || r.node === fleet.node)) {
      return html`<a href=${`#/models/${encodeURIComponent(r.model)}`}>${r.model}</a>`;
    }
    if (c.id === "capture") {
      return r.has_capture
        ? html`<button type="button" class="btn small" onClick=${() => setCapture(r)} aria-label=${`View capture ${r.id}`}>View</button>`
        : "-";
    }
    if (c.id === "id") {
      const rid = requestIdOf(r);
      const ours = !fleet || r.node === fleet.node; // another node's story lives on that node
      return rid && ours
        ? html`<a href=${`#/story/${encodeURIComponent(rid)}`} title="This request's story">${r.id}</a>`
        : String(r.id);
    }
    if (c.id === "status") {
      const bad = r.resp_status_code >= 400;
      return html`<span class=${bad ? "tag bad" : "tag ok"} title=${r.error_msg || ""}>${r.resp_status_code}</span>`;
    }
    if (c.id === "meta") {
      const entries = Object.entries(r.metadata || {});
      return entries.length ? html`<span title=${entries.map(([k, v]) => `${k}: ${v}`).join("\n")}>…</span>` : "-";
    }
    if (c.id === "time") return html`<time datetime=${r.timestamp}>${c.text(r, now)}</time>`;
    return c.text(r, now);
  };
  const title = compact ? `Recent Activity (${data?.total ?? 0})` : fleet ? "Fleet activity" : "Activity";
  return html`<${Card}
    title=${title}
    actions=${html`
      <button type="button" class="btn small" onClick=${() => setExporting(true)} disabled=${!rows.length}>Export as markdown</button>
      <button
        type="button"
        class="btn small"
        aria-expanded=${filterOpen ? "true" : "false"}
        onClick=${() => setFilterOpen(!filterOpen)}
      >
        Filters${filterActive && html`<span class="filter-dot" aria-label="(active)"></span>`}
      </button>
      <${ColumnChooser}
        columns=${columns}
        visible=${visible}
        order=${ids}
        onChange=${(v, o) => {
          setVisible(v);
          setOrder(o);
        }}
      />
    `}
  >
    ${filterOpen &&
    html`<div class="filter-drawer" role="group" aria-label="Activity filters">
      ${fleet
        ? html`<label>Node
            <select value=${filters.node || ""} onChange=${(e) => { setPage(1); setFilters({ ...filters, node: e.target.value }); }}>
              <option value="">All nodes</option>
              ${(fleet.nodes || []).map((n) => html`<option value=${n}>${n}</option>`)}
            </select>
          </label>`
        : html`
          <label>ID from <input type="number" min="1" value=${filters.min_id} onChange=${(e) => { setPage(1); setFilters({ ...filters, min_id: e.target.value }); }} /></label>
          <label>ID to <input type="number" min="1" value=${filters.max_id} onChange=${(e) => { setPage(1); setFilters({ ...filters, max_id: e.target.value }); }} /></label>
          <label title="Our request id (the X-Request-ID of its answer) or the client's own X-Request-ID">Request ID
            <input type="search" maxlength="128" value=${filters.request_id || ""} onChange=${(e) => { setPage(1); setFilters({ ...filters, request_id: e.target.value.trim() }); }} />
          </label>`}
      <button type="button" class="btn small" disabled=${!filterActive} onClick=${() => setFilters({ min_id: "", max_id: "", request_id: "", node: "" })}>Clear filters</button>
      <label>Rows
        <select value=${pageSize} onChange=${(e) => { setPage(1); setPageSize(Number(e.target.value)); }}>
          ${PAGE_SIZES.map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
      </label>
    </div>`}
    <${ErrorNote} error=${error} />
    <div class="table-wrap scroll-60">
      <table class="table sticky" aria-label="Activity">
        <thead>
          <tr>
            ${cols.map(
              (c) => html`<th scope="col" title=${c.title} aria-sort=${sort.key === c.sort ? (sort.order === "asc" ? "ascending" : "descending") : undefined}>
                ${c.sort
                  ? html`<button type="button" class="th-sort" onClick=${() => toggleSort(c)}>
                      ${c.label}${sort.key === c.sort ? (sort.order === "asc" ? " ▲" : " ▼") : ""}
                    </button>`
                  : c.label}
              </th>`,
            )}
          </tr>
        </thead>
        <tbody>
          ${rows.length === 0
            ? html`<tr><td colspan=${cols.length} class="empty">${data ? "No activity yet" : error ? "Could not load the activity" : "Loading…"}</td></tr>`
            : rows.map((r) => html`<tr data-activity-id=${r.id}>${cols.map((c) => html`<td>${cell(c, r)}</td>`)}</tr>`)}
        </tbody>
      </table>
    </div>
    <nav class="pager" aria-label="Activity pages">
      <span>Page ${totalPages ? page : 0} of ${totalPages} · ${data?.total ?? 0} total</span>
      <span class="pager-buttons">
        <button type="button" class="btn small" disabled=${page <= 1} onClick=${() => setPage(1)} aria-label="First page">«</button>
        <button type="button" class="btn small" disabled=${page <= 1} onClick=${() => setPage(page - 1)} aria-label="Previous page">‹</button>
        ${pageWindow(page, totalPages).map(
          (p) => html`<button type="button" class=${p === page ? "btn small active" : "btn small"} aria-current=${p === page ? "page" : undefined} onClick=${() => setPage(p)}>${p}</button>`,
        )}
        <button type="button" class="btn small" disabled=${page >= totalPages} onClick=${() => setPage(page + 1)} aria-label="Next page">›</button>
        <button type="button" class="btn small" disabled=${page >= totalPages} onClick=${() => setPage(totalPages)} aria-label="Last page">»</button>
      </span>
    </nav>
    ${capture && html`<${CaptureDialog} row=${capture} onClose=${() => setCapture(null)} />`}
    ${exporting && html`<${ExportDialog} rows=${rows} columns=${ids.filter((id) => visible.includes(id))} onClose=${() => setExporting(false)} />`}
  <//>`;
}

function ExportDialog({ rows, columns, onClose }) {
  const title = useStore((s) => s.title);
  const [text] = useState(() => activityToMarkdown(rows, columns, new Date(), title));
  return html`<${Dialog} title="Export as markdown" onClose=${onClose} wide>
    <div class="row-actions"><${CopyButton} text=${text} /></div>
    <label class="sr-only" for="export-md">Markdown</label>
    <textarea id="export-md" class="mono export" readonly value=${text} rows="18"></textarea>
  <//>`;
}
