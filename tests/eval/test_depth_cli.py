"""Adaptive depth end to end on the tiny BEIR fixture: the fitting script and `rankfunnel eval --depth-policy`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from rankfunnel.cli import app
from rankfunnel.rerank.depth import DepthPolicy

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _eval(tiny: Path, tmp_path: Path, *extra: str):
    return runner.invoke(app, [
        "eval", str(tiny), "--retriever", "bm25", "--reranker", "fake", "--top-k", "5", "--embedder", "hashing-32",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--json", "--quiet",
        "--resamples", "100", *extra,
    ])


def test_script_fits_writes_policy_curve_and_png(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "depth"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "adaptive_depth.py"), str(tiny_beir), "--reranker", "fake",
         "--retriever", "bm25", "--embedder", "hashing-32", "--top-k", "5", "--depths", "0,2,5",
         "--resamples", "100", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    curve = json.loads((out / "curve.json").read_text())
    assert [p["label"] for p in curve["fixed"]] == ["stage 1", "top 2", "top 5"]
    assert curve["fit_on"].startswith("hash half 0") and curve["judged_on"].startswith("hash half 1")
    assert curve["fixed"][-1]["loss"] == 0.0 and "pairs_saved" in curve["policy"]
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "curve.md").read_text()
    assert "| **adaptive policy** |" in table and table.count("\n| top ") == 2
    DepthPolicy.load(out / "policy.json")
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "adaptive_depth.py"), str(tiny_beir), "--reranker",
                          "fake", "--top-k", "5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "below the deepest depth 100" in bad.stderr


def test_eval_applies_a_depth_policy(tiny_beir: Path, tmp_path: Path) -> None:
    skip_all = DepthPolicy("gap", (-1e9,), (0, 5)).save(tmp_path / "skip.json")  # every query: stage 1
    res = _eval(tiny_beir, tmp_path, "--depth-policy", str(skip_all))
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["depth_policy"]["signal"] == "gap" and s["reranked"] is None  # nothing was reranked
    always = DepthPolicy("gap", (float("inf"),), (0, 5)).save(tmp_path / "full.json")  # never skips
    full = json.loads(_eval(tiny_beir, tmp_path, "--depth-policy", str(always)).stdout)
    plain = json.loads(_eval(tiny_beir, tmp_path).stdout)
    assert full["reranked"] == plain["reranked"]  # depth 5 of top 5 is the plain rerank


def test_eval_depth_policy_errors_are_one_line(tiny_beir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]")
    res = _eval(tiny_beir, tmp_path, "--depth-policy", str(tmp_path / "bad.json"))
    assert res.exit_code == 2 and "not a depth policy" in res.output
    ok = DepthPolicy("gap", (1.0,), (0, 5)).save(tmp_path / "ok.json")
    res = _eval(tiny_beir, tmp_path, "--depth-policy", str(ok), "--rerank", "off")
    assert res.exit_code == 2 and "drop --rerank off" in res.output


def test_script_reuses_scores_and_fits_on_chosen_signals(tiny_beir: Path, tmp_path: Path) -> None:
    """Hybrid candidates: a second run with ``--reuse`` scores nothing new; ``--signals`` limits the fit (here
    to the agreement signals, which hybrid hits carry); an unknown signal is a clear error."""
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "bench" / "adaptive_depth.py"), str(tiny_beir), "--reranker", "fake",
             "--retriever", "hybrid", "--embedder", "hashing-32", "--top-k", "5", "--depths", "0,2,5",
             "--resamples", "100", "--cache-dir", str(tmp_path / "cache"), *extra],
            capture_output=True, text=True, timeout=300,
        )

    first = run("--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    second = run("--signals", "agree,agree_top1", "--reuse", str(tmp_path / "a"), "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    assert " 0 scored now" in second.stdout and "pairs reused" in second.stdout
    assert DepthPolicy.load(tmp_path / "b" / "policy.json").signal in ("agree", "agree_top1")
    bad = run("--signals", "vibes", "--out", str(tmp_path / "c"))
    assert bad.returncode == 2 and "unknown depth signal 'vibes'" in bad.stderr
