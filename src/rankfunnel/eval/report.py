"""Evaluation reports: a JSON summary and a self-contained HTML page with matplotlib plots.

Plots are written as PNG files beside the HTML (so that docs can link them) and embedded in the HTML as
base64, so the page opens anywhere on its own.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel._optional import require


def _plt() -> Any:
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")  # files only, never a window
    return require("matplotlib.pyplot", "eval")


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    """Lay out, write and close ``fig``; return its path."""
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_ndcg_bars(
    values: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    metric: str = "NDCG@10",
    title: str | None = None,
) -> Path:
    """Grouped bars: one group per dataset, one bar per series (e.g. ``{"scifact": {"stage 1": .6, ...}}``).

    Examples:
        >>> plot_ndcg_bars({"adi": {"stage 1": 0.4, "reranked": 0.5}}, "/tmp/ndcg.png")  # doctest: +SKIP
    """
    plt = _plt()
    datasets = list(values)
    series: list[str] = []
    for row in values.values():
        series.extend(s for s in row if s not in series)
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(datasets) + 2), 4.2), dpi=110)
    x = np.arange(len(datasets))
    for i, s in enumerate(series):
        ys = [values[d].get(s, np.nan) for d in datasets]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, ys, width, label=s)
        for b, y in zip(bars, ys, strict=True):
            if np.isfinite(y):
                ax.annotate(
                    f"{y:.2f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7
                )
    ax.set_xticks(x, datasets, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_ylim(
        0, min(1.05, max([v for r in values.values() for v in r.values() if np.isfinite(v)] + [0.1]) * 1.18)
    )
    ax.set_title(title or f"{metric} per dataset")
    ax.legend(fontsize=8, ncol=min(4, len(series)))
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def plot_delta_histogram(
    deltas: Mapping[str, Sequence[float]], path: str | Path, *, metric: str = "NDCG@10"
) -> Path:
    """Histogram of per-query ``after - before`` differences, one series per dataset."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.0), dpi=110)
    bins = np.linspace(-1, 1, 41)
    for name, d in deltas.items():
        arr = np.asarray(d, dtype=float)
        ax.hist(arr, bins=bins, alpha=0.55, label=f"{name} (mean {arr.mean():+.3f}, n={arr.size})")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"per-query {metric} change (reranked - stage 1)")
    ax.set_ylabel("queries")
    ax.set_title(f"Per-query {metric} change")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_latency(
    samples: Mapping[str, Sequence[float]], path: str | Path, *, title: str = "Per-query latency"
) -> Path:
    """Latency distribution (ms, log scale) per series, with p50/p95 marked in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.0), dpi=110)
    finite = [np.asarray(v, dtype=float) for v in samples.values() if len(v)]
    lo = max(1e-3, min(float(a.min()) for a in finite)) if finite else 0.01
    hi = max(float(a.max()) for a in finite) if finite else 1.0
    bins = np.geomspace(lo, max(hi, lo * 1.01), 40)
    for name, v in samples.items():
        arr = np.asarray(v, dtype=float)
        if arr.size == 0:
            continue
        p50, p95 = np.percentile(arr, [50, 95])
        ax.hist(
            np.clip(arr, lo, None), bins=bins, alpha=0.55, label=f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
        )
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per query (log scale)")
    ax.set_ylabel("queries")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_sweep(
    curves: Mapping[str, Mapping[float, float]],
    path: str | Path,
    *,
    xlabel: str = "dense weight w",
    metric: str = "NDCG@10",
) -> Path:
    """One line per dataset: metric against the fusion weight."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, curve in curves.items():
        xs = sorted(curve)
        ax.plot(xs, [curve[x] for x in xs], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"Hybrid fusion sweep ({metric})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(plt, fig, path)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"/></figure>'


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, float) for x in v):
            return f"[{v[0]:+.4f}, {v[1]:+.4f}]"
        return html.escape("" if v is None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
    "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}"
)


