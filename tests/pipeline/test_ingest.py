"""Streaming readers and chunked, resumable indexing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.ingest import index_source, iter_documents, sample_data
from rankfunnel.types import Document


class RecordingCollection:
    """Minimal in-memory collection: records every add() call (chunk sizes) and can fail on the Nth call."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.docs: dict[str, Document] = {}
        self.calls: list[int] = []
        self.fail_on_call = fail_on_call

    def add(self, docs, *, upsert=False, show_progress=None):
        docs = list(docs)
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt  # simulate an interruption before this chunk is committed
        self.calls.append(len(docs))
        for d in docs:
            if d.id in self.docs and not upsert:
                raise InvalidInputError(f"duplicate {d.id}")
            self.docs[d.id] = d
        return len(docs)

    def ids(self):
        return list(self.docs)

    def __len__(self):
        return len(self.docs)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_beir_corpus(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {
                "_id": "4983",
                "title": "Microstructural development",
                "text": "Alterations of the architecture.",
                "metadata": {},
            },
            {"_id": 5836, "title": "", "text": "Induction of myelodysplasia."},
        ],
    )
    docs = list(iter_documents(src))
    assert docs == [
        Document(id="4983", title="Microstructural development", text="Alterations of the architecture."),
        Document(id="5836", title="", text="Induction of myelodysplasia."),
    ]


def test_plain_jsonl_keeps_metadata_and_extra_fields(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "a", "title": "T", "text": "x", "metadata": {"domain": "law"}, "year": 2020},
        ],
    )
    (doc,) = iter_documents(src)
    assert doc.metadata == {"domain": "law", "year": 2020}  # unknown fields kept, not silently dropped


def test_jsonl_gz_blank_lines_and_bom(tmp_path: Path) -> None:
    raw = (
        "\ufeff"
        + json.dumps({"id": "a", "text": "one"})
        + "\n\n  \n"
        + json.dumps({"id": "b", "text": "two"})
    )
    src = tmp_path / "docs.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write(raw)
    assert [d.id for d in iter_documents(src)] == ["a", "b"]


def test_folder_of_text_and_markdown(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text(
        "# Pricing rules\n\nDiscounts above 10% need approval.\n", encoding="utf-8"
    )
    (tmp_path / "sub" / "b.txt").write_text("\nFirst line title\nbody text here\n", encoding="utf-8")
    (tmp_path / "one.txt").write_text("just one line\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.md").write_text("secret", encoding="utf-8")
    docs = {d.id: d for d in iter_documents(tmp_path)}
    assert sorted(docs) == ["a.md", "one.txt", "sub/b.txt"]
    assert docs["a.md"].title == "Pricing rules" and docs["a.md"].text == "Discounts above 10% need approval."
    assert docs["sub/b.txt"].title == "First line title" and docs["sub/b.txt"].text == "body text here"
    assert docs["one.txt"].title == "" and docs["one.txt"].text == "just one line"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"id": "a", "text": "x"', "malformed JSON"),
        ('{"title": "no id", "text": "x"}', "missing or invalid document id"),
        ('{"id": "", "text": "x"}', "id is empty"),
        ('{"id": "b"}', 'no "text"'),
        ('{"id": "b", "text": 3}', 'no "text"'),
        ('["a", "b"]', "expected a JSON object"),
        ('{"id": "b", "text": "x", "metadata": [1]}', '"metadata"'),
        ('{"id": "b", "text": " ", "title": ""}', "neither text nor title"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"id": "ok", "text": "fine"}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        list(iter_documents(src))
    assert needle in str(info.value)
    assert f"{src}:2" in str(info.value)


def test_non_utf8_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "latin1.jsonl"
    src.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InvalidInputError, match=r"latin1\.jsonl:2: not valid UTF-8.*re-encode"):
        list(iter_documents(src))


def test_non_utf8_text_file(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"title\nna\xefve caf\xe9\n")
    with pytest.raises(InvalidInputError, match=r"bad\.txt:2: not valid UTF-8.*iconv"):
        list(iter_documents(tmp_path))


def test_duplicate_id(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "d.jsonl", [{"id": "a", "text": "1"}, {"id": "b", "text": "2"}, {"_id": "a", "text": "3"}]
    )
    with pytest.raises(InvalidInputError, match=r"d\.jsonl:3: duplicate id 'a'"):
        list(iter_documents(src))


