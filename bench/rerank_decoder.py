"""Decoder-reranker benchmark: rankfunnel's DecoderReranker vs sentence-transformers CrossEncoder.predict.

Same random-weight Qwen3-shaped model (real Qwen3 tokenizer, zerank-2 prompt and "Yes" score), same pairs.

- CPU (default when no GPU): a reduced shape (4 layers x hidden 1024) in fp32, 1 query x N documents of
  100-400 tokens (scifact abstracts when ../shared/datasets exists, else generated text), queries of ~15 and
  ~300 tokens. Each technique is switched on in turn: logit rows only (same 32-pair batches as the
  reference), + token budget with length sorting, + prefix sharing.
- GPU: the Qwen3-4B shape (36 x 2560, 32/8 heads, head_dim 128, MLP 9728) in bf16, 1 query + 100 documents of
  300-500 tokens, with peak GPU memory per run (CUDA is synchronised before every clock read).

Run: ``.venv/bin/python bench/rerank_decoder.py [--device cpu|cuda] [--docs N] [--out FILE]``.
``run(args) -> dict`` is what ``bench/bench_rerank.py`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CPU_SHAPE = dict(layers=4, hidden=1024, heads=16, kv_heads=8, head_dim=64, intermediate=3072, dtype="fp32")
TINY_SHAPE = dict(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=256, dtype="fp32")
GPU_SHAPE = dict(layers=36, hidden=2560, heads=32, kv_heads=8, head_dim=128, intermediate=9728, dtype="bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--shape", default="auto", help="auto (CPU: reduced, GPU: 4b), reduced, 4b or tiny (smoke test)"
    )
    p.add_argument("--docs", type=int, default=None, help="documents per query (CPU 12, GPU 100)")
    p.add_argument("--query-tokens", default="15,300", help="comma-separated query lengths in tokens")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 keeps CPU-time figures clean)"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed runs per variant, median kept (CPU 1, GPU 3)"
    )
    p.add_argument(
        "--batch-tokens",
        type=int,
        default=None,
        help="token budget (default: the scorer's auto, CPU 2048, GPU 16384)",
    )
    p.add_argument("--model-dir", default=None, help="where the random model is built/cached")
    p.add_argument("--datasets", default=str(DATASETS), help="folder holding scifact/")
    p.add_argument("--out", default="out/bench/rerank_decoder.json", help="JSON results file")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _args(args: argparse.Namespace | Mapping[str, Any] | None) -> argparse.Namespace:
    base = parse_args([])
    if args is None:
        return base
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    for k, v in items:
        setattr(base, k.replace("-", "_"), v)
    return base


def _texts(tok: Any, datasets: Path, seed: int) -> tuple[list[str], list[str]]:
    """Document candidates and query candidates: scifact when present, else generated sentences."""
    corpus, queries = datasets / "scifact" / "corpus.jsonl", datasets / "scifact" / "queries.jsonl"
    if corpus.is_file() and queries.is_file():
        docs, qs = [], []
        with corpus.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                docs.append((row.get("title", "") + "\n" + row.get("text", "")).strip())
                if len(docs) >= 3000:
                    break
        with queries.open(encoding="utf-8") as f:
            qs = [json.loads(line)["text"] for line in f][:500]
        return docs, qs
    rnd = random.Random(seed)
    words = [
        "cell", "protein", "gene", "expression", "tumour", "patients", "trial", "dose", "risk", "increase",
        "reduced", "model", "data", "study", "analysis", "response", "signal", "mice", "brain", "blood",
        "therapy", "effect", "levels", "receptor", "pathway",
    ]  # fmt: skip

    def sentence(n: int) -> str:
        return " ".join(rnd.choice(words) for _ in range(n)).capitalize() + "."

    return [" ".join(sentence(rnd.randint(8, 20)) for _ in range(rnd.randint(5, 30))) for _ in range(2000)], [
        sentence(rnd.randint(8, 14)) for _ in range(200)
    ]


def make_workload(
    tok: Any, n_docs: int, lo: int, hi: int, query_tokens: int, datasets: Path, seed: int
) -> tuple[str, list[str]]:
    """One query of about ``query_tokens`` tokens and ``n_docs`` documents of ``lo``-``hi`` tokens."""
    docs, queries = _texts(tok, datasets, seed)
    rnd = random.Random(seed)
    rnd.shuffle(docs)
    picked = []
    for d in docs:
        n = len(tok(d, add_special_tokens=False)["input_ids"])
        if lo <= n <= hi:
            picked.append(d)
        elif n > hi:  # cut long texts to a random length in range, on a token boundary
            ids = tok(d, add_special_tokens=False)["input_ids"][: rnd.randint(lo, hi)]
            picked.append(tok.decode(ids))
        if len(picked) == n_docs:
            break
    text = ""
    for q in queries[rnd.randrange(len(queries)) :] + queries:
        text = (text + " " + q).strip()
        if len(tok(text, add_special_tokens=False)["input_ids"]) >= query_tokens:
            break
    ids = tok(text, add_special_tokens=False)["input_ids"][:query_tokens]
    return tok.decode(ids), picked


def _clock(fn: Callable[[], Any], repeats: int, cuda: bool) -> tuple[float, float, Any]:
    """Median wall seconds and median process CPU seconds of ``repeats`` calls."""
    import torch

    times, cpu, out = [], [], None
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu), out


def _measure(
    name: str,
    fn: Callable[[list[tuple[str, str]]], Any],
    pairs: list[tuple[str, str]],
    repeats: int,
    cuda: bool,
) -> dict[str, Any]:
    import torch

    fn(pairs[:1])  # warm-up (allocator, kernels) on a small call, so CPU runs stay short
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds, cpu_seconds, out = _clock(lambda: fn(pairs), repeats, cuda)
    row = {
        "variant": name,
        "seconds": round(seconds, 4),
        "pairs_per_s": round(len(pairs) / seconds, 2),
        # CPU time is steadier than wall time on a shared machine (with 1 thread it is the work done)
        "pairs_per_cpu_s": round(len(pairs) / max(cpu_seconds, 1e-9), 2),
    }
    if cuda:
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    row["_scores"] = out
    return row


def run(args: argparse.Namespace | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results (also written as JSON to ``args.out``)."""
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    from rankfunnel.models import choose_device
    from rankfunnel.rerank.decoder import DecoderReranker
    from rankfunnel.testing.qwen import build_qwen3_shaped

    a = _args(args)
    device = choose_device(a.device)
    cuda = device.startswith("cuda")
    torch.set_num_threads(a.threads)
    shapes = {"reduced": CPU_SHAPE, "4b": GPU_SHAPE, "tiny": TINY_SHAPE}
    shape = shapes.get(a.shape) or (GPU_SHAPE if cuda else CPU_SHAPE)
    n_docs = a.docs or (100 if cuda else 12)
    repeats = a.repeats or (3 if cuda else 1)
    budget = a.batch_tokens or (16384 if cuda else 2048)
    lo, hi = (300, 500) if cuda else (100, 400)
    tag = "qwen3-{layers}x{hidden}-{dtype}".format(**shape)
    model_dir = Path(
        a.model_dir or Path(os.environ.get("RANKFUNNEL_BENCH_DIR", "/tmp/rankfunnel-bench")) / tag
    )
    if not (model_dir / "1_LogitScore" / "config.json").is_file():
        print(f"building random {tag} model in {model_dir} ...", file=sys.stderr)
        build_qwen3_shaped(model_dir, seed=a.seed, **shape)
    dtype = torch.bfloat16 if cuda and shape["dtype"] == "bf16" else torch.float32

    ce = CrossEncoder(str(model_dir), device=device, local_files_only=True, model_kwargs={"dtype": dtype})
    rr = DecoderReranker(str(model_dir), device=device, dtype=dtype, batch_tokens=budget)
    tok = rr.tokenizer
    variants: list[tuple[str, dict[str, Any]]] = [
        (
            "rankfunnel: logit rows (32-pair batches, input order)",
            dict(batch_tokens=None, max_batch_size=32, sort_by_length=False, prefix_sharing=False),
        ),
        (
            "rankfunnel: + token budget, length sort",
            dict(batch_tokens=budget, max_batch_size=None, sort_by_length=True, prefix_sharing=False),
        ),
        (
            "rankfunnel: + prefix sharing (all on)",
            dict(batch_tokens=budget, max_batch_size=None, sort_by_length=True, prefix_sharing=True),
        ),
    ]
    cases = []
    for qt in [int(x) for x in str(a.query_tokens).split(",") if x.strip()]:
        query, docs = make_workload(tok, n_docs, lo, hi, qt, Path(a.datasets), a.seed)
        pairs = [(query, d) for d in docs]
        doc_tokens = [len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs]
        rows = [
            _measure(
                "sentence-transformers CrossEncoder.predict (batch 32)",
                lambda p: ce.predict(
                    p, activation_fn=torch.nn.Identity(), batch_size=32, show_progress_bar=False
                ),
                pairs,
                repeats,
                cuda,
            )
        ]
        for name, settings in variants:
            for k, v in settings.items():
                setattr(rr, k, v)
            rows.append(_measure(name, rr.predict, pairs, repeats, cuda))
        ref = np.asarray(rows[0]["_scores"], dtype=np.float32)
        for row in rows:
            row["max_abs_diff_vs_reference"] = float(np.max(np.abs(np.asarray(row.pop("_scores")) - ref)))
            row["speedup"] = round(row["pairs_per_s"] / rows[0]["pairs_per_s"], 2)
            row["speedup_cpu_time"] = round(row["pairs_per_cpu_s"] / rows[0]["pairs_per_cpu_s"], 2)
        cases.append(
            {
                "query_tokens": len(tok(query, add_special_tokens=False)["input_ids"]),
                "docs": len(docs),
                "doc_tokens_mean": round(float(np.mean(doc_tokens)), 1),
                "doc_tokens_min": min(doc_tokens),
                "doc_tokens_max": max(doc_tokens),
                "rows": rows,
            }
        )
    headline = cases[0]["rows"][-1]["speedup"]
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({a.threads} threads)",
        "model": tag,
        "dtype": str(dtype).replace("torch.", ""),
        "batch_tokens": budget,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "texts": "scifact" if (Path(a.datasets) / "scifact").is_dir() else "generated",
        "cases": cases,
        "speedup_vs_sentence_transformers": headline,
        "headline": f"all techniques vs sentence-transformers, {cases[0]['query_tokens']}-token query",
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def print_table(result: Mapping[str, Any]) -> None:
    print(
        f"device: {result['device']}  model: {result['model']} ({result['dtype']})  "
        f"texts: {result['texts']}  load: {result['load_average']}"
    )
    for case in result["cases"]:
        print(
            f"\nquery {case['query_tokens']} tokens, {case['docs']} docs of {case['doc_tokens_min']}-"
            f"{case['doc_tokens_max']} tokens (mean {case['doc_tokens_mean']})"
        )
        print(
            f"{'variant':56} {'pairs/s':>8} {'speedup':>8} {'pairs/cpu-s':>12} {'speedup':>8} "
            f"{'max|diff|':>10} {'peak GiB':>9}"
        )
        for r in case["rows"]:
            print(
                f"{r['variant']:56} {r['pairs_per_s']:8.2f} {r['speedup']:8.2f} {r['pairs_per_cpu_s']:12.2f} "
                f"{r['speedup_cpu_time']:8.2f} {r['max_abs_diff_vs_reference']:10.2e} "
                f"{r.get('peak_gpu_gib', float('nan')):9.2f}"
            )


if __name__ == "__main__":
    res = run(parse_args())
    print_table(res)
    print(f"speedup_vs_sentence_transformers: {res['speedup_vs_sentence_transformers']:.2f}")
