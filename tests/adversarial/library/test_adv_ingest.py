"""Class 7 (and 1) of issue 14 through the library: generated JSONL sources with known valid and invalid lines.

Properties: ingestion never crashes; every valid line is indexed exactly as written; every invalid line lands
in the rejects file with its line number and a reason; strict mode leaves the index unchanged when any line is
bad; a JSON null id is never indexed (as "None" or otherwise).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import Line, sources, write_source

from rankfunnel.embed import HashingEmbedder
from rankfunnel.errors import InvalidInputError
from rankfunnel.ingest import index_source
from rankfunnel.jsonl import parse_line

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expected(lines: list[Line]) -> tuple[dict[str, tuple[str, str]], list[int]]:
    docs = {line.doc[0]: line.doc[1:] for line in lines if line.doc is not None}
    bad = [n for n, line in enumerate(lines, start=1) if line.doc is None]
    return docs, bad


@SETTINGS
@given(lines=sources())
def test_every_valid_line_is_indexed_and_every_invalid_one_rejected(lines: list[Line]) -> None:
    from rankfunnel.collection import open_collection

    with tempfile.TemporaryDirectory() as tmp:
        src, rejects = Path(tmp) / "c.jsonl", Path(tmp) / "rejects.jsonl"
        write_source(src, lines)
        col = open_collection(str(Path(tmp) / "idx"), embedder=HashingEmbedder(16), create=True)
        stats = index_source(col, src, chunk_size=3, show_progress=False, rejects=rejects)
        want, bad = _expected(lines)
        assert (stats.read, stats.added, stats.rejected) == (len(lines), len(want), len(bad))
        assert sorted(col.ids()) == sorted(want) and "None" not in col.ids()
        for doc in col.get(list(want)):
            assert (doc.title, doc.text) == want[doc.id]
        rows = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()] if bad else []
        assert [r["line"] for r in rows] == bad and all(r["reason"] for r in rows)
        assert bad or not rejects.exists()
        col.close()


@SETTINGS
@given(lines=sources())
def test_strict_mode_changes_nothing_when_a_line_is_bad(lines: list[Line]) -> None:
    from rankfunnel.collection import open_collection

    with tempfile.TemporaryDirectory() as tmp:
        src, rejects = Path(tmp) / "c.jsonl", Path(tmp) / "rejects.jsonl"
        write_source(src, lines)
        col = open_collection(str(Path(tmp) / "idx"), embedder=HashingEmbedder(16), create=True)
        want, bad = _expected(lines)
        if bad:
            try:
                index_source(col, src, chunk_size=2, show_progress=False, strict=True, rejects=rejects)
            except InvalidInputError as exc:
                assert "unchanged" in str(exc) and str(rejects) in str(exc)
            else:
                raise AssertionError("strict mode accepted a source with invalid lines")
            assert len(col) == 0
            assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == bad
        else:
            stats = index_source(col, src, chunk_size=2, show_progress=False, strict=True, rejects=rejects)
            assert stats.added == len(want) == len(col)
        col.close()


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")))
def test_any_bytes_parse_or_give_a_reason(raw: bytes) -> None:
    line = parse_line(raw, 2)
    assert line.error is None or line.value is None  # a reason, or a value: never both
    if line.error is None:  # whatever parsed is JSON that can be written back as UTF-8
        json.dumps(line.value, allow_nan=False).encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=10))
def test_random_byte_lines_are_all_accounted_for(chunks: list[bytes]) -> None:
    from tests_helpers_memory import MemoryCollection

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "r.jsonl"
        src.write_bytes(b"\n".join(chunks) + b"\n")
        lines = [c for c in chunks if c.strip()]
        col = MemoryCollection()
        try:
            stats = index_source(col, src, show_progress=False, rejects=Path(tmp) / "rej.jsonl")
        except InvalidInputError as exc:
            assert not lines and "no documents" in str(exc)
            return
        assert stats.read == len(lines) and stats.added + stats.rejected == len(lines)
        assert len(col) == stats.added