def write_report(
    summaries: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    deltas: Mapping[str, Sequence[float]] | None = None,
    latencies: Mapping[str, Sequence[float]] | None = None,
    title: str = "rankfunnel evaluation",
    metric: str = "ndcg@10",
) -> dict[str, Path]:
    """Write ``summary.json``, the plots and ``report.html`` into ``out_dir``; return their paths.

    Args:
        summaries: one JSON summary per dataset (the ``rankfunnel eval --json`` shape).
        out_dir: output folder (created).
        deltas: per-query metric changes per dataset (for the histogram); skipped when empty.
        latencies: per-query latencies in ms per series (for the distribution plot).
        title: page title.
        metric: the metric plotted before/after.

    Examples:
        >>> summary = {"dataset": "adi", "stage1": {"ndcg@10": 0.4}, "reranked": None}
        >>> write_report([summary], "/tmp/r")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(list(summaries), indent=2, sort_keys=False), encoding="utf-8")
    paths = {"summary": summary_path, **_plots(summaries, out, deltas, latencies, metric)}
    figs = [paths[k] for k in ("ndcg_plot", "delta_plot", "latency_plot") if k in paths]
    report_path = out / "report.html"
    report_path.write_text(_html(summaries, figs, title), encoding="utf-8")
    paths["html"] = report_path
    return paths


def _plots(
    summaries: Sequence[Mapping[str, Any]],
    out: Path,
    deltas: Mapping[str, Sequence[float]] | None,
    latencies: Mapping[str, Sequence[float]] | None,
    metric: str,
) -> dict[str, Path]:
    """The report's plots that have data: before/after bars, per-query deltas, latencies."""
    paths: dict[str, Path] = {}
    bars: dict[str, dict[str, float]] = {}
    for s in summaries:
        row = {"stage 1": float(s["stage1"].get(metric, np.nan))}
        if s.get("reranked"):
            row["reranked"] = float(s["reranked"].get(metric, np.nan))
        bars[f"{s['dataset']} ({s.get('retriever', '')})".replace(" ()", "")] = row
    if bars:
        paths["ndcg_plot"] = plot_ndcg_bars(bars, out / "ndcg_before_after.png", metric=metric.upper())
    if deltas and any(len(v) for v in deltas.values()):
        paths["delta_plot"] = plot_delta_histogram(
            {k: v for k, v in deltas.items() if len(v)}, out / "per_query_delta.png", metric=metric.upper()
        )
    if latencies and any(len(v) for v in latencies.values()):
        paths["latency_plot"] = plot_latency(latencies, out / "latency.png")
    return paths


_LIFT_COLUMNS = [
    "dataset", "metric", "before", "after", "delta", "ci95", "p_value", "helped", "hurt", "unchanged", "queries",
]


def _html(summaries: Sequence[Mapping[str, Any]], figs: Sequence[Path], title: str) -> str:
    """The report page: metric and lift tables, the plots, and the raw summaries."""
    metric_cols = sorted({k for s in summaries for k in s["stage1"] if "@" in k})
    rows = []
    for s in summaries:
        for stage in ("stage1", "reranked"):
            vals = s.get(stage)
            if vals:
                rows.append({"dataset": s["dataset"], "stage": stage, "queries": s.get("queries"), **vals})
    lift_rows = [
        {
            "dataset": s["dataset"],
            **{k: v for k, v in lf.items() if k != "metric"},
            "metric": lf.get("metric"),
        }
        for s in summaries
        for lf in (s.get("lift") or {}).values()
        if isinstance(lf, dict)
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _table(rows, ["dataset", "stage", "queries", *metric_cols]),
    ]
    if lift_rows:
        parts += [
            "<h2>Lift of reranking (paired bootstrap 95% CI, randomisation p-value)</h2>",
            _table(lift_rows, _LIFT_COLUMNS),
        ]
    parts += [
        "<h2>Plots</h2>",
        *(_img(f) for f in figs),
        "<h2>Raw summary</h2><pre>",
        html.escape(json.dumps(list(summaries), indent=2)),
        "</pre></body></html>",
    ]
    return "\n".join(parts)
