"""Issue 13 "done when": Pipeline, `rankfunnel search --json`, /v1/search and `rankfunnel eval` run one stage 2.

The same settings give the same order and scores on all four, with the FakeReranker and with a tiny real
cross-encoder; and a fallback, a deadline and a score cache behave the same on all of them.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rankfunnel import defaults
from rankfunnel.cli import app as cli
from rankfunnel.eval.datasets import load_beir
from rankfunnel.eval.metrics import ranked_ids
from rankfunnel.pipeline import Pipeline
from rankfunnel.service import ServiceConfig, create_app

runner = CliRunner()
TOP_K = 5


def _closed_port_url() -> str:
    with socket.socket() as s:  # bind, read the free port, close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"remote:http://127.0.0.1:{port}/v2/rerank"


def _eval(dataset: Path, tmp: Path, reranker: str, *extra: str) -> tuple[Path, dict[str, Any], Path]:
    out, cache_dir = tmp / "out", tmp / "indexes"
    args = [
        "eval", str(dataset), "--reranker", reranker, "--top-k", str(TOP_K), "--embedder", "hashing-32",
        "--cache-dir", str(cache_dir), "--out", str(out), "--json", "--quiet", "--resamples", "20", *extra,
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    (index,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    return out / dataset.name / f"{defaults.RETRIEVER}.reranked.trec", json.loads(res.stdout), index


def _trec(path: Path) -> dict[str, list[tuple[str, float]]]:
    run: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text().splitlines():
        q, _, doc, _, score, _ = line.split()
        run.setdefault(q, []).append((doc, float(score)))
    return run


def _hits(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(h["id"], h["rank"], h["score"], h["rerank_score"], h["stage1_rank"]) for h in result["hits"]]


def _four_ways(
    index: Path, queries: dict[str, str], reranker: str, *, cli_opts: list[str], pipe_opts: dict[str, Any],
    cfg: ServiceConfig, timeout_ms: float | None = None, fallback: list[str] = (),  # type: ignore[assignment]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Results of every query through Pipeline, CLI search --json and /v1/search (same settings)."""
    out: dict[str, dict[str, dict[str, Any]]] = {"pipeline": {}, "cli": {}, "service": {}}
    pipe = Pipeline.from_dir(index, reranker, top_k=TOP_K, top_n=TOP_K, fallbacks=fallback, **pipe_opts)
    for qid, text in queries.items():
        out["pipeline"][qid] = pipe.search(text).to_dict()
    pipe.stage2.cache and pipe.stage2.cache.close()
    for qid, text in queries.items():
        args = ["search", text, "--index-dir", str(index), "--reranker", reranker, "--top-k", str(TOP_K),
                "--top-n", str(TOP_K), "--json", *cli_opts]
        for f in fallback:
            args += ["--fallback", f]
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        out["cli"][qid] = json.loads(res.stdout)
    application = create_app(cfg, index_dir=index, reranker_specs=[reranker, *fallback])
    with TestClient(application) as client:
        for qid, text in queries.items():
            body: dict[str, Any] = {"query": text, "top_k": TOP_K, "top_n": TOP_K}
            if timeout_ms is not None:
                body["timeout_ms"] = timeout_ms
            r = client.post("/v1/search", json=body)
            assert r.status_code == 200, r.text
            out["service"][qid] = r.json()
    return out


def _assert_same(got: dict[str, dict[str, dict[str, Any]]], trec: dict[str, list[tuple[str, float]]] | None) -> None:
    for qid, res in got["pipeline"].items():
        assert _hits(got["cli"][qid]) == _hits(res), qid
        assert _hits(got["service"][qid]) == _hits(res), qid
        assert got["cli"][qid]["reranked"] == got["service"][qid]["reranked"] == res["reranked"]
        assert got["cli"][qid]["reranker"] == got["service"][qid]["reranker"] == res["reranker"]
        if trec is not None:  # eval writes raw scores (6 decimals) ordered by score, ties by id
            by_id = {h["id"]: h["rerank_score"] if res["reranked"] else h["score"] for h in res["hits"]}
            assert [d for d, _ in trec[qid]] == ranked_ids(by_id), qid
            assert [s for _, s in trec[qid]] == pytest.approx([by_id[d] for d, _ in trec[qid]], abs=1e-6)


