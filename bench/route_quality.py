"""Does a faster CPU route keep ranking quality? NDCG@10 of each route against fp32, on real datasets.

For each dataset the dense stage-1 top ``--top-k`` of every test query (the cached all-MiniLM-L6-v2 index
that ``rankfunnel eval`` builds) is reranked by the same trained cross-encoder through each route of
``FastEncoderReranker`` (torch-fp32, torch-bf16, torch-int8, ...) and by the sentence-transformers
``CrossEncoder`` reference (fp32). The table gives NDCG@10 per route, its difference to the reference, the
paired 95% interval of that difference, Spearman of the scores against the reference, and pairs/s.
The issue's bar: a quantised route stays within 0.005 NDCG@10 of fp32.

Needs a cross-encoder with a trained head (``make reranker`` builds ``models/scifact-minilm-reranker``);
a random head would make the NDCG comparison meaningless. Skips with a message when ``../shared/datasets``
or the model is missing.

Run: ``.venv/bin/python bench/route_quality.py [--model DIR] [--datasets scifact,nfcorpus] [--top-k 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/scifact-minilm-reranker", help="trained cross-encoder folder")
    p.add_argument("--datasets", default="scifact,nfcorpus", help="comma-separated names under --datasets-dir")
    p.add_argument("--datasets-dir", default=str(DATASETS))
    p.add_argument("--split", default="test")
    p.add_argument("--routes", default="torch-bf16,torch-int8", help="FastEncoderReranker routes to compare")
    p.add_argument("--top-k", type=int, default=20, help="dense candidates reranked per query")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="out/bench/route_quality.json")
    return p.parse_args(argv)


def _rerank_run(reranker: Any, lists: dict[str, tuple[str, list[str], list[str]]]) -> tuple[dict, list, float]:
    """Scores of every (query, candidate) through ``reranker``; returns (run, flat scores, seconds)."""
    run: dict[str, dict[str, float]] = {}
    flat: list[float] = []
    t = time.perf_counter()
    for qid, (query, ids, texts) in lists.items():
        scores = [float(s) for s in reranker.score(query, texts)]
        run[qid] = dict(zip(ids, scores, strict=True))
        flat.extend(scores)
    return run, flat, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.datasets_dir)
    model = Path(args.model)
    if not root.is_dir():
        print(f"skipped: {root} does not exist (put the shared datasets beside the repository)")
        return 0
    if not (model / "config.json").is_file():
        print(f"skipped: no trained cross-encoder in {model}; run `make reranker` first (or pass --model DIR)")
        return 0
    import torch
    from rich.console import Console
    from rich.table import Table
    from scipy.stats import spearmanr

    from rankfunnel.embed import make_embedder
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.metrics import evaluate
    from rankfunnel.eval.runner import dataset_collection
    from rankfunnel.eval.stats import paired_lift
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker
    from rankfunnel.rerank.encoder_fast import FastEncoderReranker

    torch.set_num_threads(args.threads)
    console = Console(width=150)
    embedder = make_embedder()
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    results: dict[str, Any] = {"model": str(model), "top_k": args.top_k, "threads": args.threads, "datasets": {}}
    table = Table(title=f"NDCG@10 by CPU route, dense top {args.top_k} reranked by {model}")
    for col in ("dataset", "queries", "route", "NDCG@10", "diff vs fp32", "95% CI", "Spearman", "pairs/s"):
        table.add_column(col, justify="left" if col in ("dataset", "route") else "right")
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if not (root / name).is_dir():
            console.print(f"[yellow]skipped {name}: {root / name} does not exist[/]")
            continue
        ds = load_beir(root / name, args.split)
        col = dataset_collection(ds, embedder, show_progress=True)
        qids = sorted(ds.queries)
        hits = col.search_many([ds.queries[q] for q in qids], k=args.top_k, retriever="dense")
        lists = {}
        for q, hs in zip(qids, hits, strict=True):
            hs = [h for h in hs if h.id != ds.self_ids.get(q) and h.document is not None]
            lists[q] = (ds.queries[q], [h.id for h in hs], [h.document.content for h in hs if h.document])
        pairs = sum(len(v[1]) for v in lists.values())
        stage1 = {q: {h.id: float(h.stage1_score) for h in hs} for q, hs in zip(qids, hits, strict=True)}
        base = evaluate(ds.qrels, stage1, ["ndcg@10"])
        reference = CrossEncoderReranker(str(model), device="cpu")
        variants: list[tuple[str, Any]] = [("sentence-transformers fp32", reference)]
        variants += [(r, FastEncoderReranker(str(model), device="cpu", route=r)) for r in routes]
        ref_run: dict | None = None
        ref_flat: list[float] = []
        rows = {"stage1_ndcg@10": base.mean["ndcg@10"], "queries": base.queries, "pairs": pairs, "routes": {}}
        table.add_row(name, str(base.queries), "stage 1 (dense), no rerank", f"{base.mean['ndcg@10']:.4f}",
                      "", "", "", "")
        for label, reranker in variants:
            _rerank_run(reranker, dict(list(lists.items())[:2]))  # warm-up (bf16/int8 conversion, caches)
            run, flat, secs = _rerank_run(reranker, lists)
            res = evaluate(ds.qrels, run, ["ndcg@10"])
            if ref_run is None:
                ref_run, ref_flat, ref_res = run, flat, res
            lift = paired_lift(ref_res.per_query["ndcg@10"], res.per_query["ndcg@10"])
            rho = float(spearmanr(ref_flat, flat).statistic) if run is not ref_run else 1.0
            diff = res.mean["ndcg@10"] - ref_res.mean["ndcg@10"]
            rows["routes"][label] = {
                "ndcg@10": res.mean["ndcg@10"], "diff_vs_fp32": diff, "ci95": [lift.ci_low, lift.ci_high],
                "spearman_vs_fp32": rho, "pairs_per_s": pairs / secs,
            }
            table.add_row("", "", label, f"{res.mean['ndcg@10']:.4f}", f"{diff:+.4f}",
                          f"[{lift.ci_low:+.4f}, {lift.ci_high:+.4f}]", f"{rho:.4f}", f"{pairs / secs:.1f}")
        results["datasets"][name] = rows
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    worst = max(
        (abs(r["diff_vs_fp32"]) for d in results["datasets"].values() for k, r in d["routes"].items()
         if k != "sentence-transformers fp32"),
        default=float("nan"),
    )
    print(f"max_abs_ndcg10_diff_vs_fp32: {worst:.4f}  (JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
