from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rankfunnel.cli import app

runner = CliRunner()


def _run(args: list[str]) -> dict | list:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_eval_json_end_to_end(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    s = _run(
        [
            "eval",
            str(tiny_beir),
            "--retriever",
            "bm25",
            "--reranker",
            "fake",
            "--top-k",
            "5",
            "--embedder",
            "hashing-32",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--json",
            "--quiet",
            "--resamples",
            "200",
        ]
    )
    assert s["dataset"] == "tiny" and s["split"] == "test"
    assert s["queries"] == 5 and s["skipped_no_relevant"] == 1
    assert set(s["stage1"]) >= {"ndcg@10", "mrr@10", "recall@100", "precision@5", "map@10"}
    assert s["reranked"] is not None and 0.0 <= s["reranked"]["ndcg@10"] <= 1.0
    lift = s["lift"]["ndcg@10"]
    assert abs(lift["delta"] - (s["reranked"]["ndcg@10"] - s["stage1"]["ndcg@10"])) < 1e-12
    assert lift["helped"] + lift["hurt"] + lift["unchanged"] == 5
    assert lift["ci95"][0] <= lift["delta"] <= lift["ci95"][1]
    assert {"stage1", "rerank", "total"} <= set(s["latency_ms"])
    # both TREC runs, summary and a report with embedded plots
    stage1 = (out / "tiny" / "bm25.stage1.trec").read_text().splitlines()
    assert stage1 and all(len(line.split()) == 6 for line in stage1)
    assert (out / "tiny" / "bm25.reranked.trec").is_file()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (out / "ndcg_before_after.png").stat().st_size > 1000
    # the index was cached: a second run reuses it (marker file) and gives identical metrics
    assert list(cache.glob("*.complete.json"))
    s2 = _run(
        [
            "eval",
            str(tiny_beir),
            "--retriever",
            "bm25",
            "--reranker",
            "none",
            "--top-k",
            "5",
            "--embedder",
            "hashing-32",
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--json",
            "--quiet",
        ]
    )
    assert s2["stage1"] == s["stage1"] and s2["reranked"] is None and s2["lift"] == {}


def test_eval_several_datasets_and_sweep(tiny_beir: Path, tmp_path: Path, beir_factory) -> None:
    other = beir_factory(tmp_path / "other", split="dev")
    res = _run(
        [
            "eval",
            "--datasets",
            f"{tiny_beir},{other}",
            "--embedder",
            "hashing-32",
            "--retriever",
            "hybrid",
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--quiet",
            "--sweep-fusion",
            "--top-k",
            "5",
        ]
    )
    assert isinstance(res, list) and [r["dataset"] for r in res] == ["tiny", "other"]
    assert res[1]["split"] == "dev"  # no test split: falls back to dev
    sweep = res[0]["fusion_sweep"]
    assert "hashed half" in sweep["tuning"]
    assert set(sweep["report_curves"]) == {"rrf", "minmax", "zscore"}


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", str(tmp_path / "missing"), "--embedder", "hashing-32"])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_bench_json(tiny_beir: Path, tmp_path: Path) -> None:
    r = _run(
        [
            "bench",
            "--dataset",
            str(tiny_beir),
            "--reranker",
            "fake",
            "--embedder",
            "hashing-32",
            "--cache-dir",
            str(tmp_path / "c"),
            "--batch-sizes",
            "8,16",
            "--warmup",
            "1",
            "--sustained-s",
            "0.2",
            "--hourly-cost",
            "2.5",
            "--top-k",
            "5",
            "--json",
            "--quiet",
        ]
    )
    assert r["queries"] == 4  # 5 judged queries, 1 warm-up
    assert [row["batch_size"] for row in r["rerank_throughput"]] == [8, 16]
    assert all(row["pairs_per_s"] > 0 for row in r["rerank_throughput"])
    lat = r["latency_ms"]
    assert lat["end_to_end"]["p50"] <= lat["end_to_end"]["p99"]
    assert abs(r["cost_per_1k_queries"] - 2.5 / 3600 * lat["end_to_end"]["mean"]) < 1e-12
    assert r["memory"]["peak_rss_mb"] > 10 and r["sustained"]["pairs"] > 0


def test_calibrate_json_and_load(tiny_beir: Path, tmp_path: Path) -> None:
    from rankfunnel.rerank.calibration import load_calibration

    idx = tmp_path / "idx"
    idx.mkdir()
    r = _run(
        [
            "calibrate",
            "--dataset",
            str(tiny_beir),
            "--reranker",
            "fake",
            "--embedder",
            "hashing-32",
            "--cache-dir",
            str(tmp_path / "c"),
            "--index-dir",
            str(idx),
            "--negatives",
            "3",
            "--json",
            "--quiet",
            "--out",
            str(tmp_path / "fit.json"),
        ]
    )
    assert r["pairs"] > r["positives"] > 0
    assert r["ece_after"] <= r["ece_before"] + 1e-9
    cal = load_calibration(idx, "fake")
    assert cal is not None and abs(cal.temperature - r["temperature"]) < 1e-12
    assert json.loads((tmp_path / "fit.json").read_text())["bias"] == r["bias"]