@pytest.mark.parametrize("make", ["missing", "csv", "empty_file", "empty_folder"])
def test_unusable_sources(tmp_path: Path, make: str) -> None:
    src = {
        "missing": tmp_path / "nope.jsonl",
        "csv": tmp_path / "x.csv",
        "empty_file": tmp_path / "e.jsonl",
        "empty_folder": tmp_path / "folder",
    }[make]
    if make == "csv":
        src.write_text("a,b\n")
    elif make == "empty_file":
        src.write_text("\n\n")
    elif make == "empty_folder":
        src.mkdir()
    with pytest.raises(InvalidInputError):
        list(iter_documents(src))


def test_streaming_reads_lazily(tmp_path: Path) -> None:
    # the malformed last line is not reached when only the first documents are consumed
    src = tmp_path / "big.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": "t"}) + "\n" for i in range(1000)) + "{broken\n")
    it = iter_documents(src)
    assert [next(it).id for _ in range(3)] == ["0", "1", "2"]


def test_index_source_chunks_and_counts(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"text {i}"} for i in range(10)])
    col = RecordingCollection()
    stats = index_source(col, src, chunk_size=4, show_progress=False)
    assert col.calls == [4, 4, 2]
    assert (stats.read, stats.added, stats.skipped, stats.chunks) == (10, 10, 0, 3)
    assert sorted(col.ids()) == sorted(f"d{i}" for i in range(10))


def test_index_source_resumes_after_interruption(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"text {i}"} for i in range(10)])
    col = RecordingCollection(fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        index_source(col, src, chunk_size=3, show_progress=False)
    assert len(col) == 3  # the first chunk was committed, the second was not
    col.fail_on_call = None
    stats = index_source(col, src, chunk_size=3, show_progress=False)
    assert (stats.read, stats.added, stats.skipped) == (10, 7, 3)
    assert len(col) == 10
    again = index_source(col, src, chunk_size=3, show_progress=False)
    assert (again.added, again.skipped) == (0, 10)


def test_index_source_upsert_replaces(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "old"}])
    col = RecordingCollection()
    index_source(col, src, show_progress=False)
    write_jsonl(src, [{"id": "a", "text": "new"}])
    stats = index_source(col, src, upsert=True, show_progress=False)
    assert stats.added == 1 and col.docs["a"].text == "new"


def test_index_source_progress_bar_runs(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": "t"} for i in range(5)])
    stats = index_source(RecordingCollection(), src, chunk_size=2, show_progress=True)
    assert stats.added == 5 and stats.docs_per_s > 0


def test_sample_corpus_is_valid() -> None:
    docs = list(iter_documents(sample_data()))
    assert 60 <= len(docs) <= 100
    domains = {d.metadata["domain"] for d in docs}
    assert domains == {"finance", "legal", "code", "general"}
    ids = {d.id for d in docs}
    queries = [json.loads(line) for line in sample_data("sample_queries.jsonl").read_text().splitlines()]
    assert 5 <= len(queries) <= 8
    for q in queries:
        assert q["text"].strip() and q["relevant"] and set(q["relevant"]) <= ids


def test_bad_line_is_skipped_and_strict_mode_indexes_nothing(tmp_path: Path, fake_embedder) -> None:
    from rankfunnel.collection import open_collection

    rows = [{"id": f"d{i}", "text": f"document number {i}"} for i in range(7)]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n", encoding="utf-8")
    col = open_collection(str(tmp_path / "idx"), embedder=fake_embedder, create=True)
    rejects = tmp_path / "rejects.jsonl"
    with pytest.raises(InvalidInputError, match=r"1 of 8 lines are invalid.*index is unchanged"):
        index_source(col, src, chunk_size=3, show_progress=False, strict=True, rejects=rejects)
    assert len(open_collection(str(tmp_path / "idx"))) == 0
    assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == [8]
    stats = index_source(col, src, chunk_size=3, show_progress=False, rejects=rejects)
    assert (stats.added, stats.rejected, stats.skipped) == (7, 1, 0)
    assert "c.jsonl:8: malformed JSON" in stats.reasons[0]
    row = json.loads(rejects.read_text())
    assert row["line"] == 8 and row["raw"] == "{oops" and "malformed JSON" in row["reason"]
    reopened = open_collection(str(tmp_path / "idx"))
    assert sorted(reopened.ids()) == [f"d{i}" for i in range(7)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # the user fixes the file
    again = index_source(reopened, src, chunk_size=3, show_progress=False, rejects=rejects)
    assert (again.added, again.skipped, again.rejected) == (0, 7, 0)
    assert not rejects.exists()  # a stale list from the earlier run is not left behind
