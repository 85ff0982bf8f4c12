from __future__ import annotations

import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.fusion import FusionConfig, convex, fuse, normalise, rrf


def test_rrf_hand_computed():
    out = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61}
    assert [d for d, _ in out] == ["a", "c", "b"]
    for d, s in out:
        assert s == pytest.approx(expected[d])


def test_weighted_rrf_changes_order_and_zero_weight_ignores_a_run():
    runs = [["a", "b"], ["b", "a"]]
    assert [d for d, _ in rrf(runs, k=1, weights=[2.0, 1.0])] == ["a", "b"]
    assert [d for d, _ in rrf(runs, k=1, weights=[1.0, 2.0])] == ["b", "a"]
    only_second = rrf([["x", "y"], ["y", "z"]], weights=[0.0, 1.0])
    assert [d for d, _ in only_second][:2] == ["y", "z"]
    assert dict(only_second)["x"] == 0.0


def test_ties_break_by_id_and_repeated_ids_count_once():
    assert rrf([["b", "a"], ["a", "b"]]) == [("a", 1 / 61 + 1 / 62), ("b", 1 / 61 + 1 / 62)]
    assert rrf([["a", "a", "b"]], k=0) == [("a", 1.0), ("b", 1 / 3)]


def test_minmax_and_zscore_convex_combination():
    assert normalise({"a": 3.0, "b": 1.0, "c": 2.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert normalise({"a": 5.0}) == {"a": 1.0}
    z = normalise({"a": 1.0, "b": 3.0}, "zscore")
    assert z == {"a": -1.0, "b": 1.0}
    # dense: a=1, b=0.5, c=0 ; bm25: c=1, d=0 ; missing -> 0
    out = convex([{"a": 0.9, "b": 0.7, "c": 0.5}, {"c": 10.0, "d": 2.0}], weights=[0.6, 0.4])
    got = dict(out)
    assert got == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.4, "d": 0.0})
    assert [d for d, _ in out] == ["a", "c", "b", "d"]
    zs = dict(convex([{"a": 1.0, "b": 3.0}, {"a": 0.0}], method="zscore"))
    assert zs["b"] == pytest.approx((1.0 + 0.0) / 2) and zs["a"] == pytest.approx((-1.0 + 0.0) / 2)


def test_fuse_and_config_validation():
    runs = [[("a", 2.0), ("b", 1.0)], [("b", 5.0)]]
    assert fuse(runs, method="minmax") == [("a", 0.5), ("b", 0.5)]
    assert fuse(runs, method="rrf", rrf_k=0)[0] == ("b", 1.5)
    cfg = FusionConfig(method="minmax", dense_weight=0.2, bm25_weight=0.8)
    assert cfg.fuse(*runs)[0][0] == "b"
    for bad in (dict(method="max"), dict(dense_weight=-1.0), dict(dense_weight=0.0, bm25_weight=0.0),
                dict(candidates=0), dict(rrf_k=-1)):
        with pytest.raises(InvalidInputError):
            FusionConfig(**bad)
    with pytest.raises(InvalidInputError, match="one weight per ranking"):
        rrf([["a"], ["b"]], weights=[1.0])
    with pytest.raises(InvalidInputError):
        normalise({"a": 1.0}, "softmax")


def test_bm25_tokenizer_matches_bm25s():
    import bm25s

    from rankfunnel.lexical import tokenize

    texts = ["The quick brown fox, isn't it?", "Ünïcödé ÉTÉ straße x y", "", "a I the of", "IndexError: [0]"]
    ref = [list(t) for t in bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)]
    assert tokenize(texts) == ref
