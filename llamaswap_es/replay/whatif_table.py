"""The what-if report: per-model loads, swaps, served, rejected and queue wait p50/p95/max,
the recorded run and the simulated one side by side, as a text table or as JSON."""

from __future__ import annotations

from typing import Any

from llamaswap_es.replay.traffic import Figures

METRICS = ("loads", "swaps", "served", "rejected", "wait_p50_ms", "wait_p95_ms", "wait_max_ms")
_HEADINGS = ("loads", "swaps", "served", "rejected", "p50 ms", "p95 ms", "max ms")


def percentile(values: list[int], pct: float) -> int:
    """Nearest-rank percentile (0 for no values): p95 of 20 waits is the 19th smallest."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[min(len(ordered), int(rank)) - 1]


def _row(waits: list[int], loads: int, swaps: int, rejected: int) -> dict[str, int]:
    return {
        "loads": loads,
        "swaps": swaps,
        "served": len(waits),
        "rejected": rejected,
        "wait_p50_ms": percentile(waits, 50),
        "wait_p95_ms": percentile(waits, 95),
        "wait_max_ms": max(waits) if waits else 0,
    }


def summarise(figures: Figures) -> dict[str, dict[str, int]]:
    """Per model (and `TOTAL`) the figures of `METRICS`."""
    models = sorted(
        m for m in set(figures.loads) | set(figures.waits_ms) | set(figures.rejected) if m != "?"
    )
    out = {
        m: _row(
            figures.waits_ms.get(m, []),
            figures.loads.get(m, 0),
            figures.swaps.get(m, 0),
            figures.rejected.get(m, 0),
        )
        for m in models
    }
    all_waits = [w for ws in figures.waits_ms.values() for w in ws]
    out["TOTAL"] = _row(
        all_waits,
        sum(figures.loads.values()),
        sum(figures.swaps.values()),
        sum(figures.rejected.values()),
    )
    return out


def chosen_targets(figures: Figures) -> dict[str, int]:
    """How many selector requests went to each target (sorted by target)."""
    counts: dict[str, int] = {}
    for target in figures.choices.values():
        counts[target] = counts.get(target, 0) + 1
    return dict(sorted(counts.items()))


def report_json(runs: list[Figures], notes: list[str]) -> dict[str, Any]:
    return {
        "runs": [
            {
                "label": r.label,
                "policy": r.policy,
                "models": summarise(r),
                "selector_choices": chosen_targets(r),
            }
            for r in runs
        ],
        "assumptions": notes,
    }


def render_table(left: Figures, right: Figures) -> str:
    """Two runs side by side: each metric has a column for `left` and one for `right`."""
    a, b = summarise(left), summarise(right)
    models = [*sorted((set(a) | set(b)) - {"TOTAL"}), "TOTAL"]
    rows = [["model", *(tag for _ in _HEADINGS for tag in ("rec", "sim"))]]
    for model in models:
        row = [model]
        for metric in METRICS:
            row += [str(a.get(model, {}).get(metric, 0)), str(b.get(model, {}).get(metric, 0))]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, heading in enumerate(_HEADINGS):  # each heading spans its two columns
        i = 1 + 2 * n
        short = len(heading) - (widths[i] + 1 + widths[i + 1])
        if short > 0:
            widths[i] += short // 2
            widths[i + 1] += short - short // 2
    top = [" " * widths[0]]
    top += [h.center(widths[1 + 2 * n] + 1 + widths[2 + 2 * n]) for n, h in enumerate(_HEADINGS)]
    lines = [
        f"rec = {left.label}, from the log; sim = {right.label}, simulated",
        "  ".join(top).rstrip(),
    ]
    for r in rows:
        cells = [r[0].ljust(widths[0])]
        cells += [
            f"{r[i].rjust(widths[i])} {r[i + 1].rjust(widths[i + 1])}" for i in range(1, len(r), 2)
        ]
        lines.append("  ".join(cells).rstrip())
    for tag, figures in (("rec", left), ("sim", right)):
        if figures.choices:  # selectors were used: where their requests went
            chosen = ", ".join(f"{t} {n}" for t, n in chosen_targets(figures).items())
            lines.append(f"selector choices ({tag}): {chosen}")
    return "\n".join(lines)
