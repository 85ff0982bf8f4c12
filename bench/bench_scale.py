"""Scale benchmark: build time, memory, queries/s and recall@10 of stage-1 indexes on synthetic vectors.

Backends: Faiss flat (exact), Faiss HNSW, Faiss IVF-PQ and Milvus Lite (through pymilvus, the same client
code that talks to a Milvus cluster). Recall@k is measured against exact inner-product search.

Synthetic data: unit vectors drawn from a mixture of Gaussian clusters in a 48-dimensional subspace of
R^384, plus isotropic noise. Pure i.i.d. Gaussian vectors would make every ANN index look bad (no
structure to exploit) and would not resemble sentence embeddings; clustered low-intrinsic-dimension data
does. Queries are perturbed copies of held-out points from the same distribution.

Usage::

    python bench/bench_scale.py                       # 1M vectors (Milvus Lite: 100k); long on 2 cores
    python bench/bench_scale.py --n 100000 --queries 200
    python bench/bench_scale.py --backends flat,hnsw,ivfpq --n 1000000 --out out/bench_scale_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("flat", "hnsw", "ivfpq", "ivfpq-refine", "ivfsq8", "milvus-lite")
LOAD_START: tuple[float, float, float] | None = None


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - non-Linux
        return 0


def make_data(
    n: int, dim: int, n_queries: int, seed: int, chunk: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (n, dim) and queries (n_queries, dim), float32, generated in chunks."""
    rng = np.random.default_rng(seed)
    sub, n_clusters = 48, 1024
    basis = np.linalg.qr(rng.standard_normal((dim, sub)))[0].T.astype(np.float32)  # (sub, dim) orthonormal
    centers = rng.standard_normal((n_clusters, sub)).astype(np.float32) * 2.0

    def draw(m: int, r: np.random.Generator) -> np.ndarray:
        z = centers[r.integers(0, n_clusters, m)] + r.standard_normal((m, sub)).astype(np.float32)
        x = z @ basis + 0.15 * r.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    xb = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        xb[s : s + chunk] = draw(min(chunk, n - s), rng)
    xq = draw(n_queries, np.random.default_rng(seed + 1))
    return xb, xq


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean |found[:k] ∩ truth[:k]| / k over queries (-1 padding never matches)."""
    hits = sum(
        len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) for f, t in zip(found, truth, strict=True)
    )
    return hits / (k * len(truth))


def time_search(search: Callable[[np.ndarray], np.ndarray], xq: np.ndarray, single: int) -> dict[str, Any]:
    """Batched queries/s over all queries, and single-query latency percentiles over ``single`` queries."""
    t0 = time.perf_counter()
    ids = search(xq)
    batch_s = time.perf_counter() - t0
    lat = []
    for i in range(min(single, len(xq))):
        t1 = time.perf_counter()
        search(xq[i : i + 1])
        lat.append((time.perf_counter() - t1) * 1000)
    return {
        "ids": ids,
        "qps_batch": len(xq) / batch_s,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "qps_single": 1000.0 / float(np.mean(lat)),
    }


def bench_faiss(
    kind: str, xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, k: int, single: int, sweep: list[int]
) -> list[dict[str, Any]]:
    import faiss

    n, dim = xb.shape
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(xb)
        params: dict[str, Any] = {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        params = {"M": 32, "efConstruction": 80}
        for s in range(0, n, 50_000):  # chunked add so that progress can be printed
            index.add(xb[s : s + 50_000])
            print(f"  hnsw add {min(s + 50_000, n)}/{n} {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    elif kind in ("ivfpq", "ivfpq-refine", "ivfsq8"):
        nlist = int(2 ** round(np.log2(np.sqrt(n))))  # sqrt(n) lists: 1024 at 1M (faiss guidance: 1-16x)
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivfsq8":  # 1 byte per dimension
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            params = {"nlist": nlist}
        else:  # 48 sub-quantizers x 8 bits = 48 bytes per vector
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)
            params = {"nlist": nlist, "m": 48, "nbits": 8}
        train = xb[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
        params["train"] = len(train)
        if kind == "ivfpq-refine":  # PQ shortlist of k*k_factor, re-scored with the exact vectors
            index = faiss.IndexRefineFlat(index)
            index.k_factor = 4.0
            params["k_factor"] = 4
        index.train(train)
        index.add(xb)
    else:
        raise ValueError(kind)
    build_s = time.perf_counter() - t0
    index_bytes = int(faiss.serialize_index(index).size)
    rss_delta = rss_bytes() - rss0
    rows = []
    knobs: list[int | None] = list(sweep) if kind != "flat" else [None]
    for knob in knobs:
        if kind == "hnsw":
            index.hnsw.efSearch = max(int(knob or 0), k)
        elif kind.startswith("ivf"):
            faiss.extract_index_ivf(index).nprobe = int(knob or 1)

        def search(q: np.ndarray) -> np.ndarray:
            return index.search(q, k)[1]

        r = time_search(search, xq, single)
        rows.append(
            {
                "backend": f"faiss-{kind}",
                "n": n,
                "build_s": build_s,
                "index_bytes": index_bytes,
                "bytes_per_vector": index_bytes / n,
                "rss_delta_bytes": rss_delta,
                "params": {
                    **params,
                    **({"efSearch": knob} if kind == "hnsw" else {}),
                    **({"nprobe": knob} if kind.startswith("ivf") else {}),
                },
                "recall_at_k": recall_at_k(r.pop("ids"), truth, k),
                **r,
            }
        )
    return rows


def bench_milvus(
    xb: np.ndarray, xq: np.ndarray, truth: np.ndarray, k: int, single: int, index_type: str
) -> list[dict[str, Any]]:
    from pymilvus import DataType, MilvusClient

    n, dim = xb.shape
    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-milvus-"))
    uri = str(tmp / "bench.db")
    rss0 = rss_bytes()
    client = MilvusClient(uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    ip = client.prepare_index_params()
    params = {"M": 32, "efConstruction": 80} if index_type == "HNSW" else {}
    ip.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
    client.create_collection("bench", schema=schema, index_params=ip, consistency_level="Strong")
    t0 = time.perf_counter()
    step = 5_000
    for s in range(0, n, step):
        block = xb[s : s + step]
        client.insert("bench", [{"id": s + i, "vector": v} for i, v in enumerate(block.tolist())])
        if (s // step) % 20 == 0:
            print(f"  milvus insert {s + len(block)}/{n} {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    client.flush("bench")
    client.load_collection("bench")
    build_s = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    rss_delta = rss_bytes() - rss0
    sp = {"metric_type": "IP", "params": {"ef": 64} if index_type == "HNSW" else {}}

    def search(q: np.ndarray) -> np.ndarray:
        res = client.search("bench", data=q.tolist(), anns_field="vector", limit=k, search_params=sp)
        out = np.full((len(q), k), -1, dtype=np.int64)
        for i, hits in enumerate(res):
            ids = [int(h["id"]) for h in hits]
            out[i, : len(ids)] = ids
        return out

    r = time_search(search, xq, single)
    client.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return [
        {
            "backend": "milvus-lite",
            "n": n,
            "build_s": build_s,
            "index_bytes": disk,
            "bytes_per_vector": disk / n,
            "rss_delta_bytes": rss_delta,
            "params": {"index_type": index_type, **params, **sp["params"]},
            "recall_at_k": recall_at_k(r.pop("ids"), truth, k),
            **r,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of vectors (default 1M)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time for latency")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--backends", default=",".join(BACKENDS), help=f"comma list of {BACKENDS}")
    # Milvus Lite 3.x is a pure-Python engine: about 1,400 inserts/s and ~0.1 s per brute-force query at
    # 20k vectors on a loaded 2-core box, so the default caps it; raise both for a long run.
    ap.add_argument("--milvus-n", type=int, default=100_000, help="cap the Milvus Lite corpus (default 100k)")
    ap.add_argument("--milvus-queries", type=int, default=200, help="cap the queries sent to Milvus Lite")
    ap.add_argument("--hnsw-n", type=int, default=None, help="cap the HNSW corpus (first N vectors)")
    ap.add_argument("--milvus-index", default="FLAT", help="Milvus index type: FLAT, HNSW, IVF_FLAT, ...")
    ap.add_argument("--threads", type=int, default=2, help="Faiss OpenMP threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/bench_scale.json")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="print a markdown table of result files")
    args = ap.parse_args(argv)
    if args.report:
        print(markdown(args.report))
        return 0

    import faiss

    faiss.omp_set_num_threads(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        ap.error(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    global LOAD_START
    LOAD_START = os.getloadavg()
    t0 = time.perf_counter()
    xb, xq = make_data(args.n, args.dim, args.queries, args.seed)
    print(f"data {xb.shape} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(xb)
    truth = exact.search(xq, args.k)[1]
    del exact
    rows: list[dict[str, Any]] = []
    meta = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k, "threads": args.threads,
            "machine": f"{platform.processor() or platform.machine()} x{os.cpu_count()}",
            "loadavg_start": LOAD_START, "python": platform.python_version(), "faiss": faiss.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for b in backends:
        print(f"== {b}", file=sys.stderr)
        cap = {"milvus-lite": args.milvus_n, "hnsw": args.hnsw_n}.get(b) or args.n
        m = min(cap, args.n)
        nq = min(args.milvus_queries or args.queries, args.queries) if b == "milvus-lite" else args.queries
        sub_truth = truth[:nq]
        if m < args.n:  # exact truth over the sub-corpus
            sub = faiss.IndexFlatIP(args.dim)
            sub.add(xb[:m])
            sub_truth = sub.search(xq[:nq], args.k)[1]
            del sub
        if b == "milvus-lite":
            rows += bench_milvus(xb[:m], xq[:nq], sub_truth, args.k, args.single, args.milvus_index)
        else:
            sweep = [16, 64, 128] if b == "hnsw" else [8, 32, 64]
            rows += bench_faiss(b, xb[:m], xq[:nq], sub_truth, args.k, args.single, sweep)
        r = rows[-1]
        print(f"   {r['backend']} n={r['n']} build={r['build_s']:.1f}s recall={r['recall_at_k']:.3f}",
              file=sys.stderr)
        meta["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))  # partial results survive a kill
    print_table(rows, args.k)
    print(f"wrote {out}")
    return 0


def markdown(paths: list[str]) -> str:
    """A markdown table of one or more result files (used for docs/scaling.md and docs/benchmarks.md)."""
    lines = ["| backend | n | parameters | build s | bytes/vector | recall@10 | queries/s (batch) | "
             "p50 ms (1 query) | p99 ms |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            knobs = " ".join(f"{a}={b}" for a, b in r["params"].items() if a not in ("nbits", "train"))
            lines.append(f"| {r['backend']} | {r['n']:,} | {knobs} | {r['build_s']:.1f} | "
                         f"{r['bytes_per_vector']:,.0f} | {r['recall_at_k']:.3f} | {r['qps_batch']:,.0f} | "
                         f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    return "\n".join(lines)


def print_table(rows: list[dict[str, Any]], k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"stage-1 index scale benchmark (recall@{k} vs exact)")
    for c in (
        "backend",
        "n",
        "params",
        "build s",
        "MiB",
        "B/vec",
        f"recall@{k}",
        "qps batch",
        "p50 ms",
        "p99 ms",
    ):
        t.add_column(c)
    for r in rows:
        knobs = " ".join(f"{a}={b}" for a, b in r["params"].items() if a not in ("nbits", "train"))
        t.add_row(
            r["backend"],
            f"{r['n']:,}",
            knobs,
            f"{r['build_s']:.1f}",
            f"{r['index_bytes'] / 2**20:.0f}",
            f"{r['bytes_per_vector']:.0f}",
            f"{r['recall_at_k']:.3f}",
            f"{r['qps_batch']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
        )
    Console(width=160).print(t)


if __name__ == "__main__":
    sys.exit(main())
