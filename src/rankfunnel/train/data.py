"""Labelled data for training: a BEIR folder (read with ``rankfunnel.eval.datasets``) held in memory."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.jsonl import read_jsonl
from rankfunnel.types import Document


@dataclass(frozen=True, slots=True)
class LabelledData:
    """A corpus, its queries and the relevance judgements of one split.

    Attributes:
        name: The dataset name (the folder name).
        corpus: Document id -> :class:`Document`.
        queries: Query id -> query text (only queries judged in ``qrels``).
        qrels: Query id -> {document id -> grade}; grade > 0 means relevant.
        split: The qrels split that was read.
    """

    name: str
    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    split: str

    def positives(self, qid: str) -> list[str]:
        """Ids of the relevant documents of ``qid`` that exist in the corpus, most relevant first."""
        judged = self.qrels.get(qid, {})
        return sorted(
            (d for d, g in judged.items() if g > 0 and d in self.corpus), key=lambda d: (-judged[d], d)
        )


def load_corpus(dataset_dir: str | Path) -> dict[str, Document]:
    """Read ``corpus.jsonl`` of a BEIR folder into id -> :class:`Document`."""
    path = Path(dataset_dir).expanduser() / "corpus.jsonl"
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist; pass a BEIR folder that holds corpus.jsonl.")
    from rankfunnel.eval.datasets import iter_corpus

    return {d.id: d for d in iter_corpus(path.parent)}


def load_labelled(dataset_dir: str | Path, split: str = "train") -> LabelledData:
    """Read a BEIR-layout folder and keep the queries judged in ``qrels/<split>.tsv``.

    Args:
        dataset_dir: Folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: Name of the qrels split to train on.

    Returns:
        The corpus, the judged queries and their qrels.

    Raises:
        InvalidInputError: A file is missing or malformed, the split does not exist, or no query has a
            relevant document in the corpus.

    Examples:
        >>> data = load_labelled("../shared/datasets/scifact", "train")  # doctest: +SKIP
        >>> len(data.queries)  # doctest: +SKIP
        809
    """
    from rankfunnel.eval.datasets import load_beir

    root = Path(dataset_dir).expanduser()
    ds = load_beir(root, split)  # clear errors for a missing folder, file or split
    corpus = load_corpus(root)
    queries, qrels = dict(ds.queries), {q: dict(r) for q, r in ds.qrels.items()}
    data = LabelledData(root.name, corpus, queries, qrels, split)
    if not any(data.positives(q) for q in queries):
        raise InvalidInputError(
            f"No query of {root} split {split!r} has a relevant document (score > 0) in corpus.jsonl; "
            "training needs positives. Check that qrels ids match corpus '_id' values."
        )
    return data


def _query_text(obj: Any, where: str) -> str:
    text = obj if isinstance(obj, str) else obj.get("text", obj.get("query")) if isinstance(obj, dict) else None
    if not isinstance(text, str):
        raise InvalidInputError(f'{where}: expected a JSON string or an object with a "text" string.')
    return text


def split_queries(qids: list[str], held_out: float | int, seed: int) -> tuple[list[str], list[str]]:
    """Split query ids into (train, held-out), deterministically in ``seed``.

    ``held_out`` is a fraction (``0 < f < 1``) or a count; at least one query stays for training.
    """
    ids = sorted(qids)
    random.Random(seed).shuffle(ids)
    n = int(round(held_out * len(ids))) if isinstance(held_out, float) and held_out < 1 else int(held_out)
    n = max(0, min(n, len(ids) - 1))
    return sorted(ids[n:]), sorted(ids[:n])


def read_query_file(path: str | Path) -> list[str]:
    """Unlabelled queries for distillation: a ``.jsonl`` of ``{"text": ...}`` (BEIR) or one per line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(
            f"Query file {str(p)!r} does not exist; pass a .jsonl or a text file, one a line."
        )
    if p.name.lower().removesuffix(".gz").endswith(".jsonl"):
        texts = [_query_text(line.value, f"{p}:{line.lineno}") for line, _ in read_jsonl(p)]
    else:
        try:
            texts = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{p}: not valid UTF-8 (byte {exc.start}); re-encode it, e.g. with `iconv -f latin1 -t utf-8`."
            ) from None
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise InvalidInputError(f"{p} holds no non-empty query.")
    return list(dict.fromkeys(texts))
