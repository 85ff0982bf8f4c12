"""CPU routes for BERT cross-encoders, measured against sentence-transformers on the same model and pairs.

Model: a MiniLM-L6 cross-encoder (the real all-MiniLM-L6-v2 encoder + a random head, built by
``rankfunnel.testing.build_minilm_cross_encoder``), the shape of ``cross-encoder/ms-marco-MiniLM-L6-v2``.
Pairs: 1 scifact query x N scifact abstracts of 100-400 tokens (generated text, with a message, when
``../shared/datasets`` is absent). Routes run interleaved (round-robin) so that load from other processes
hits them alike; each figure is the median over rounds, in wall-clock pairs/s and in pairs per CPU-second
(process CPU time, which load from other processes inflates far less). Quality: Spearman correlation and
max |diff| of each route's scores against sentence-transformers fp32.

Run: ``.venv/bin/python bench/rerank_encoder.py [--routes all] [--docs 100] [--rounds 3] [--threads 2]``.
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
ALL_ROUTES = ("torch-fp32", "torch-int8", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16",
              "openvino-int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", default="auto", help="'auto' (the default route only), 'all', or a list")
    p.add_argument("--docs", type=int, default=100, help="documents for the one query")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (median kept)")
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    p.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers batch size")
    p.add_argument("--model-dir", default=None, help="where the MiniLM cross-encoder is built/cached")
    p.add_argument("--model", default=None, help="use this cross-encoder folder (e.g. a trained one) instead")
    p.add_argument("--datasets", default=str(DATASETS), help="folder holding scifact/")
    p.add_argument("--out", default="out/bench/rerank_encoder.json", help="JSON results file")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _args(args: argparse.Namespace | Mapping[str, Any] | None) -> argparse.Namespace:
    base = parse_args([])
    if args is not None:
        items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
        for k, v in items:
            if hasattr(base, k) and v is not None:
                setattr(base, k, v)
    return base


def load_pairs(datasets: str | Path, tokenizer: Any, n_docs: int, lo: int = 100, hi: int = 400,
               seed: int = 0) -> tuple[list[tuple[str, str]], str]:
    """1 query x ``n_docs`` documents of ``lo``-``hi`` tokens: scifact when present, else generated text."""
    sci = Path(datasets) / "scifact"
    if (sci / "corpus.jsonl").is_file() and (sci / "queries.jsonl").is_file():
        with open(sci / "queries.jsonl", encoding="utf-8") as f:
            query = json.loads(f.readline())["text"]
        docs: list[str] = []
        with open(sci / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                text = f"{d.get('title', '')}\n{d['text']}".strip()
                if lo <= len(tokenizer(text)["input_ids"]) <= hi:
                    docs.append(text)
                if len(docs) >= n_docs:
                    break
        return [(query, d) for d in docs], "scifact"
    print(f"{sci} is absent: using generated text of {lo}-{hi} tokens instead.", file=sys.stderr)
    rng = random.Random(seed)
    vocab = ("cell protein gene expression tumour patients study risk treatment increase levels mouse human "
             "response clinical trial analysis significant effect data model results disease")
    words = vocab.split()
    query = "does protein expression increase tumour risk in patients"
    docs = [" ".join(rng.choice(words) for _ in range(rng.randint(lo, hi - 10))) for _ in range(n_docs)]
    return [(query, d) for d in docs], "generated"


def time_interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int, n_pairs: int
                     ) -> dict[str, dict[str, float]]:
    """Round-robin timing after one warm-up each: median wall and CPU-time pairs/s per function."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"pairs_per_s": n_pairs / statistics.median(wall[k]),
                "pairs_per_cpu_s": n_pairs / statistics.median(cpu[k]),
                "wall_s": statistics.median(wall[k])} for k in fns}


