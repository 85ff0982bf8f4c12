"""The in-process adapters say which extra to install when their framework is missing (no framework needed)."""

from __future__ import annotations

import importlib
import sys

import pytest

from rankfunnel.errors import OptionalDependencyError, RerankerUnavailableError
from rankfunnel.integrations import resolve_reranker
from rankfunnel.rerank.fake import FakeReranker


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("rankfunnel.integrations.langchain", "langchain_core", "langchain"),
        ("rankfunnel.integrations.llamaindex", "llama_index", "llamaindex"),
        ("rankfunnel.integrations.haystack", "haystack", "haystack"),
    ],
)
def test_missing_framework_names_the_extra(monkeypatch, module, blocked, extra):
    for name in list(sys.modules):
        if name in (module, blocked) or name.startswith(blocked + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # makes `import blocked` raise ImportError
    if blocked == "llama_index":
        monkeypatch.setitem(sys.modules, "llama_index.core", None)
    with pytest.raises(OptionalDependencyError, match=rf"rankfunnel\[{extra}\]"):
        importlib.import_module(module)


def test_resolve_reranker():
    fake = FakeReranker()
    assert resolve_reranker(fake) is fake
    assert resolve_reranker("fake").name == "fake"
    with pytest.raises(RerankerUnavailableError, match="none"):
        resolve_reranker("none")
    with pytest.raises(ValueError, match="spec string"):
        resolve_reranker(42)  # type: ignore[arg-type]
