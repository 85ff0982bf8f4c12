"""Adaptive rerank depth, measured: fit a depth policy on one split, judge it on another.

For every query of both splits the stage-1 top ``--top-k`` (``--retriever``, the cached index that
``rankfunnel eval`` builds) is scored once by the reranker at full depth; reranking at any smaller depth is
then simulated exactly (the top ``d`` reordered, the rest in stage-1 order, as ``Stage2`` answers). The
policy's thresholds are fitted on ``--train-split`` only (fewest pairs scored with a mean NDCG@10 loss of at
most ``--max-loss`` against full depth); the curve is measured on ``--split``: NDCG@10 and pairs scored per
query of the policy and of fixed depths, each with the paired 95% interval of its loss against full depth.

Writes ``policy.json`` (for ``rankfunnel eval --depth-policy``), ``curve.json`` and ``curve.png`` to
``--out``. When the dataset has no qrels for ``--train-split``, the ``--split`` queries are split in two
halves by a hash of their id (fit on one, judge on the other) and the JSON says so.

Run (the issue's measurement; needs ``make reranker`` first)::

    .venv/bin/python bench/adaptive_depth.py ../shared/datasets/scifact \\
        --reranker models/scifact-minilm-reranker --retriever dense --top-k 100 \\
        --train-split train --split test --out out/bench/adaptive_depth/scifact
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="BEIR dataset folder")
    p.add_argument("--reranker", required=True, help="reranker spec or folder (as `rankfunnel eval -r`)")
    p.add_argument("--retriever", default="dense", choices=["dense", "bm25", "hybrid"])
    p.add_argument("--embedder", default=None, help="embedder name (default: the project's default)")
    p.add_argument("--top-k", type=int, default=100, help="stage-1 candidates per query (the full depth)")
    p.add_argument("--depths", default="0,10,20,50,100", help="depths the policy chooses among (0 = skip)")
    p.add_argument("--max-loss", type=float, default=0.005, help="NDCG@10 loss bound on the training split")
    p.add_argument(
        "--signals", default=None,
        help="comma-separated signals the fit may use (default all: gap, gap_z, peak, and with --retriever "
        "hybrid agree, agree_top1)",
    )
    p.add_argument("--train-split", default="train")
    p.add_argument("--split", default="test", help="the split the policy is judged on")
    p.add_argument(
        "--fit-on", choices=["train", "half"], default="train",
        help="train: fit on --train-split (when it has qrels); half: fit on one hash half of --split's queries "
        "and judge on the other (also used when --train-split has no qrels)",
    )
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--cache-dir", default=".cache/indexes")
    p.add_argument(
        "--reuse", default=None,
        help="another run's --out folder (same reranker and dataset, e.g. the dense run when measuring hybrid): "
        "its cached scores are reused for the (query, document) pairs both candidate sets share; only the rest "
        "is scored",
    )
    p.add_argument("--out", default="out/bench/adaptive_depth")
    return p.parse_args(argv)


def _candidates(ds: Any, col: Any, retriever: str, top_k: int) -> dict[str, list[Any]]:
    qids = sorted(ds.queries)
    # one spare hit for the query's own document, only where there is one (as `rankfunnel eval` does: a deeper
    # hybrid search would fuse a few more candidates and change the ranking slightly)
    k = top_k + (1 if ds.self_ids else 0)
    hits = col.search_many([ds.queries[q] for q in qids], k=k, retriever=retriever)
    out = {}
    for q, hs in zip(qids, hits, strict=True):
        out[q] = [h for h in hs if h.id != ds.self_ids.get(q) and h.document is not None][:top_k]
    return out


def _scores(reranker: Any, queries: Any, cands: dict[str, list[Any]], path: Path, key: str) -> dict[str, Any]:
    """Full-depth scores, cached in ``path`` (npz) under ``key`` (reranker, retriever, top-k, candidate ids)."""
    import numpy as np

    from rankfunnel.eval.depth import full_depth_scores

    if path.is_file():
        data = np.load(path, allow_pickle=False)
        if str(data["key"]) == key:
            return {q: data[f"q_{i}"] for i, q in enumerate(sorted(cands))}
    scores = full_depth_scores(reranker, queries, cands, show_progress=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.array(key), **{f"q_{i}": scores[q] for i, q in enumerate(sorted(cands))})
    tmp.replace(path)
    return scores


def _key(reranker: Any, args: argparse.Namespace, cands: dict[str, list[Any]]) -> str:
    ids = hashlib.sha256("\n".join(f"{q}:{','.join(h.id for h in cands[q])}" for q in sorted(cands)).encode())
    return f"{getattr(reranker, 'name', args.reranker)}|{args.retriever}|{args.top_k}|{ids.hexdigest()}"


class _Reuse:
    """A reranker that answers known (query, document) pairs from a lookup and scores only the rest."""

    def __init__(self, inner: Any, known: dict[tuple[str, str], float]) -> None:
        self.inner, self.known, self.name = inner, known, getattr(inner, "name", "reranker")
        self.reused = self.scored = 0

    def predict(self, pairs: list[tuple[str, str]]) -> Any:
        import numpy as np

        out = np.array([self.known.get(p, np.nan) for p in pairs], dtype=np.float64)
        miss = np.flatnonzero(np.isnan(out))
        if miss.size:
            out[miss] = np.asarray(self.inner.predict([pairs[i] for i in miss]), dtype=np.float64)
        self.scored += int(miss.size)
        self.reused += len(pairs) - int(miss.size)
        return out


def _known_scores(folder: Path, reranker: Any, splits: list[tuple[str, Any, Any]], col: Any) -> dict:
    """(query text, document text) -> score from another run's cached npz files (verified by their key)."""
    import numpy as np

    known: dict[tuple[str, str], float] = {}
    for fname, ds, keep in splits:
        path = folder / fname
        if not path.is_file():
            print(f"--reuse: {path} not found; scoring those pairs", file=sys.stderr)
            continue
        data = np.load(path, allow_pickle=False)
        key = str(data["key"])
        name, retriever, top_k, _ = key.split("|")
        cands = {q: h for q, h in _candidates(ds, col, retriever, int(top_k)).items() if keep(q)}
        ns = argparse.Namespace(reranker=name, retriever=retriever, top_k=int(top_k))
        if name != getattr(reranker, "name", None) or _key(reranker, ns, cands) != key:
            print(f"--reuse: {path} is for another reranker or candidate set; not reused", file=sys.stderr)
            continue
        for i, q in enumerate(sorted(cands)):
            for h, sc in zip(cands[q], data[f"q_{i}"], strict=True):
                known[(ds.queries[q], h.document.content)] = float(sc)
    return known


