"""LangChain adapters: a document compressor (rerank what a retriever found) and a retriever over a Pipeline.

Examples:
    >>> from rankfunnel.integrations.langchain import RankfunnelRerank  # doctest: +SKIP
    >>> from langchain_core.documents import Document  # doctest: +SKIP
    >>> rr = RankfunnelRerank(reranker="fake", top_n=1)  # doctest: +SKIP
    >>> rr.compress_documents([Document("a boat"), Document("a red car")], "red car")[0].page_content  # doctest: +SKIP
    'a red car'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rankfunnel._optional import require
from rankfunnel.integrations import resolve_reranker

require("langchain_core", "langchain", package="langchain-core")
from langchain_core.callbacks import CallbackManagerForRetrieverRun, Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import ConfigDict, Field, model_validator  # noqa: E402

__all__ = ["RankfunnelRerank", "RankfunnelRetriever"]


class RankfunnelRerank(BaseDocumentCompressor):
    """Rerank LangChain documents in process with a rankfunnel reranker (drop-in for ``CohereRerank``).

    Each returned document is a copy whose metadata gains ``relevance_score`` (calibrated 0-1, like Cohere's)
    and ``rerank_score`` (raw model output).

    Args:
        reranker: A reranker object, or a :func:`rankfunnel.rerank.load_reranker` spec (model name or path,
            ``"auto"``, ``"fake"``...), loaded once when the compressor is built.
        top_n: Documents to keep (None: all, reordered).
        device: Device for a loaded model.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Any = "auto"
    top_n: int | None = Field(3, ge=1)
    device: str | None = None

    @model_validator(mode="after")
    def _load(self) -> RankfunnelRerank:
        self.reranker = resolve_reranker(self.reranker, device=self.device)
        return self

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The best ``top_n`` documents for ``query``, best first."""
        ranked = self.reranker.rank(query, [d.page_content for d in documents], self.top_n)
        out = []
        for i, raw, norm in ranked:
            doc = documents[i]
            meta = {**doc.metadata, "relevance_score": norm, "rerank_score": raw}
            out.append(Document(page_content=doc.page_content, metadata=meta, id=doc.id))
        return out


class RankfunnelRetriever(BaseRetriever):
    """A LangChain retriever over a whole :class:`~rankfunnel.pipeline.Pipeline` (recall, then rerank).

    Metadata of each document: the rankfunnel ``id``, ``title``, the stored metadata, ``score`` (final),
    ``rerank_score`` (raw, None when not reranked), ``stage1_rank``, ``stage1_score`` and ``reranked``.

    Args:
        pipeline: A Pipeline (e.g. ``Pipeline.from_dir("out/idx")``).
        top_k: Stage-1 candidates (None: the pipeline's default).
        top_n: Documents returned (None: the pipeline's default).
        retriever: ``dense``, ``bm25`` or ``hybrid`` (None: the pipeline's default).
        filter: Metadata filter passed to the pipeline.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    pipeline: Any
    top_k: int | None = Field(None, ge=1)
    top_n: int | None = Field(None, ge=1)
    retriever: str | None = None
    filter: dict[str, Any] | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        res = self.pipeline.search(
            query, top_k=self.top_k, top_n=self.top_n, retriever=self.retriever, filter=self.filter
        )
        out = []
        for h in res.hits:
            d = h.document
            meta: dict[str, Any] = {
                **(dict(d.metadata) if d is not None else {}),
                "id": h.id,
                "title": d.title if d is not None else "",
                "score": h.score,
                "rerank_score": h.rerank_score,
                "stage1_rank": h.stage1_rank,
                "stage1_score": h.stage1_score,
                "reranked": res.reranked,
            }
            out.append(Document(page_content=d.text if d is not None else "", metadata=meta, id=h.id))
        return out
