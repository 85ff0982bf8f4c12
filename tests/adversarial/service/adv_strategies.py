"""Hypothesis strategies for hostile text: lone surrogates, controls, NULs, odd Unicode, long runs."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

#: Any code point, lone surrogates (category Cs) included: what a JSON ``\uXXXX`` escape can carry.
any_char = st.characters(codec=None, categories=["L", "M", "N", "P", "S", "Z", "C"])
surrogate = st.characters(codec=None, categories=["Cs"])
odd = st.sampled_from(["\x00", "\u200b", "\ufeff", "\u202e", "\U0001f600", "e\u0301", "\n", "\t", "\\", '"'])

#: Text that may hold anything; mostly short, sometimes long.
hostile_text = st.one_of(
    st.text(any_char, max_size=40),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=10), surrogate, st.text(max_size=10)),
    st.lists(odd, min_size=1, max_size=8).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "\U0001f600", " "]), st.integers(1, 5000)),
)

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), hostile_text)
hostile_metadata: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    hostile_text,
    st.one_of(json_scalar, st.lists(json_scalar, max_size=3)),
    max_size=4,
)


def has_surrogate(value: Any) -> bool:
    """Whether ``value`` (nested lists and dicts, keys included) holds text UTF-8 cannot encode."""
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_surrogate(v) for v in value)
    return False
