"""Hypothesis strategies shared by the adversarial tests: JSONL lines whose validity is known by construction.

A generated source is a list of :class:`Line`: the raw bytes of one line, and the document it must produce
(``doc`` is ``(id, title, text)``) or None when the line must be rejected. Invalid lines cover every class of
issue 14 item 7 and 1: missing / empty / null / wrongly typed ids, no title and no text, wrong types, bad JSON,
undecodable bytes, lone surrogates in any field, NaN, oversized integers, deep nesting and duplicate ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import strategies as st

# printable text without line or paragraph separators (ids may not hold control characters)
ID_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc", "Z")), max_size=8)
ANY_TEXT = st.text(max_size=40)  # any Unicode except lone surrogates
BODY = ANY_TEXT.filter(lambda t: t.strip() != "")
# one lone surrogate between letters (a high one followed by a low one would be a valid pair)
SURROGATE_TEXT = st.builds(lambda a, c, b: f"{a}{chr(c)}{b}", ID_TEXT, st.integers(0xD800, 0xDFFF), st.just("z"))


@dataclass(frozen=True)
class Line:
    raw: bytes
    doc: tuple[str, str, str] | None  # (id, title, text) it must index as, or None: rejected

    @property
    def valid(self) -> bool:
        return self.doc is not None


def _dump(obj: object) -> bytes:
    # ensure_ascii escapes a lone surrogate as \udXXX, exactly what an attacker would send
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


@st.composite
def valid_line(draw: st.DrawFn, n: int) -> Line:
    doc_id = f"d{n}-{draw(ID_TEXT)}"
    title = draw(st.one_of(st.just(""), ANY_TEXT))
    text = draw(BODY) if not title.strip() else draw(ANY_TEXT)
    obj: dict[str, object] = {draw(st.sampled_from(["id", "_id"])): doc_id, "text": text}
    if title or draw(st.booleans()):
        obj["title"] = title
    if draw(st.booleans()):
        obj["metadata"] = draw(st.dictionaries(ID_TEXT, st.one_of(st.integers(-9, 9), ANY_TEXT), max_size=3))
    return Line(_dump(obj), (doc_id, title, text))


@st.composite
def invalid_line(draw: st.DrawFn, n: int, earlier_ids: tuple[str, ...] = ()) -> Line:
    doc_id = f"x{n}"
    bad = draw(SURROGATE_TEXT)
    kinds: list[bytes] = [
        f'{{"id": "{doc_id}", "text": "abc"'.encode(),  # truncated JSON
        b'{"id": "' + doc_id.encode() + b'", "text": "caf\xe9 cr\xe8me"}',  # Latin-1 bytes
        draw(st.binary(min_size=1, max_size=20)).replace(b"\n", b"") + b"\xff\xfe",  # never UTF-8
        _dump({"id": None, "text": "a null id"}),
        _dump({"_id": None, "id": doc_id, "text": "BEIR _id is null"}),
        _dump({"title": "no id", "text": "t"}),
        _dump({"id": draw(st.sampled_from(["", "   ", "\t"])), "text": "t"}),
        _dump({"id": draw(st.sampled_from([True, 1.5, [1], {"a": 1}])), "text": "t"}),
        _dump({"id": doc_id}),  # no text, no title
        _dump({"id": doc_id, "title": "", "text": draw(st.sampled_from(["", "  ", "\n"]))}),
        _dump({"id": doc_id, "text": draw(st.sampled_from([5, None, ["a"], {"b": 1}]))}),
        _dump({"id": doc_id, "text": "t", "title": draw(st.sampled_from([5, ["a"], {"b": 1}]))}),
        _dump({"id": doc_id, "text": "t", "metadata": draw(st.sampled_from([[1], "m", 3]))}),
        _dump(draw(st.sampled_from([[1, 2], "a string", 5, None]))),
        _dump({"id": doc_id, "text": bad}),
        _dump({"id": doc_id, "text": "t", "title": bad}),
        _dump({"id": doc_id + bad, "text": "t"}),
        _dump({"id": doc_id, "text": "t", "metadata": {"k": bad}}),
        _dump({"id": doc_id, "text": "t", "metadata": {bad: 1}}),
        _dump({"id": doc_id + "\u0000z", "text": "control character in the id"}),
        f'{{"id": "{doc_id}", "text": "t", "score": NaN}}'.encode(),
        f'{{"id": "{doc_id}", "text": "t", "n": 1{"0" * 5000}}}'.encode(),  # beyond Python's int limit
        b"[" * 200_000,  # nesting that exhausts the parser
    ]
    if earlier_ids:
        kinds.append(_dump({"id": draw(st.sampled_from(earlier_ids)), "text": "a repeated id"}))
    return Line(draw(st.sampled_from(kinds)), None)


@st.composite
def sources(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> list[Line]:
    """A mix of valid and invalid lines, in any order."""
    size = draw(st.integers(min_size, max_size))
    lines: list[Line] = []
    for n in range(size):
        ids = tuple(line.doc[0] for line in lines if line.doc is not None)
        lines.append(draw(st.one_of(valid_line(n), invalid_line(n, ids))))
    return lines


def write_source(path, lines: list[Line]) -> None:  # noqa: ANN001 - a pathlib.Path
    path.write_bytes(b"".join(line.raw + b"\n" for line in lines))
