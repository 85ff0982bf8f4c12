from __future__ import annotations

from pathlib import Path

import pytest

from rankfunnel.embed import make_embedder
from rankfunnel.eval.datasets import load_beir
from rankfunnel.eval.runner import dataset_collection, evaluate_dataset


def test_cascade_stages_self_exclusion_and_splits(beir_factory, tmp_path: Path) -> None:
    from rankfunnel.errors import InvalidInputError
    from rankfunnel.rerank import load_reranker

    folder = beir_factory(tmp_path / "arg", self_ids={"q1": "d1"})
    ds = load_beir(folder)
    assert ds.self_ids == {"q1": "d1"} and ds.skipped_no_relevant == 1 and len(ds.queries) == 5
    col = dataset_collection(ds, make_embedder("hashing-32"), cache_dir=tmp_path / "c", show_progress=False)
    res = evaluate_dataset(ds, col, retriever="bm25", reranker=load_reranker("fake:5,fake:2"), top_k=5,
                           n_resamples=100, show_progress=False)
    # the query's own document never appears in either run
    assert "d1" not in res.stage1_run["q1"] and res.reranked_run is not None and "d1" not in res.reranked_run["q1"]
    stages = res.summary()["stages"]
    assert [s["cutoff"] for s in stages] == [5, 2]
    assert stages[0]["pairs_per_query"] >= stages[1]["pairs_per_query"] > 0
    with pytest.raises(InvalidInputError, match="available splits: test"):
        load_beir(folder, "dev")
