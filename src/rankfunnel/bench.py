"""Speed and cost of a pipeline: stage-1 latency, rerank throughput, percentiles, memory, $ per 1k queries.

What is timed, and how (the way users plan capacity):

- **Rerank throughput** at each batch size: the reranker scores requests of ``pairs_per_request`` (50)
  query-document pairs, repeated ``repeats`` times, after one untimed warm-up request; pairs/s is total
  pairs over total time. A **sustained** run then scores such requests back to back for ``sustained_s``
  seconds at the reranker's own batch size.
- **Per-query latency**: every query goes through :meth:`Pipeline.search` on its own (``top_k`` candidates,
  ``top_n`` returned); stage 1, stage 2 and end to end are read from the pipeline's timings. The first
  ``warmup`` queries are run but not counted.
- On CUDA the device is synchronised before every clock read, and peak memory is
  ``torch.cuda.max_memory_allocated``; on CPU it is the process's peak resident set size (``ru_maxrss``),
  which includes the index and every model loaded so far.
- **Cost per 1,000 queries** = ``hourly_cost / 3600 * 1000 * mean end-to-end seconds per query`` (one query
  at a time on the whole machine; batching across queries would lower it).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError


def _cuda_sync() -> Callable[[], None]:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """``{"mean", "p50", "p95", "p99", "n"}`` of ``samples`` (ms); empty input gives zeros.

    Examples:
        >>> percentiles([1.0, 2.0, 3.0])["p50"]
        2.0
    """
    arr = np.asarray(samples, dtype=float)
    if arr.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "n": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "mean": float(arr.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "n": int(arr.size),
    }


def peak_memory_mb() -> dict[str, float]:
    """Peak RSS of this process in MiB, plus peak CUDA memory allocated when a GPU is in use."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    if sys.platform == "darwin":
        rss /= 1024.0  # bytes on macOS
    out = {"peak_rss_mb": float(rss)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = float(torch.cuda.max_memory_allocated()) / 2**20
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    """Every figure of one benchmark run (JSON via :meth:`to_dict`)."""

    reranker: str | None
    retriever: str
    top_k: int
    top_n: int
    queries: int
    stage1_ms: dict[str, float]
    rerank_ms: dict[str, float]
    total_ms: dict[str, float]
    throughput: list[dict[str, float]] = field(default_factory=list)
    sustained: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    hourly_cost: float | None = None
    cost_per_1k_queries: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reranker": self.reranker,
            "retriever": self.retriever,
            "top_k": self.top_k,
            "top_n": self.top_n,
            "queries": self.queries,
            "latency_ms": {"stage1": self.stage1_ms, "rerank": self.rerank_ms, "end_to_end": self.total_ms},
            "rerank_throughput": self.throughput,
            "sustained": self.sustained,
            "memory": self.memory,
            "hourly_cost": self.hourly_cost,
            "cost_per_1k_queries": self.cost_per_1k_queries,
            "environment": self.environment,
        }


def _set_batch_size(reranker: Any, batch_size: int) -> bool:
    for attr in ("batch_size", "max_rows", "_batch_size"):  # max_rows: FastEncoderReranker's pairs per pass
        if hasattr(reranker, attr):
            setattr(reranker, attr, batch_size)
            return True
    return False


def rerank_throughput(
    reranker: Any,
    pairs: Sequence[tuple[str, str]],
    batch_sizes: Sequence[int],
    *,
    pairs_per_request: int = 50,
    repeats: int = 5,
) -> list[dict[str, float]]:
    """Pairs/s for requests of ``pairs_per_request`` pairs at each batch size (one warm-up request first).

    Examples:
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> rows = rerank_throughput(FakeReranker(), [("q", "d")] * 50, [8], repeats=1)
        >>> rows[0]["batch_size"]
        8
    """
    if not pairs:
        raise InvalidInputError("No (query, document) pairs to time: the benchmark needs at least one query.")
    request = [pairs[i % len(pairs)] for i in range(pairs_per_request)]
    sync = _cuda_sync()
    original = next(
        (getattr(reranker, a) for a in ("batch_size", "max_rows", "_batch_size") if hasattr(reranker, a)),
        None,
    )
    rows = []
    for bs in batch_sizes:
        applied = _set_batch_size(reranker, bs)
        reranker.predict(request)  # warm-up: kernels, allocator, tokenizer caches
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            reranker.predict(request)
            sync()
            times.append(time.perf_counter() - t0)
        total = float(sum(times))
        rows.append(
            {
                "batch_size": bs,
                "batch_size_applied": applied,
                "pairs": len(request) * repeats,
                "seconds": total,
                "pairs_per_s": len(request) * repeats / total if total else float("inf"),
                "ms_per_request_p50": float(np.percentile(times, 50)) * 1e3,
            }
        )
    if original is not None:
        _set_batch_size(reranker, original)
    return rows


