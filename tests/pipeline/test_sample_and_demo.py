"""The demo script end to end (offline, real MiniLM), and the sample queries against the index it builds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rankfunnel.ingest import sample_data
from rankfunnel.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def _demo():
    spec = importlib.util.spec_from_file_location("rankfunnel_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_demo_offline_shows_the_resolvers_choice_and_labels_the_mechanics_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], minilm_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rankfunnel.rerank import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resolve, "model_on_disk", lambda name: False)  # a fresh machine: nothing cached
    demo = _demo()
    assert demo.main(["--out", str(tmp_path), "--top-k", "10", "--top-n", "3"], embedder=minilm_embedder) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Resolver (reranker='auto'):" in out and "make reranker" in out and "stage 1 only" in out
    assert "Top hit judged relevant (stage 1 only)" in out
    assert "MECHANICS ONLY" in out and "no quality figure" in out
    assert "after reranking" not in out  # the untrained head never gets a quality figure


def test_demo_runs_offline_and_sample_queries_find_their_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], minilm_embedder
) -> None:
    demo = _demo()
    args = ["--out", str(tmp_path), "--reranker", "fake", "--top-k", "10", "--top-n", "3"]
    assert demo.main(args, embedder=minilm_embedder) == 0
    out = capsys.readouterr().out
    assert "Indexed 80 documents" in out and "Reranker: fake" in out
    assert "Who has to approve a 15% discount?" in out and "s1 score" in out
    assert "after reranking" in out

    # the sample queries are answerable: MiniLM dense retrieval puts a judged-relevant document in the top 5
    from rankfunnel.collection import open_collection

    pipe = Pipeline(open_collection(str(tmp_path / "index"), embedder=minilm_embedder), top_k=5, top_n=5)
    queries = [json.loads(line) for line in sample_data("sample_queries.jsonl").read_text().splitlines()]
    for q, res in zip(queries, pipe.search_many([q["text"] for q in queries]), strict=True):
        assert {h.id for h in res.hits} & set(q["relevant"]), (q["text"], [h.id for h in res.hits])