def markdown(curve: dict[str, Any]) -> str:
    """The curve as a markdown table (what docs/results.md shows)."""
    rows = [
        f"{curve['dataset']}: fit on {curve['fit_on']}, judged on {curve['judged_on']} ({curve['queries']} queries), "
        f"{curve['retriever']} top {curve['top_k']}, reranker `{curve['reranker']}`, max loss {curve['max_loss']}",
        "",
        "| ranking | NDCG@10 | pairs / query | loss vs top 100 | 95% interval | p |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for p in [*curve["fixed"], curve["policy"]]:
        lo, hi = p["loss_ci95"]
        name = "**adaptive policy**" if p["label"] == "policy" else p["label"]
        rows.append(f"| {name} | {p['ndcg@10']:.4f} | {p['pairs_per_query']:.1f} | {p['loss']:+.4f} | "
                    f"[{lo:+.4f}, {hi:+.4f}] | {p['p_value']:.3f} |")
    pol = curve["policy"]
    rows += ["", f"Policy: signal `{pol['policy']['signal']}`, depths {pol['policy']['depths']}, thresholds "
             f"{[None if t is None else round(t, 4) for t in pol['policy']['thresholds']]}; "
             f"{pol['pairs_saved']:.1%} fewer pairs than top 100."]
    return "\n".join(rows) + "\n"


def _half(qid: str) -> int:
    return hashlib.sha256(qid.encode()).digest()[0] % 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rankfunnel.embed import make_embedder
    from rankfunnel.errors import InvalidInputError
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.depth import depth_curve, fit_depth_policy, plot_curve
    from rankfunnel.eval.runner import dataset_collection
    from rankfunnel.rerank import load_reranker

    folder = Path(args.dataset)
    try:
        depths = tuple(int(x) for x in args.depths.split(",") if x.strip())
    except ValueError:
        print(f"error: --depths must be comma-separated integers, got {args.depths!r}", file=sys.stderr)
        return 2
    if args.top_k < max(depths):
        print(f"error: --top-k {args.top_k} is below the deepest depth {max(depths)}", file=sys.stderr)
        return 2
    try:
        test = load_beir(folder, args.split)
        has_train = args.fit_on == "train" and (folder / "qrels" / f"{args.train_split}.tsv").is_file()
        train = load_beir(folder, args.train_split) if has_train else test
        reranker = load_reranker(args.reranker)
        if reranker is None:
            raise InvalidInputError(f"no reranker loaded for {args.reranker!r}")
        emb = make_embedder(args.embedder) if args.embedder else make_embedder()
        col = dataset_collection(test, emb, cache_dir=args.cache_dir, show_progress=False)
        c_test = _candidates(test, col, args.retriever, args.top_k)
        c_train = _candidates(train, col, args.retriever, args.top_k) if has_train else c_test
        if not has_train:  # no training qrels: fit on one hash half of the judged queries, judge on the other
            c_train = {q: h for q, h in c_test.items() if _half(q) == 0}
            c_test = {q: h for q, h in c_test.items() if _half(q) == 1}
        out = Path(args.out)
        if args.reuse:
            keep_fit = (lambda q: True) if has_train else (lambda q: _half(q) == 0)
            keep_judged = (lambda q: True) if has_train else (lambda q: _half(q) == 1)
            known = _known_scores(
                Path(args.reuse), reranker,
                [("scores-fit.npz", train, keep_fit), ("scores-judged.npz", test, keep_judged)], col,
            )
            reranker = _Reuse(reranker, known)
        s_train = _scores(reranker, train.queries, c_train, out / "scores-fit.npz", _key(reranker, args, c_train))
        s_test = _scores(reranker, test.queries, c_test, out / "scores-judged.npz", _key(reranker, args, c_test))
        signals = [x.strip() for x in args.signals.split(",") if x.strip()] if args.signals else None
        policy = fit_depth_policy(
            c_train, train.qrels, s_train, depths=depths, max_loss=args.max_loss, signals=signals
        )
        curve = depth_curve(c_test, test.qrels, s_test, policy=policy, depths=depths, n_resamples=args.resamples)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(reranker, _Reuse):
        print(f"--reuse: {reranker.reused} pairs reused from {args.reuse}, {reranker.scored} scored now")
    curve.update({
        "dataset": test.name,
        "fit_on": args.train_split if has_train else f"hash half 0 of {args.split}",
        "judged_on": args.split if has_train else f"hash half 1 of {args.split}",
        "reranker": str(getattr(reranker, "name", args.reranker)),
        "retriever": args.retriever,
        "top_k": args.top_k,
        "max_loss": args.max_loss,
        "signals": signals or "all",
    })
    out.mkdir(parents=True, exist_ok=True)
    policy.save(out / "policy.json")
    (out / "curve.json").write_text(json.dumps(curve, indent=2) + "\n", encoding="utf-8")
    plot_curve(curve, out / "curve.png")
    (out / "curve.md").write_text(markdown(curve), encoding="utf-8")
    for p in [*curve["fixed"], curve["policy"]]:
        lo, hi = p["loss_ci95"]
        print(f"{p['label']:>8}: ndcg@10 {p['ndcg@10']:.4f}  pairs/query {p['pairs_per_query']:6.1f}  "
              f"loss {p['loss']:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    print(f"policy saves {curve['policy']['pairs_saved']:.1%} of the pairs of top {max(depths)}; "
          f"fit on {curve['fit_on']}, judged on {curve['judged_on']} ({curve['queries']} queries); "
          f"files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
