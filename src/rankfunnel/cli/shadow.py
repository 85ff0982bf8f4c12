"""``rankfunnel shadow-report``: summarise a shadow log written by ``serve --shadow`` or ``Pipeline(shadow=...)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rankfunnel.cli import app
from rankfunnel.cli._errors import handle_errors
from rankfunnel.cli.core import JsonFlag
from rankfunnel.errors import InvalidInputError

console = Console()


def _qrels(path: Path, split: str | None) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """The qrels (and query texts, to match hashed records) from a BEIR folder or a qrels TSV."""
    from rankfunnel.eval.datasets import load_beir, read_qrels

    if path.is_dir():
        from rankfunnel.cli.evaluate import pick_split

        ds = load_beir(path, pick_split(path, split))
        return ds.qrels, ds.queries
    if path.is_file():
        return read_qrels(path), {}
    raise InvalidInputError(f"--qrels {path}: no such file or folder; give a BEIR folder or a qrels TSV.")


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


@app.command("shadow-report")
@handle_errors
def shadow_report_cmd(
    log_file: Annotated[Path, typer.Argument(help="The shadow JSONL log (rotated copies FILE.1... are read too).")],
    qrels: Annotated[
        Path | None,
        typer.Option("--qrels", help="BEIR folder or qrels TSV: adds NDCG@10 of both with a paired 95% CI."),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="qrels split of a BEIR folder.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of overlap, tau and latency.")] = None,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")] = 10_000,
    as_json: JsonFlag = False,
) -> None:
    """Summarise shadow records: how often and how much the shadow would change the top-n, its latency, its NDCG."""
    from rankfunnel.eval.shadow_report import plot as plot_records
    from rankfunnel.eval.shadow_report import read_records, summarise

    records = read_records(log_file)
    judged, texts = _qrels(qrels, split) if qrels is not None else (None, None)
    summary = summarise(records, qrels=judged, queries=texts, n_resamples=resamples)
    if plot is not None:
        summary["plot"] = str(plot_records(records, plot))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"shadow {', '.join(summary['shadow'])} vs primary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("requests shadowed", str(summary["requests"]))
    table.add_row("top-n changed", f"{summary['changed']:.1%}")
    table.add_row("top-1 changed", f"{summary['top1_changed']:.1%}")
    table.add_row("mean overlap@n", _fmt(summary["overlap"]))
    table.add_row("mean Kendall tau", _fmt(summary["kendall_tau"]))
    table.add_row("mean score shift", _fmt(summary["score_shift"], "+.3f"))
    ms = summary["shadow_ms"]
    table.add_row("shadow latency p50 / p95 (ms)", f"{ms['p50']:.1f} / {ms['p95']:.1f}")
    if "ndcg@10" in summary:
        lf = summary["ndcg@10"]
        table.add_row("judged queries", str(lf["queries"]))
        table.add_row("NDCG@10 primary / shadow", f"{lf['before']:.4f} / {lf['after']:.4f}")
        table.add_row(
            "lift (95% CI)", f"{lf['delta']:+.4f} [{lf['ci95'][0]:+.4f}, {lf['ci95'][1]:+.4f}] p={lf['p_value']:.3f}"
        )
    console.print(table)
    if plot is not None:
        console.print(f"plot: {plot}", highlight=False)
