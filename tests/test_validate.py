"""rankfunnel.validate: the one set of input checks every entry point shares."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankfunnel import validate
from rankfunnel.errors import InvalidInputError
from rankfunnel.types import Document

# text that may hold lone surrogates (what a JSON "\ud800" or surrogateescape-decoded bytes give)
surrogate = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.lists(st.one_of(st.text(max_size=6), surrogate), max_size=6).map("".join)
anything = st.one_of(texts, st.none(), st.integers(), st.floats(), st.booleans(), st.lists(texts, max_size=3))


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(texts)
def test_check_text_accepts_exactly_encodable_non_blank_text(s):
    if _encodable(s) and s.strip():
        assert validate.check_text(s, field="query") == s
    else:
        with pytest.raises(InvalidInputError, match="^query "):
            validate.check_text(s, field="query")


@settings(max_examples=200, deadline=None)
@given(anything)
def test_every_check_raises_only_invalid_input(value):
    for check in (
        lambda v: validate.check_query(v),
        lambda v: validate.check_queries(v),
        lambda v: validate.check_count(v, field="k"),
        lambda v: validate.check_retriever(v),
        lambda v: validate.check_filter({"lang": v}),
        lambda v: validate.check_ids(v, verb="get"),
        lambda v: validate.check_metadata({"m": v}),
        lambda v: validate.check_document({"id": v, "text": v}),
    ):
        with contextlib.suppress(InvalidInputError):  # any other exception fails the test
            check(value)


def test_lone_surrogate_is_named_with_its_field():
    with pytest.raises(InvalidInputError, match=r"query is not valid Unicode.*'\\ud800' at position 9"):
        validate.check_query("discount \ud800")
    with pytest.raises(InvalidInputError, match=r"ids\[1\] is not valid Unicode"):
        validate.check_ids(["ok", "x\udcff"], verb="get")
    with pytest.raises(InvalidInputError, match="metadata is not valid Unicode"):
        validate.check_document(Document(id="a", text="t", metadata={"k\ud800": 1}))
    with pytest.raises(InvalidInputError, match="title is not valid Unicode"):
        validate.check_document(Document(id="a", text="t", title="\udc80"))
    with pytest.raises(InvalidInputError, match="filter value for 'lang' is not valid Unicode"):
        validate.check_filter({"lang": ["en", "\ud800"]})


def test_counts_and_limits():
    assert validate.check_count(np.int64(5), field="k") == 5
    assert validate.check_count(validate.MAX_K, field="k") == validate.MAX_K
    for bad in (0, -1, 2.5, True, "3", None):
        with pytest.raises(InvalidInputError, match="top_k must be an integer >= 1"):
            validate.check_count(bad, field="top_k")
    with pytest.raises(InvalidInputError, match=f"k must be at most {validate.MAX_K}"):
        validate.check_count(validate.MAX_K + 1, field="k")
    assert validate.check_count(10**9, field="top_n", maximum=None) == 10**9


def test_lists_are_never_one_bare_string():
    with pytest.raises(InvalidInputError, match="list of queries"):
        validate.check_queries("apple")
    with pytest.raises(InvalidInputError, match=r"wrap it as \[id\]"):
        validate.check_ids("d1", verb="delete")
    assert validate.check_queries([]) == []
    with pytest.raises(InvalidInputError, match="query is empty"):
        validate.check_queries([" "])
    with pytest.raises(InvalidInputError, match=r"queries\[1\] is empty"):
        validate.check_queries(["a", ""])


def test_filter_shapes():
    assert validate.check_filter(None) is None
    assert validate.check_filter({"a.b-c_d": [1, 2.5, None, True, "x"]}) is not None
    for bad, msg in (
        (["lang", "en"], "mapping"),
        ({"x') OR 1=1 --": 1}, "plain metadata key"),
        ({"a..b": 1}, "plain metadata key"),
        ({"k" * 129: 1}, "at most 128"),
        ({"x": []}, "empty"),
        ({"x": {"$ne": 1}}, "use str, int"),
        ({"x": float("inf")}, "finite"),
    ):
        with pytest.raises(InvalidInputError, match=msg):
            validate.check_filter(bad)


def test_retriever():
    assert [validate.check_retriever(r) for r in ("dense", "bm25", "hybrid")] == ["dense", "bm25", "hybrid"]
    with pytest.raises(InvalidInputError, match="use one of dense, bm25, hybrid"):
        validate.check_retriever("splade")
