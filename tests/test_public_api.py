"""Pins the public API (httpx's tests/test_exported_members.py pattern): names, kinds, signatures, and a tiny
end-to-end use through the public names only."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import rankfunnel

EXPORTED = [
    "BaseReranker", "Calibration", "Document", "Hit", "LocalCollection", "Pipeline", "RankfunnelError",
    "SearchResult", "SentenceTransformerEmbedder", "__version__", "index_source", "load_reranker",
    "open_collection",
]
CLASSES = {"BaseReranker", "Calibration", "Document", "Hit", "LocalCollection", "Pipeline", "SearchResult",
           "SentenceTransformerEmbedder"}
FUNCTIONS = {
    # name -> the parameters the docs promise (others may be added; these must stay, with these kinds)
    "open_collection": {"path_or_uri": "POSITIONAL_OR_KEYWORD", "backend": "KEYWORD_ONLY",
                        "embedder": "KEYWORD_ONLY", "create": "KEYWORD_ONLY"},
    "index_source": {"collection": "POSITIONAL_OR_KEYWORD", "source": "POSITIONAL_OR_KEYWORD",
                     "chunk_size": "KEYWORD_ONLY", "resume": "KEYWORD_ONLY", "upsert": "KEYWORD_ONLY",
                     "show_progress": "KEYWORD_ONLY"},
    "load_reranker": {"spec": "POSITIONAL_OR_KEYWORD", "device": "KEYWORD_ONLY", "batch_size": "KEYWORD_ONLY"},
}


def test_all_is_pinned() -> None:
    assert sorted(rankfunnel.__all__) == sorted(EXPORTED)
    assert set(EXPORTED) == CLASSES | set(FUNCTIONS) | {"RankfunnelError", "__version__"}


def test_version_is_the_packaged_one() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert rankfunnel.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_exported_classes_are_classes(name: str) -> None:
    obj = getattr(rankfunnel, name)
    assert inspect.isclass(obj), name
    assert obj.__name__ == name


def test_the_error_base_is_an_exception() -> None:
    assert issubclass(rankfunnel.RankfunnelError, Exception)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_exported_functions_keep_their_documented_parameters(name: str) -> None:
    fn = getattr(rankfunnel, name)
    assert inspect.isfunction(fn), name
    params = inspect.signature(fn).parameters
    for param, kind in FUNCTIONS[name].items():
        assert param in params, f"{name}() lost its {param!r} parameter"
        assert params[param].kind.name == kind, f"{name}({param}) is {params[param].kind.name}, not {kind}"


@pytest.mark.parametrize("name", [n for n in EXPORTED if n != "__version__"])
def test_lazy_names_are_the_objects_of_their_home_module(name: str) -> None:
    obj = getattr(rankfunnel, name)
    home = importlib.import_module(obj.__module__)
    assert getattr(home, name) is obj, f"rankfunnel.{name} is not {obj.__module__}.{name}"


def test_import_does_not_load_torch_or_faiss() -> None:
    code = "import sys, rankfunnel; print(sorted(m for m in ('torch', 'faiss', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="does_not_exist"):
        rankfunnel.does_not_exist  # noqa: B018


def test_a_search_end_to_end_through_the_public_names(tmp_path: Path) -> None:
    from rankfunnel.embed import HashingEmbedder  # the deterministic fake (not a public name: tests only)

    source = tmp_path / "docs.jsonl"
    rows = [
        {"id": "refund", "text": "Refunds above 500 EUR need a manager's approval."},
        {"id": "boat", "text": "Blue boats sail on calm water."},
        {"id": "tree", "text": "Green trees grow in the forest."},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    col = rankfunnel.open_collection(str(tmp_path / "idx"), embedder=HashingEmbedder(32), create=True)
    assert isinstance(col, rankfunnel.LocalCollection)
    stats = rankfunnel.index_source(col, source, show_progress=False)
    assert (stats.read, stats.added) == (3, 3)

    reranker = rankfunnel.load_reranker("fake")
    assert isinstance(reranker, rankfunnel.BaseReranker)
    assert isinstance(reranker.calibration, rankfunnel.Calibration)
    assert rankfunnel.load_reranker("none") is None

    res = rankfunnel.Pipeline(col, reranker=reranker, top_k=3, top_n=2).search("who approves refunds above 500")
    assert isinstance(res, rankfunnel.SearchResult) and res.reranked
    assert len(res.hits) == 2 and all(isinstance(h, rankfunnel.Hit) for h in res.hits)
    assert res.hits[0].id == "refund"
    assert isinstance(res.hits[0].document, rankfunnel.Document)
    assert res.hits[0].document.text == rows[0]["text"]
    assert all(0.0 <= h.score <= 1.0 for h in res.hits)
    assert res.hits[0].score > res.hits[1].score

    with pytest.raises(rankfunnel.RankfunnelError):
        rankfunnel.open_collection(str(tmp_path / "missing"))
