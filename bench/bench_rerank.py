"""``make bench-rerank``: rankfunnel rerankers vs sentence-transformers, same models and pairs, one run.

Cases:
- CPU encoder (``bench/rerank_encoder.py``): MiniLM-L6 cross-encoder, 1 query x 100 scifact documents of
  100-400 tokens; sentence-transformers ``CrossEncoder.predict`` fp32 vs ``load_reranker``'s CPU route.
- Decoder (``bench/rerank_decoder.py``, when present): Qwen3-shaped model with the real tokenizer (reduced
  shape on CPU, Qwen3-4B shape in bf16 on a GPU).

The headline is the CPU encoder case on a CPU-only machine and the decoder case on a GPU machine. The run
prints tables, writes JSON (``--out``, default ``out/bench/bench_rerank.json``) and ends with
``speedup_vs_sentence_transformers: X.XX`` for the headline.

Run: ``.venv/bin/python bench/bench_rerank.py [--routes all] [--no-decoder] [--threads 2] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rerank_encoder  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--routes", default="auto", help="encoder routes: auto, all, or a list")
    p.add_argument("--docs", type=int, default=100, help="documents for the CPU encoder case")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds for the encoder case")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--decoder", dest="decoder", action="store_true", default=True,
                   help="also run bench/rerank_decoder.py (default)")
    p.add_argument("--no-decoder", dest="decoder", action="store_false", help="skip the decoder case")
    p.add_argument("--decoder-docs", type=int, default=None, help="documents for the decoder case")
    p.add_argument("--model", default=None, help="encoder case: a cross-encoder folder instead of the MiniLM")
    p.add_argument("--datasets", default=str(rerank_encoder.DATASETS), help="folder holding scifact/")
    p.add_argument("--out", default="out/bench/bench_rerank.json", help="JSON results file")
    return p.parse_args(argv)


def _decoder_module() -> Any | None:
    path = HERE / "rerank_decoder.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("rerank_decoder", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    a = parse_args(argv)
    out_dir = Path(a.out).parent
    enc = rerank_encoder.run({"routes": a.routes, "docs": a.docs, "rounds": a.rounds, "threads": a.threads,
                              "model": a.model, "datasets": a.datasets,
                              "out": str(out_dir / "rerank_encoder.json")})
    rerank_encoder.print_table(enc)
    results: dict[str, Any] = {"cpu_encoder": enc}
    headline = ("cpu_encoder", enc["speedup_vs_sentence_transformers"])
    if a.decoder:
        module = _decoder_module()
        if module is None:
            print("bench/rerank_decoder.py is absent: skipping the decoder case.", file=sys.stderr)
        else:
            dec_args = {"out": str(out_dir / "rerank_decoder.json"), "datasets": a.datasets}
            if a.decoder_docs:
                dec_args["docs"] = a.decoder_docs
            try:
                dec = module.run(dec_args)
                if hasattr(module, "print_table"):
                    module.print_table(dec)
                results["decoder"] = dec
                if torch.cuda.is_available() and dec.get("speedup_vs_sentence_transformers") is not None:
                    headline = ("decoder_gpu", dec["speedup_vs_sentence_transformers"])
            except Exception as exc:  # noqa: BLE001 - the encoder headline must still be reported
                print(f"decoder case failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                results["decoder_error"] = f"{type(exc).__name__}: {exc}"
    results["headline"] = headline[0]
    results["speedup_vs_sentence_transformers"] = headline[1]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"results written to {a.out}")
    print(f"speedup_vs_sentence_transformers: {headline[1]:.2f}")
    return results


if __name__ == "__main__":
    main()
