from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_results_skips_cleanly_without_datasets(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "results.py"), "--datasets-dir",
                           str(tmp_path / "absent"), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "absent" in proc.stdout
    assert not out.exists()


def test_results_markdown_from_saved_results(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from results_doc import write_markdown
    finally:
        sys.path.pop(0)
    curve = {m: {str(w / 10): 0.5 + w / 100 for w in range(11)} for m in ("rrf", "minmax", "zscore")}
    rows = {r: {"ndcg@10": 0.5, "mrr@10": 0.6, "recall@100": 0.9} for r in ("bm25", "dense", "hybrid")}
    res = {"dataset": "toy", "split": "test", "queries": 10, "docs": 50, "rows": rows,
           "hybrid_default": {"method": "rrf", "dense_weight": 1.0, "bm25_weight": 1.0},
           "fused_full": {f"{m}:{w / 10}": 0.5 + w / 100 for m in curve for w in range(11)},
           "sweep": {"tuning": "hashed half", "tuned_curves": curve, "report_curves": curve,
                     "single_tuned": {"dense": 0.6, "bm25": 0.5}, "single": {"dense": 0.6, "bm25": 0.5},
                     "best": {"method": "rrf", "dense_weight": 1.0, "tuned": 0.6, "reported": 0.6}}}
    out = tmp_path / "results.md"
    write_markdown([res], {"embedder": "e", "top_k": 100, "loadavg": [1.0]}, {"toy": 0.505}, out, tmp_path / "img")
    text = out.read_text()
    assert "| toy | test | 10 | 50 | bm25 | 0.500 |" in text
    assert "within 0.01" in text and "rule holds" in text
    assert (tmp_path / "img" / "fusion_sweep.png").stat().st_size > 1000
