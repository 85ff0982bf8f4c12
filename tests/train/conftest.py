"""A tiny synthetic BEIR folder for training tests (words from the tiny BERT's vocabulary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOPICS = [
    ("cancer", "patient treatment risk"),
    ("protein", "gene cells human"),
    ("legal", "contract clause law court"),
    ("finance", "price pricing discount manager"),
    ("code", "python error list index"),
    ("search", "query document rank score"),
    ("mouse", "study data analysis"),
    ("disease", "effect level high"),
]


def write_beir(root: Path, *, positives: bool = True, splits: tuple[str, ...] = ("train",)) -> Path:
    """Write corpus/queries/qrels: per topic one relevant doc and three distractors; two queries per topic."""
    root.mkdir(parents=True, exist_ok=True)
    docs, queries, qrels = [], [], []
    for t, (word, extra) in enumerate(TOPICS):
        docs.append(
            {"_id": f"d{t}", "title": f"{word} {extra}", "text": f"the {word} study of {extra} {word}"}
        )
        for j in range(3):
            other = TOPICS[(t + j + 1) % len(TOPICS)]
            docs.append(
                {"_id": f"d{t}x{j}", "title": f"{word} {other[1]}", "text": f"a {other[0]} with {word}"}
            )
        for j in range(2):
            qid = f"q{t}_{j}"
            queries.append({"_id": qid, "text": f"what is the {word} {extra.split()[j]}"})
            qrels.append((qid, f"d{t}", 1 if positives else 0))
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n", encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    for split in splits:
        rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("tiny-beir"))


@pytest.fixture(scope="session")
def tiny_stage1(tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The project's own LocalCollection (dense with the hashing embedder + BM25) over the tiny corpus."""
    from rankfunnel.embed import HashingEmbedder
    from rankfunnel.train import corpus_stage1
    from rankfunnel.train.data import load_corpus

    index_dir = tmp_path_factory.mktemp("tiny-index") / "index"
    stage1, desc = corpus_stage1(
        load_corpus(tiny_beir), index_dir=index_dir, embedder=HashingEmbedder(dim=32)
    )
    assert "LocalCollection" in desc
    return stage1


@pytest.fixture
def beir_writer():
    """The :func:`write_beir` helper, for tests that need a malformed or special folder."""
    return write_beir
