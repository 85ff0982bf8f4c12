"""Pins the public API (httpx's tests/test_exported_members.py pattern)."""

import rankfunnel


def test_all_is_pinned() -> None:
    assert sorted(rankfunnel.__all__) == sorted([
        "BaseReranker", "Calibration", "Document", "Hit", "LocalCollection", "Pipeline", "RankfunnelError",
        "SearchResult", "SentenceTransformerEmbedder", "__version__", "index_source", "load_reranker",
        "open_collection",
    ])


def test_every_exported_name_resolves() -> None:
    for name in rankfunnel.__all__:
        assert getattr(rankfunnel, name) is not None, name


def test_unknown_attribute_raises() -> None:
    import pytest

    with pytest.raises(AttributeError):
        rankfunnel.does_not_exist  # noqa: B018
