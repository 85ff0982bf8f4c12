"""In-process adapters for LangChain, LlamaIndex and Haystack (no server needed).

Each lives in its own module and imports its framework only when that module is imported, raising
:class:`~rankfunnel.errors.OptionalDependencyError` naming the extra to install when it is missing:

- :mod:`rankfunnel.integrations.langchain` (``pip install 'rankfunnel[langchain]'``):
  ``RankfunnelRerank`` (a ``BaseDocumentCompressor``) and ``RankfunnelRetriever`` (a ``BaseRetriever`` over a
  whole :class:`~rankfunnel.pipeline.Pipeline`).
- :mod:`rankfunnel.integrations.llamaindex` (``pip install 'rankfunnel[llamaindex]'``):
  ``RankfunnelRerank`` (a ``BaseNodePostprocessor``).
- :mod:`rankfunnel.integrations.haystack` (``pip install 'rankfunnel[haystack]'``):
  ``RankfunnelRanker`` (a ``@component``).

They sit beside eval/bench in the layer order: they use the reranker and pipeline layers and nothing in the
library imports them.
"""

from __future__ import annotations

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank.base import BaseReranker


def resolve_reranker(reranker: BaseReranker | str | None, *, device: str | None = None) -> BaseReranker:
    """A reranker object as is, or a :func:`~rankfunnel.rerank.load_reranker` spec loaded (``None``: ``auto``).

    Raises:
        RerankerUnavailableError: the spec is ``"none"`` or the model cannot load (the message names the fix).
    """
    if isinstance(reranker, BaseReranker):
        return reranker
    if reranker is not None and not isinstance(reranker, str):
        raise InvalidInputError(
            f"reranker must be a rankfunnel reranker or a spec string, got {type(reranker).__name__}."
        )
    from rankfunnel.rerank import load_reranker

    model = load_reranker(reranker, device=device)
    if model is None:
        raise RerankerUnavailableError(
            f"reranker={reranker!r} loads no model; pass a model name or path, 'auto' or 'fake'."
        )
    return model

