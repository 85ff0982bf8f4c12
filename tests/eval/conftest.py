"""A tiny BEIR folder written by the tests (never the shared datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = {
    "d1": ("Red cars", "A red car is fast and loud."),
    "d2": ("Blue boats", "Blue boats sail on calm water."),
    "d3": ("Green trees", "Green trees grow in the forest."),
    "d4": ("Fast trains", "Trains are fast and run on rails."),
    "d5": ("Calm lakes", "Water in a calm lake reflects trees."),
    "d6": ("Loud music", "Music can be loud at a concert."),
    "d7": ("Red apples", "Red apples grow on apple trees."),
    "d8": ("Sailing", "Sailing a boat needs wind and water."),
}
QUERIES = {
    "q1": ("fast red car", {"d1": 2, "d4": 1}),
    "q2": ("boat on water", {"d2": 1, "d8": 2}),
    "q3": ("trees in the forest", {"d3": 1, "d7": 1}),
    "q4": ("loud concert music", {"d6": 1}),
    "q5": ("calm lake water", {"d5": 1}),
    "q6": ("nothing relevant here", {"d1": 0}),
}


def write_beir(root: Path, *, self_ids: dict[str, str] | None = None, split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for did, (title, text) in DOCS.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for qid, (text, _) in QUERIES.items():
            meta = {"corpus_id_of_self": self_ids[qid]} if self_ids and qid in self_ids else {}
            fh.write(json.dumps({"_id": qid, "text": text, "metadata": meta}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "qrels" / f"{split}.tsv").open("w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, (_, rels) in QUERIES.items():
            for did, g in rels.items():
                fh.write(f"{qid}\t{did}\t{g}\n")
    return root


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture
def beir_factory():
    return write_beir
