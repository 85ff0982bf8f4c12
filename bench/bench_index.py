"""Index build throughput and stage-1 search latency of a LocalCollection on a BEIR dataset (default scifact).

Usage:
    .venv/bin/python bench/bench_index.py [--dataset ../shared/datasets/scifact] [--threads 2]
        [--index-type flat|hnsw] [--queries 300] [--k 100] [--json out/bench_index.json]

Builds a fresh index (embedding with the real all-MiniLM-L6-v2 on CPU unless --embedder says otherwise),
then runs every query one at a time for each retriever (dense, bm25, hybrid) and prints p50/p95 latency,
plus NDCG@10 on the qrels as a sanity check of the whole storage path. Exits 0 with a message when the
dataset is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if not path.is_file():
        return out
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if i == 0 and not parts[-1].strip().lstrip("-").isdigit():
            continue
        if len(parts) >= 3 and int(parts[2]) > 0:
            out.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return out


def _ndcg10(ranked: list[str], rel: dict[str, int]) -> float:
    dcg = sum((2 ** rel.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(rel.values(), reverse=True)[:10]
    idcg = sum((2 ** r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--split", default="test")
    ap.add_argument("--embedder", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (embedding)")
    ap.add_argument("--faiss-threads", type=int, default=1, help="OpenMP threads of Faiss searches")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--index-type", default="flat", choices=["flat", "hnsw"])
    ap.add_argument("--queries", type=int, default=300, help="queries timed per retriever (0 = all)")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--index-dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--from-index", type=Path, default=None,
                    help="time searches on a copy of this built index of the dataset (skips the build)")
    ap.add_argument("--json", type=Path, default=ROOT / "out" / "bench_index.json")
    args = ap.parse_args(argv)

    corpus_file = args.dataset / "corpus.jsonl"
    if not corpus_file.is_file():
        print(f"SKIP: {corpus_file} is absent; pass --dataset DIR (a BEIR folder) to run this benchmark.")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.faiss_threads)
    from rankfunnel.collection import LocalCollection
    from rankfunnel.embed import HashingEmbedder, SentenceTransformerEmbedder
    from rankfunnel.types import Document

    load_before = os.getloadavg()
    rows = _read_jsonl(corpus_file)
    docs = [Document(id=str(r["_id"]), title=r.get("title") or "", text=r.get("text") or "") for r in rows]
    queries = {str(r["_id"]): r["text"] for r in _read_jsonl(args.dataset / "queries.jsonl")}
    qrels = _qrels(args.dataset / "qrels" / f"{args.split}.tsv")
    qids = [q for q in sorted(qrels) if q in queries] or sorted(queries)
    if args.queries:
        qids = qids[: args.queries]

    t0 = time.perf_counter()
    emb = (HashingEmbedder(int(args.embedder.split(":")[1])) if args.embedder.startswith("hashing:")
           else SentenceTransformerEmbedder(args.embedder, device=args.device, batch_size=args.batch_size))
    model_load_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory(prefix="rf-bench-index-")
    index_dir = args.index_dir or Path(tmp.name) / "index"
    build_s = float("nan")
    if args.from_index is not None:
        import shutil

        shutil.copytree(args.from_index, index_dir)
        col = LocalCollection.open(index_dir, emb)
        if len(col) != len(docs):
            print(f"{args.from_index} holds {len(col)} documents, the corpus {len(docs)}: not this dataset.")
            return 1
    else:
        col = LocalCollection.create(index_dir, emb, index_type=args.index_type)
        t0 = time.perf_counter()
        col.add(docs, show_progress=True)
        build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    col.search("warm up", k=1, retriever="bm25")  # builds and saves the BM25 index
    bm25_build_s = time.perf_counter() - t0
    col.search("warm up", k=1)

    results: dict[str, dict] = {}
    for retriever in ("dense", "bm25", "hybrid"):
        lat, scores = [], []
        for q in qids:
            t0 = time.perf_counter()
            hits = col.search(queries[q], k=args.k, retriever=retriever)
            lat.append((time.perf_counter() - t0) * 1000)
            if q in qrels:
                scores.append(_ndcg10([h.id for h in hits if h.id != q], qrels[q]))
        t0 = time.perf_counter()
        col.search_many([queries[q] for q in qids], k=args.k, retriever=retriever)
        batch_s = time.perf_counter() - t0
        results[retriever] = {
            "p50_ms": round(statistics.median(lat), 2), "p95_ms": round(_pct(lat, 0.95), 2),
            "mean_ms": round(statistics.fmean(lat), 2), "batched_qps": round(len(qids) / batch_s, 1),
            "ndcg@10": round(statistics.fmean(scores), 4) if scores else None,
        }
    load_after = os.getloadavg()
    report = {
        "dataset": str(args.dataset), "documents": len(docs), "queries": len(qids), "k": args.k,
        "embedder": emb.name, "device": args.device, "threads": args.threads,
        "faiss_threads": args.faiss_threads, "index_type": args.index_type,
        "model_load_s": round(model_load_s, 2), "build_s": round(build_s, 2),
        "build_docs_per_s": round(len(docs) / build_s, 1) if build_s == build_s else None,
        "from_index": str(args.from_index) if args.from_index else None,
        "bm25_build_s": round(bm25_build_s, 2),
        "search": results, "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after], "cpus": os.cpu_count(),
        "machine": platform.platform(), "python": sys.version.split()[0],
        "command": "python bench/bench_index.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    col.close()
    tmp.cleanup()
    print(f"{report['documents']} docs, {emb.name} on {args.device} ({args.threads} threads), "
          f"{args.index_type} index: build {build_s:.1f}s = {report['build_docs_per_s']} docs/s "
          f"(embedding included), BM25 build {bm25_build_s:.2f}s")
    print(f"{'retriever':<10}{'p50 ms':>10}{'p95 ms':>10}{'batched q/s':>14}{'NDCG@10':>10}")
    for name, r in results.items():
        print(f"{name:<10}{r['p50_ms']:>10}{r['p95_ms']:>10}{r['batched_qps']:>14}{r['ndcg@10']!s:>10}")
    print(f"load average before {report['loadavg_before']} after {report['loadavg_after']} "
          f"on {os.cpu_count()} CPUs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
