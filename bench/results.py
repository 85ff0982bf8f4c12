"""`make results`: stage-1 quality (bm25, dense, hybrid) and the fusion sweep on every shared dataset.

Regenerates docs/results.md and its plots under docs/img/. Skips cleanly (exit 0) when the datasets folder is
absent. Indexes are built once per dataset under .cache/indexes and reused. Reranking is added where a
reranker is reachable offline: the one `make reranker` trains (models/scifact-minilm-reranker).

    python bench/results.py --datasets-dir ../shared/datasets [--only scifact,adi] [--rerank-top-k 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
TRAINED = ROOT / "models" / "scifact-minilm-reranker"
METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def bm25_references(readme: Path) -> dict[str, float]:
    """BM25 NDCG@10 references listed in the datasets README ("scifact 0.659 (...)")."""
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    m = re.search(r"Reference figures, plain BM25[^\n]*\n([^\n]+)", text)
    return {k: float(v) for k, v in re.findall(r"([a-z_]+) (0\.\d+)", m.group(1))} if m else {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--json-out", type=Path, default=ROOT / "out" / "results.json")
    p.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "indexes")
    p.add_argument("--embedder", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument(
        "--reranker", default="auto", help="'auto' = models/scifact-minilm-reranker if present; 'none'"
    )
    p.add_argument("--rerank-top-k", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="only rewrite the docs from saved results JSON files (merged in dataset order)",
    )
    p.add_argument("--pending", default="", help="with --from-json: datasets missing from the saved results")
    p.add_argument("--pending-reason", default="", help="with --pending: why they are missing")
    p.add_argument("--note", default="", help="with --from-json: a paragraph added under the header")
    return p.parse_args(argv)


def run_dataset(folder: Path, emb: Any, args: argparse.Namespace, reranker: Any) -> dict[str, Any]:
    from rankfunnel.cli.evaluate import pick_split
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.metrics import evaluate, metric_names
    from rankfunnel.eval.runner import dataset_collection, evaluate_dataset
    from rankfunnel.eval.sweep import _cut, config_for, fuse_runs, retrieve_runs, sweep_fusion

    ds = load_beir(folder, pick_split(folder, None))
    t0 = time.perf_counter()
    col = dataset_collection(ds, emb, cache_dir=args.cache_dir)
    build_s = time.perf_counter() - t0
    depth = 3 * args.top_k
    t0 = time.perf_counter()
    dense, bm25 = retrieve_runs(ds, col, depth)
    retrieve_s = time.perf_counter() - t0
    names = metric_names([1, 3, 5, 10, 100])
    rows: dict[str, dict[str, float]] = {
        "bm25": dict(evaluate(ds.qrels, _cut(bm25, args.top_k), names).mean),
        "dense": dict(evaluate(ds.qrels, _cut(dense, args.top_k), names).mean),
    }
    default_cfg = getattr(col, "fusion", None)
    hybrid: dict[str, dict[str, float]] = {}
    qids = sorted(ds.queries)
    for i in range(0, len(qids), 64):
        chunk = qids[i : i + 64]
        for q, hs in zip(
            chunk,
            col.search_many([ds.queries[q] for q in chunk], k=args.top_k + 1, retriever="hybrid"),
            strict=True,
        ):
            hybrid[q] = {h.id: float(h.stage1_score) for h in hs if h.id != ds.self_ids.get(q)}
    rows["hybrid"] = dict(evaluate(ds.qrels, _cut(hybrid, args.top_k), names).mean)
    fused = {}
    for m in ("rrf", "minmax", "zscore"):
        for w in [round(0.1 * i, 1) for i in range(11)]:
            fused[f"{m}:{w}"] = evaluate(
                ds.qrels, fuse_runs(dense, bm25, config_for(m, w), args.top_k), ["ndcg@10"]
            ).mean["ndcg@10"]
    sweep = sweep_fusion(ds, col, top_k=args.top_k, runs=(dense, bm25))
    out: dict[str, Any] = {
        "dataset": ds.name,
        "split": ds.split,
        "queries": len(ds.queries),
        "skipped_no_relevant": ds.skipped_no_relevant,
        "docs": len(col),
        "rows": rows,
        "hybrid_default": default_cfg.to_dict() if default_cfg is not None else None,
        "fused_full": fused,
        "sweep": sweep,
        "build_s": build_s,
        "retrieve_ms_per_query": 1e3 * retrieve_s / max(1, 2 * len(qids)),
    }
    if reranker is not None:
        res = evaluate_dataset(
            ds,
            col,
            retriever="dense",
            reranker=reranker,
            top_k=args.rerank_top_k,
            ks=[1, 3, 5, 10, 100],
            n_resamples=5000,
        )
        out["rerank"] = res.summary()
        out["rerank_deltas"] = res.deltas()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        from results_doc import write_markdown

        saved = [json.loads(p.read_text(encoding="utf-8")) for p in args.from_json]
        merged = sorted((r for s in saved for r in s["results"]), key=lambda r: r["dataset"])
        metas = [s["meta"] for s in saved if s.get("meta")]
        meta = dict(metas[-1]) if metas else {}
        meta["seconds"] = max((m.get("seconds", 0.0) for m in metas), default=0.0)
        meta["command"] = "make results (here: " + "; ".join(m.get("command", "") for m in metas) + ")"
        if args.pending:
            meta["pending"] = [p.strip() for p in args.pending.split(",") if p.strip()]
            meta["pending_reason"] = args.pending_reason
        if args.note:
            meta["note"] = args.note
        write_markdown(merged, meta, bm25_references(args.datasets_dir / "README.md"), args.out, args.img_dir)
        print(f"results: rewrote {args.out} from {len(args.from_json)} file(s)")
        return 0
    if not args.datasets_dir.is_dir():
        print(
            f"results: skipped, {args.datasets_dir} is absent (the real-data tables need ../shared/datasets)."
        )
        return 0
    folders = sorted(p for p in args.datasets_dir.iterdir() if (p / "corpus.jsonl").is_file())
    if args.only:
        keep = {s.strip() for s in args.only.split(",") if s.strip()}
        folders = [p for p in folders if p.name in keep]
    if not folders:
        print(f"results: skipped, no BEIR folder under {args.datasets_dir}.")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from rankfunnel.embed import make_embedder

    emb = make_embedder(args.embedder)
    reranker = None
    rr_note = "no reranker reachable offline (run `make reranker` to train models/scifact-minilm-reranker)"
    spec = str(TRAINED) if args.reranker == "auto" and (TRAINED / "config.json").is_file() else args.reranker
    if spec not in {"auto", "none"}:
        from rankfunnel.rerank import load_reranker

        try:
            reranker = load_reranker(spec)
            rr_note = f"reranker {spec} over the dense top {args.rerank_top_k}"
        except Exception as exc:  # noqa: BLE001 - results without reranking are still worth writing
            rr_note = f"reranker {spec} could not be loaded ({exc})"
    results = []
    t0 = time.perf_counter()
    for folder in folders:
        print(f"results: {folder.name} ...", flush=True)
        results.append(run_dataset(folder, emb, args, reranker))
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(
            json.dumps({"results": results, "meta": {}}, indent=1, default=str), encoding="utf-8"
        )
    load = os.getloadavg()
    meta = {
        "seconds": time.perf_counter() - t0,
        "loadavg": load,
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.system()}",
        "embedder": args.embedder,
        "rerank_note": rr_note,
        "top_k": args.top_k,
        "command": "make results  (python bench/results.py " + " ".join(sys.argv[1:]) + ")",
    }
    args.json_out.write_text(
        json.dumps({"results": results, "meta": meta}, indent=1, default=str), encoding="utf-8"
    )
    from results_doc import write_markdown

    write_markdown(results, meta, bm25_references(args.datasets_dir / "README.md"), args.out, args.img_dir)
    print(f"results: wrote {args.out} and plots in {args.img_dir} ({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