def sustained_throughput(
    reranker: Any, pairs: Sequence[tuple[str, str]], *, seconds: float = 10.0, pairs_per_request: int = 50
) -> dict[str, float]:
    """Score requests back to back for ``seconds`` (after one warm-up request); pairs/s over the whole run."""
    request = [pairs[i % len(pairs)] for i in range(pairs_per_request)]
    sync = _cuda_sync()
    reranker.predict(request)
    sync()
    done = 0
    t0 = time.perf_counter()
    while True:
        reranker.predict(request)
        sync()
        done += len(request)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    return {"seconds": elapsed, "pairs": done, "pairs_per_s": done / elapsed}


def run_bench(
    pipeline: Any,
    queries: Sequence[str],
    *,
    top_k: int = 100,
    top_n: int = 10,
    retriever: str | None = None,
    batch_sizes: Sequence[int] = (8, 16, 32, 64),
    warmup: int = 5,
    sustained_s: float = 10.0,
    repeats: int = 5,
    hourly_cost: float | None = None,
    show_progress: bool = True,
) -> BenchResult:
    """Benchmark ``pipeline`` (a :class:`~rankfunnel.pipeline.Pipeline`) on ``queries``.

    Args:
        pipeline: the pipeline; its reranker (if any) is timed on pairs made from real stage-1 candidates.
        queries: query texts; the first ``warmup`` are run but not timed.
        top_k: stage-1 candidates per query.
        top_n: results per query.
        retriever: stage-1 retriever (pipeline default when None).
        batch_sizes: reranker batch sizes for the throughput table.
        warmup: untimed queries.
        sustained_s: length of the sustained rerank run (0 to skip).
        repeats: timed 50-pair requests per batch size.
        hourly_cost: price of the machine per hour, for cost per 1,000 queries.
        show_progress: progress bar.

    Examples:
        >>> res = run_bench(pipe, ["red car", "blue boat"], warmup=0, sustained_s=0)  # doctest: +SKIP
        >>> res.total_ms["p50"]  # doctest: +SKIP
    """
    queries = [q for q in queries if isinstance(q, str) and q.strip()]
    if len(queries) <= warmup:
        raise InvalidInputError(
            f"{len(queries)} queries for {warmup} warm-up ones: pass more queries or lower --warmup."
        )
    if hourly_cost is not None and hourly_cost < 0:
        raise InvalidInputError(f"--hourly-cost must be >= 0, got {hourly_cost}.")
    lat, pairs, reranked = _time_queries(pipeline, queries, top_k, top_n, retriever, warmup, show_progress)
    reranker = getattr(pipeline, "reranker", None)
    throughput: list[dict[str, float]] = []
    sustained: dict[str, float] = {}
    if reranker is not None and pairs:
        throughput = rerank_throughput(reranker, pairs, batch_sizes, repeats=repeats)
        if sustained_s > 0:
            sustained = sustained_throughput(reranker, pairs, seconds=sustained_s)
    total = percentiles(lat["total"])
    cost = hourly_cost / 3600.0 * 1000.0 * total["mean"] / 1e3 if hourly_cost is not None else None
    return BenchResult(
        reranker=getattr(reranker, "name", None),
        retriever=retriever or pipeline.retriever,
        top_k=top_k,
        top_n=top_n,
        queries=len(lat["total"]),
        stage1_ms=percentiles(lat["stage1"]),
        rerank_ms=percentiles(lat["rerank"]),
        total_ms=total,
        throughput=throughput,
        sustained=sustained,
        memory=peak_memory_mb(),
        hourly_cost=hourly_cost,
        cost_per_1k_queries=cost,
        environment={**_environment(), "reranked_queries": reranked},
    )


def _time_queries(
    pipeline: Any,
    queries: Sequence[str],
    top_k: int,
    top_n: int,
    retriever: str | None,
    warmup: int,
    show_progress: bool,
) -> tuple[dict[str, list[float]], list[tuple[str, str]], int]:
    """Time every query; the first ``warmup`` ones are run but not timed.

    Returns per-stage latencies (ms), up to ~2,000 (query, document) pairs from real stage-1 candidates for
    the throughput runs, and how many timed queries were reranked.
    """
    from rankfunnel.progress import progress

    sync = _cuda_sync()
    lat: dict[str, list[float]] = {"stage1": [], "rerank": [], "total": []}
    pairs: list[tuple[str, str]] = []
    reranked = 0
    with progress("per-query latency", len(queries), enabled=show_progress) as bar:
        for i, q in enumerate(queries):
            sync()
            res = pipeline.search(q, top_k=top_k, top_n=top_n, retriever=retriever)
            sync()
            if i >= warmup:
                lat["stage1"].append(res.timings_ms.get("stage1_ms", 0.0))
                lat["rerank"].append(res.timings_ms.get("rerank_ms", 0.0))
                lat["total"].append(res.timings_ms.get("total_ms", 0.0))
                reranked += int(res.reranked)
            if len(pairs) < 2000:
                pairs += [(q, h.document.content) for h in res.hits if h.document is not None]
            bar.advance()
    return lat, pairs, reranked


def _environment() -> dict[str, Any]:
    """The machine the numbers come from: CPUs, load, torch threads, CUDA."""
    torch = sys.modules.get("torch")
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "cuda": bool(torch is not None and torch.cuda.is_available()),
    }
