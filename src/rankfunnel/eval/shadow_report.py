"""Summaries of shadow-mode records (``rankfunnel shadow-report``).

How often and how much a shadow reranker would change the answer, its latency and, against qrels, the
NDCG@10 of both with a paired interval.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rankfunnel.errors import InvalidInputError
from rankfunnel.eval.metrics import ndcg_at_k
from rankfunnel.eval.stats import paired_lift
from rankfunnel.rerank.shadow import query_hash

REQUIRED = ("query_hash", "primary_ids", "shadow_ids", "overlap", "shadow_ms")


def record_files(path: str | Path) -> list[Path]:
    """The log and its rotated copies (``FILE.N`` ... ``FILE.1``, then ``FILE``: oldest first)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p}: no such shadow log; give the file written by --shadow (a .jsonl file).")
    backups = sorted(
        (b for b in p.parent.glob(p.name + ".*") if b.suffix[1:].isdigit()), key=lambda b: -int(b.suffix[1:])
    )
    return [*backups, p]


def read_records(path: str | Path, *, rotated: bool = True) -> list[dict[str, Any]]:
    """Read shadow records (one JSON object a line); a bad line is an error naming the file and line."""
    out: list[dict[str, Any]] = []
    for f in record_files(path) if rotated else [Path(path)]:
        with f.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{f}:{lineno}: not a JSON line ({exc.msg}); remove the line.") from None
                if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
                    raise InvalidInputError(
                        f"{f}:{lineno}: not a shadow record (needs {', '.join(REQUIRED)}); is this a --shadow log?"
                    )
                out.append(rec)
    return out


def _mean(vals: Iterable[float | None]) -> float | None:
    xs = [float(v) for v in vals if v is not None]
    return float(np.mean(xs)) if xs else None


def summarise(
    records: Sequence[Mapping[str, Any]],
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    queries: Mapping[str, str] | None = None,
    n_resamples: int = 10_000,
) -> dict[str, Any]:
    """Aggregate shadow records; with ``qrels``, NDCG@10 of primary and shadow and the paired lift.

    A record is matched to qrels by its ``query_id``, else by its ``query_hash`` against the hashes of
    ``queries`` (query text by id, e.g. a BEIR folder's queries).
    """
    if not records:
        raise InvalidInputError("the shadow log holds no records yet; let the shadow see traffic first.")
    lat = np.array([float(r["shadow_ms"]) for r in records])
    p50, p95 = np.percentile(lat, [50, 95])
    out: dict[str, Any] = {
        "requests": len(records),
        "changed": float(np.mean([r["primary_ids"] != r["shadow_ids"] for r in records])),
        "top1_changed": float(np.mean([r["primary_ids"][:1] != r["shadow_ids"][:1] for r in records])),
        "overlap": _mean(r["overlap"] for r in records),
        "kendall_tau": _mean(r.get("kendall_tau") for r in records),
        "score_shift": _mean(r.get("score_shift") for r in records),
        "shadow_ms": {"p50": float(p50), "p95": float(p95), "mean": float(lat.mean())},
        "shadow": sorted({str(r.get("shadow")) for r in records}),
    }
    if qrels is not None:
        by_hash = {query_hash(text): qid for qid, text in (queries or {}).items()}
        before: dict[str, float] = {}
        after: dict[str, float] = {}
        for r in records:
            qid = r.get("query_id") or by_hash.get(r["query_hash"])
            if qid is None or qid not in qrels:
                continue
            before[qid] = ndcg_at_k(qrels[qid], r["primary_ids"], 10)
            after[qid] = ndcg_at_k(qrels[qid], r["shadow_ids"], 10)
        if not before:
            raise InvalidInputError(
                "no shadow record matches a judged query: records need a query_id from the qrels (or, with a "
                "BEIR folder, the hash of one of its queries)."
            )
        out["ndcg@10"] = paired_lift(before, after, metric="ndcg@10", n_resamples=n_resamples).to_dict()
    return out


def plot(records: Sequence[Mapping[str, Any]], dest: str | Path) -> Path:
    """A PNG: histograms of overlap@n, Kendall tau and the shadow's latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    series = [
        ("overlap@n", [r["overlap"] for r in records]),
        ("Kendall tau", [r["kendall_tau"] for r in records if r.get("kendall_tau") is not None]),
        ("shadow latency (ms)", [r["shadow_ms"] for r in records]),
    ]
    for ax, (title, vals) in zip(axes, series, strict=True):
        ax.hist(vals, bins=20)
        ax.set_title(title)
        ax.set_ylabel("requests")
    fig.tight_layout()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest)
    plt.close(fig)
    return dest
