"""rankfunnel: fast, high-precision two-stage search.

Stage 1 recalls candidates with a bi-encoder in an ANN index (optionally fused with BM25); stage 2 reranks
them with a cross-encoder and calibrates the scores to 0-1.

Examples:
    >>> from rankfunnel import Document, Pipeline, open_collection  # doctest: +SKIP
    >>> col = open_collection("out/idx", create=True)  # doctest: +SKIP
    >>> col.add([Document(id="1", text="Refunds above 500 EUR need a manager's approval.")])  # doctest: +SKIP
    >>> Pipeline(col, reranker=None).search("who approves large refunds?").hits[0].id  # doctest: +SKIP
    '1'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rankfunnel.errors import RankfunnelError
from rankfunnel.rerank.base import BaseReranker, Calibration
from rankfunnel.types import Document, Hit, SearchResult

if TYPE_CHECKING:  # heavy modules (torch, faiss) load on first use, not on `import rankfunnel`
    from rankfunnel.collection import LocalCollection, open_collection
    from rankfunnel.embed import SentenceTransformerEmbedder
    from rankfunnel.ingest import index_source
    from rankfunnel.pipeline import Pipeline
    from rankfunnel.rerank import load_reranker

__version__ = "0.1.0"

_LAZY = {
    "LocalCollection": "rankfunnel.collection",
    "open_collection": "rankfunnel.collection",
    "SentenceTransformerEmbedder": "rankfunnel.embed",
    "index_source": "rankfunnel.ingest",
    "Pipeline": "rankfunnel.pipeline",
    "load_reranker": "rankfunnel.rerank",
}

__all__ = [
    "BaseReranker",
    "Calibration",
    "Document",
    "Hit",
    "LocalCollection",
    "Pipeline",
    "RankfunnelError",
    "SearchResult",
    "SentenceTransformerEmbedder",
    "__version__",
    "index_source",
    "load_reranker",
    "open_collection",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rankfunnel' has no attribute {name!r}")