@pytest.mark.parametrize("model", ["fake", "tiny-bert"])
def test_same_order_and_scores_on_all_four(tiny_beir: Path, tmp_path: Path, model: str, request) -> None:
    reranker = "fake" if model == "fake" else str(request.getfixturevalue("tiny_bert_ce_path"))
    trec_path, summary, index = _eval(tiny_beir, tmp_path, reranker)
    assert summary["retriever"] == defaults.RETRIEVER and summary["rerank_failures"] == 0
    queries = load_beir(tiny_beir, "test").queries
    got = _four_ways(index, queries, reranker, cli_opts=[], pipe_opts={}, cfg=ServiceConfig())
    assert all(r["reranked"] for r in got["pipeline"].values())
    _assert_same(got, _trec(trec_path))


def test_fallback_deadline_and_cache_behave_the_same(tiny_beir: Path, tmp_path: Path) -> None:
    queries = load_beir(tiny_beir, "test").queries
    dead = _closed_port_url()  # a remote reranker nobody answers: fails at scoring time

    # fallback: the dead primary fails, the fake answers, on all four surfaces
    trec_path, summary, index = _eval(tiny_beir, tmp_path / "fb", dead, "--fallback", "fake",
                                      "--attempt-timeout-ms", "300")
    assert summary["rerank_failures"] == 0
    got = _four_ways(
        index, queries, dead, fallback=["fake"], cli_opts=["--attempt-timeout-ms", "300"],
        pipe_opts={"attempt_timeout_ms": 300}, cfg=ServiceConfig(attempt_timeout_ms=300),
    )
    for surface in got.values():
        assert all(r["reranked"] and r["reranker"] == "fake" for r in surface.values())
        assert all("answered by fallback 'fake'" in r["reason"] for r in surface.values())
    _assert_same(got, _trec(trec_path))

    # deadline: a deadline that stage 1 already used up gives stage-1 order, with the same reason everywhere
    trec_path, summary, index = _eval(tiny_beir, tmp_path / "dl", "fake", "--deadline-ms", "0.001")
    assert summary["rerank_failures"] == len(queries) and "no time left" in summary["failure_reason"]
    got = _four_ways(
        index, queries, "fake", cli_opts=["--deadline-ms", "0.001"], pipe_opts={"deadline_ms": 0.001},
        cfg=ServiceConfig(), timeout_ms=0.001,
    )
    for surface in got.values():
        assert all(not r["reranked"] and "no time left" in r["reason"] for r in surface.values())
        assert all(h["rank"] == h["stage1_rank"] for r in surface.values() for h in r["hits"])
    _assert_same(got, None)

    # cache: one SQLite file shared by every surface; after the first, nothing is scored again
    cache = tmp_path / "scores.sqlite"
    trec_path, _, index = _eval(tiny_beir, tmp_path / "cache", "fake", "--cache", str(cache))
    got = _four_ways(
        index, queries, "fake", cli_opts=["--cache", str(cache)], pipe_opts={"cache": cache},
        cfg=ServiceConfig(cache_path=str(cache)),
    )
    for surface in got.values():
        for r in surface.values():
            assert r["reranked"] and r["timings_ms"]["pairs_scored"] == 0
            assert r["timings_ms"]["cached_pairs"] == len(r["hits"])
    _assert_same(got, _trec(trec_path))


@pytest.mark.parametrize(("margin", "all_skipped"), [("0", True), ("1000000", False)])
def test_eval_counts_auto_skips_apart_from_failures(
    tiny_beir: Path, tmp_path: Path, margin: str, all_skipped: bool
) -> None:
    """A query that rerank=auto's skip policy answers from stage 1 is the pipeline working, not a failure."""
    n = len(load_beir(tiny_beir, "test").queries)
    _, summary, _ = _eval(tiny_beir, tmp_path, "fake", "--rerank", "auto", "--auto-margin", margin)
    assert summary["rerank_failures"] == 0 and summary["failure_reason"] is None
    assert summary["rerank_skipped"] == (n if all_skipped else 0)
