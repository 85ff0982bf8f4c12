"""``eval --compare A B`` and ``shadow-report``: both NDCG@10 and the paired lift with its interval."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rankfunnel.cli import app
from rankfunnel.eval.datasets import load_beir
from rankfunnel.eval.metrics import ndcg_at_k
from rankfunnel.rerank.shadow import query_hash

runner = CliRunner()
COMMON = ["--retriever", "bm25", "--top-k", "5", "--embedder", "hashing-32", "--quiet", "--resamples", "200"]


def _eval(tiny_beir: Path, tmp_path: Path, *extra: str) -> dict:
    res = runner.invoke(
        app, ["eval", str(tiny_beir), *COMMON, "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"),
              "--json", *extra],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_eval_compare_matches_the_two_single_runs(tiny_beir: Path, tmp_path: Path) -> None:
    cmp = _eval(tiny_beir, tmp_path, "--compare", "none", "fake")
    single = _eval(tiny_beir, tmp_path, "--reranker", "fake")
    assert cmp["a"] == "none" and cmp["b"] == "fake" and cmp["queries"] == 5
    assert abs(cmp["before"] - single["stage1"]["ndcg@10"]) < 1e-9
    assert abs(cmp["after"] - single["reranked"]["ndcg@10"]) < 1e-9
    assert abs(cmp["delta"] - (cmp["after"] - cmp["before"])) < 1e-9
    assert cmp["ci95"][0] <= cmp["delta"] <= cmp["ci95"][1]
    same = _eval(tiny_beir, tmp_path, "--compare", "fake", "fake")
    assert same["delta"] == 0.0 and same["unchanged"] == 5


def test_eval_compare_bad_spec_is_one_line_exit_2(tiny_beir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", str(tiny_beir), *COMMON, "--cache-dir", str(tmp_path / "c"),
                              "--compare", "none", "/no/such/model"])
    assert res.exit_code == 2, res.output


def _write_log(path: Path, tiny_beir: Path) -> dict[str, float]:
    ds = load_beir(tiny_beir, "test")
    recs, gains = [], {}
    for i, (qid, text) in enumerate(sorted(ds.queries.items())):
        rel = sorted(ds.qrels[qid], key=lambda d: -ds.qrels[qid][d])
        primary = ["d3", "d5", "d6"] if qid != "q3" else ["d1", "d2", "d4"]
        shadow = [*rel, "d2"][:3]
        gains[qid] = ndcg_at_k(ds.qrels[qid], shadow, 10) - ndcg_at_k(ds.qrels[qid], primary, 10)
        recs.append({
            "query_hash": query_hash(text), "query_id": None if i % 2 else qid, "primary_ids": primary,
            "shadow_ids": shadow, "overlap": len(set(primary) & set(shadow)) / 3, "kendall_tau": 0.0,
            "score_shift": 0.1, "shadow_ms": float(10 * (i + 1)), "shadow": "fake",
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return gains


def test_shadow_report_with_qrels_matches_hashes_and_ids(tiny_beir: Path, tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    gains = _write_log(log, tiny_beir)
    png = tmp_path / "plot.png"
    res = runner.invoke(app, ["shadow-report", str(log), "--qrels", str(tiny_beir), "--json", "--resamples", "200",
                              "--plot", str(png)])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["requests"] == 5 and s["changed"] == 1.0
    assert s["shadow_ms"]["p50"] == 30.0
    lift = s["ndcg@10"]
    assert lift["queries"] == 5  # odd records carry only the hash: matched through the folder's queries
    assert abs(lift["delta"] - sum(gains.values()) / 5) < 1e-9
    assert png.stat().st_size > 0
    table = runner.invoke(app, ["shadow-report", str(log)])
    assert table.exit_code == 0 and "requests shadowed" in table.stdout


def test_shadow_report_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query_hash": "x"}\n')
    res = runner.invoke(app, ["shadow-report", str(bad)])
    assert res.exit_code == 2 and "not a shadow record" in res.output
    res = runner.invoke(app, ["shadow-report", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "no such shadow log" in res.output
