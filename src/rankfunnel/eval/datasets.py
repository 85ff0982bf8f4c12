"""Reader for datasets in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

The corpus is streamed (never held twice in memory); queries and qrels are small and loaded at once.
Queries whose metadata names ``corpus_id_of_self`` (ArguAna convention) keep that id in
:attr:`BeirDataset.self_ids` so that evaluation can drop the query's own document from its ranking.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.jsonl import read_jsonl
from rankfunnel.types import Document


@dataclass(frozen=True, slots=True, kw_only=True)
class BeirDataset:
    """One split of a BEIR-layout dataset.

    ``queries`` holds only the queries judged in ``qrels`` (text by id); ``skipped_no_relevant`` counts
    judged queries without any relevant document (they are left out of evaluation).
    """

    name: str
    path: Path
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    self_ids: dict[str, str] = field(default_factory=dict)
    skipped_no_relevant: int = 0
    missing_query_text: int = 0

    def corpus(self) -> Iterator[Document]:
        """Stream the corpus as :class:`Document` objects."""
        return iter_corpus(self.path)

    def subset(self, qids: list[str]) -> BeirDataset:
        """The same dataset restricted to ``qids`` (used for held-out sweeps)."""
        keep = set(qids)
        return BeirDataset(
            name=self.name,
            path=self.path,
            split=self.split,
            queries={q: t for q, t in self.queries.items() if q in keep},
            qrels={q: r for q, r in self.qrels.items() if q in keep},
            self_ids={q: s for q, s in self.self_ids.items() if q in keep},
        )


def check_dataset_dir(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InvalidInputError(
            f"Dataset folder {str(path)!r} does not exist: pass a folder in BEIR layout "
            "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."
        )
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise InvalidInputError(
                f"{str(path / name)!r} is missing: a BEIR folder holds corpus.jsonl, "
                "queries.jsonl and qrels/<split>.tsv."
            )
    return path


def available_splits(path: str | Path) -> list[str]:
    """Names of the qrels files of a dataset folder (``test``, ``dev``, ``train``...)."""
    qdir = Path(path) / "qrels"
    return sorted(p.stem for p in qdir.glob("*.tsv")) if qdir.is_dir() else []


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    """``(line number, object, id)`` of each line, through the project's one JSONL reader.

    A line that is not a JSON object, or whose ``_id`` is missing, null, empty or not a string/integer, raises
    :class:`InvalidInputError` naming the file and line (an id is never read as the string ``"None"``).
    """
    for line, _ in read_jsonl(path):
        where = f"{path}:{line.lineno}"
        obj = line.value
        raw_id = obj.get("_id") if isinstance(obj, dict) else None
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
            raise InvalidInputError(
                f"{where} has no usable '_id' (got {raw_id!r}); BEIR lines look like "
                '{"_id": "1", "title": "...", "text": "..."}.'
            )
        yield line.lineno, obj, str(raw_id).strip()


def iter_corpus(path: str | Path) -> Iterator[Document]:
    """Stream ``corpus.jsonl`` of a BEIR folder as documents (``_id``, ``title``, ``text``, ``metadata``).

    Documents with neither title nor text (e.g. cranfield 471) are yielded as they are; indexing rejects them.

    Examples:
        >>> docs = iter_corpus("../shared/datasets/adi")  # doctest: +SKIP
    """
    folder = check_dataset_dir(Path(path))
    for _, obj, doc_id in _read_jsonl(folder / "corpus.jsonl"):
        meta = obj.get("metadata") or {}
        title, text = obj.get("title"), obj.get("text")
        yield Document(
            id=doc_id,
            title=title if isinstance(title, str) else "",
            text=text if isinstance(text, str) else "",
            metadata=meta if isinstance(meta, dict) else {},
        )


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a qrels TSV (``query-id  corpus-id  score`` with an optional header)."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with Path(path).open(encoding="utf-8", newline="") as fh:
            _read_qrels_rows(path, fh, qrels)
    except csv.Error as exc:
        raise InvalidInputError(f"{path}: not a readable TSV file ({exc}); fix or remove the bad line.") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode it to UTF-8, e.g. with "
            "`iconv -f latin1 -t utf-8`."
        ) from None
    return qrels


def _read_qrels_rows(path: str | Path, fh: Any, qrels: dict[str, dict[str, int]]) -> None:
    for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(row) < 3:
            raise InvalidInputError(
                f"{path}:{lineno} has {len(row)} columns; qrels lines are "
                "'query-id<TAB>corpus-id<TAB>score'."
            )
        try:
            grade = int(float(row[2]))
        except (ValueError, OverflowError) as exc:
            raise InvalidInputError(f"{path}:{lineno}: score {row[2]!r} is not a finite number.") from exc
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Load queries and qrels of one split of a BEIR folder (the corpus is streamed on demand).

    Args:
        path: the dataset folder.
        split: the qrels file name without ``.tsv``.

    Returns:
        A :class:`BeirDataset` with the judged queries of ``split``.

    Examples:
        >>> ds = load_beir("../shared/datasets/scifact", "test")  # doctest: +SKIP
        >>> len(ds.queries)  # doctest: +SKIP
        300
    """
    folder = check_dataset_dir(Path(path))
    qfile = folder / "qrels" / f"{split}.tsv"
    if not qfile.is_file():
        have = ", ".join(available_splits(folder)) or "none"
        raise InvalidInputError(
            f"Split {split!r} not found ({qfile} is missing); available splits: {have}. "
            "Pass one of them with --split."
        )
    qrels_all = read_qrels(qfile)
    qrels = {q: r for q, r in qrels_all.items() if any(g > 0 for g in r.values())}
    texts: dict[str, str] = {}
    self_ids: dict[str, str] = {}
    for _, obj, qid in _read_jsonl(folder / "queries.jsonl"):
        if qid not in qrels:
            continue
        text = obj.get("text")
        texts[qid] = text if isinstance(text, str) else ""
        meta = obj.get("metadata")
        if isinstance(meta, dict) and meta.get("corpus_id_of_self"):
            self_ids[qid] = str(meta["corpus_id_of_self"])
    missing = [q for q in qrels if q not in texts or not texts[q].strip()]
    for q in missing:
        qrels.pop(q)
        texts.pop(q, None)
    return BeirDataset(
        name=folder.name,
        path=folder,
        split=split,
        queries=texts,
        qrels=qrels,
        self_ids=self_ids,
        skipped_no_relevant=len(qrels_all) - len(qrels) - len(missing),
        missing_query_text=len(missing),
    )
