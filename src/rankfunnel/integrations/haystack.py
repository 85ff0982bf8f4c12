"""Haystack adapter: a ranker ``@component`` that reranks documents in process (drop-in for CohereRanker).

Examples:
    >>> from rankfunnel.integrations.haystack import RankfunnelRanker  # doctest: +SKIP
    >>> pipe.add_component("ranker", RankfunnelRanker(reranker="auto", top_k=5))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rankfunnel._optional import require
from rankfunnel.errors import InvalidInputError
from rankfunnel.integrations import resolve_reranker
from rankfunnel.rerank.base import BaseReranker

require("haystack", "haystack", package="haystack-ai")
from haystack import Document, component  # noqa: E402

__all__ = ["RankfunnelRanker"]


@component
class RankfunnelRanker:
    """Rank Haystack documents with a rankfunnel reranker; ``Document.score`` becomes the calibrated 0-1 score.

    Like ``CohereRanker``, the text read is the values of ``meta_fields_to_embed`` and the content joined with
    ``meta_data_separator``.

    Args:
        reranker: A reranker object, or a :func:`rankfunnel.rerank.load_reranker` spec, loaded in
            :meth:`warm_up` (or on the first run).
        top_k: Documents to keep (a run may pass its own).
        meta_fields_to_embed: Metadata fields read before the content.
        meta_data_separator: Separator of those fields and the content.
        device: Device for a loaded model.
    """

    def __init__(self, reranker: BaseReranker | str | None = "auto", top_k: int = 10,
                 meta_fields_to_embed: list[str] | None = None, meta_data_separator: str = "\n",
                 device: str | None = None) -> None:
        if top_k < 1:
            raise InvalidInputError(f"top_k must be >= 1, got {top_k}.")
        self.reranker_spec = reranker
        self.top_k = top_k
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.meta_data_separator = meta_data_separator
        self.device = device
        self._reranker: BaseReranker | None = reranker if isinstance(reranker, BaseReranker) else None

    def warm_up(self) -> None:
        """Load the model (Haystack pipelines call this once before the first run)."""
        if self._reranker is None:
            self._reranker = resolve_reranker(self.reranker_spec, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        """Serialise (a spec string only: a reranker object cannot be written to YAML)."""
        from haystack import default_to_dict

        spec = self.reranker_spec if not isinstance(self.reranker_spec, BaseReranker) else None
        return default_to_dict(self, reranker=spec, top_k=self.top_k, meta_fields_to_embed=self.meta_fields_to_embed,
                               meta_data_separator=self.meta_data_separator, device=self.device)

    @component.output_types(documents=list[Document])
    def run(self, query: str, documents: list[Document], top_k: int | None = None) -> dict[str, list[Document]]:
        """The best ``top_k`` documents for ``query``, best first, with ``score`` set."""
        top = top_k if top_k is not None else self.top_k
        if top < 1:
            raise InvalidInputError(f"top_k must be >= 1, got {top}.")
        self.warm_up()
        assert self._reranker is not None
        texts = []
        for doc in documents:
            meta = [str(doc.meta[k]) for k in self.meta_fields_to_embed if doc.meta.get(k)]
            texts.append(self.meta_data_separator.join([*meta, doc.content or ""]))
        ranked = self._reranker.rank(query, texts, top)
        return {"documents": [replace(documents[i], score=norm) for i, _raw, norm in ranked]}