def run(args: argparse.Namespace | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Measure sentence-transformers and the chosen routes; return (and write) the results."""
    import numpy as np
    import torch
    from scipy.stats import spearmanr
    from sentence_transformers import CrossEncoder

    from rankfunnel.rerank.encoder_fast import FastEncoderReranker, default_route
    from rankfunnel.testing.bert import build_minilm_cross_encoder

    a = _args(args)
    torch.set_num_threads(a.threads)
    model_dir = Path(a.model_dir or Path(os.environ.get("RANKFUNNEL_BENCH_DIR", "/tmp/rankfunnel-bench"))
                     / "minilm-l6-ce")
    if a.model:
        model_dir = Path(a.model)
    else:
        build_minilm_cross_encoder(model_dir, seed=a.seed)
    st = CrossEncoder(str(model_dir), device="cpu", activation_fn=torch.nn.Identity())
    pairs, source = load_pairs(a.datasets, st.tokenizer, a.docs, seed=a.seed)
    lengths = [len(x) for x in st.tokenizer([q for q, _ in pairs], [d for _, d in pairs])["input_ids"]]
    auto = default_route()
    routes = [auto] if a.routes == "auto" else list(ALL_ROUTES) if a.routes == "all" else a.routes.split(",")
    fns: dict[str, Callable[[], Any]] = {
        "sentence-transformers fp32": lambda: st.predict(pairs, batch_size=a.st_batch_size)}
    rerankers = {}
    for r in routes:
        rerankers[r] = FastEncoderReranker(str(model_dir), route=r, threads=a.threads)
        fns[f"rankfunnel {r}"] = lambda rr=rerankers[r]: rr.predict(pairs)
    ref = np.asarray(st.predict(pairs, batch_size=a.st_batch_size), dtype=np.float64)
    timings = time_interleaved(fns, a.rounds, len(pairs))
    base = timings["sentence-transformers fp32"]
    rows = []
    for name, t in timings.items():
        scores = ref if name.startswith("sentence") else rerankers[name.split(" ", 1)[1]].predict(pairs)
        rows.append({"variant": name, **{k: round(v, 3) for k, v in t.items()},
                     "speedup": round(t["pairs_per_s"] / base["pairs_per_s"], 2),
                     "speedup_cpu_time": round(t["pairs_per_cpu_s"] / base["pairs_per_cpu_s"], 2),
                     "spearman_vs_fp32": round(float(spearmanr(scores, ref)[0]), 4),
                     "max_abs_diff_vs_fp32": float(np.abs(np.asarray(scores) - ref).max())})
    head = next(r for r in rows if r["variant"] == f"rankfunnel {auto}") if auto in routes else rows[-1]
    result = {
        "case": "cpu-minilm-l6-cross-encoder", "model": str(model_dir), "pairs": len(pairs), "source": source,
        "mean_tokens": float(np.mean(lengths)), "threads": a.threads, "rounds": a.rounds,
        "default_route": auto, "rows": rows, "load_avg_1m": os.getloadavg()[0],
        "speedup_vs_sentence_transformers": head["speedup"],
        "speedup_vs_sentence_transformers_cpu_time": head["speedup_cpu_time"],
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def print_table(res: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{res['case']}: 1 query x {res['pairs']} {res['source']} docs, "
                    f"~{res['mean_tokens']:.0f} tokens/pair, {res['threads']} threads, "
                    f"load {res['load_avg_1m']:.1f}")
    cols = ("variant", "pairs/s", "speedup", "pairs/cpu-s", "speedup (cpu)", "Spearman vs fp32", "max |diff|")
    for col in cols:
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in res["rows"]:
        t.add_row(r["variant"], f"{r['pairs_per_s']:.2f}", f"{r['speedup']:.2f}",
                  f"{r['pairs_per_cpu_s']:.2f}", f"{r['speedup_cpu_time']:.2f}",
                  f"{r['spearman_vs_fp32']:.4f}", f"{r['max_abs_diff_vs_fp32']:.2e}")
    Console(width=150).print(t)


if __name__ == "__main__":
    result = run(parse_args())
    print_table(result)
    print(f"speedup_vs_sentence_transformers: {result['speedup_vs_sentence_transformers']:.2f}")
