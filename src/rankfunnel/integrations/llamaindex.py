"""LlamaIndex adapter: a node postprocessor that reranks retrieved nodes in process (drop-in for CohereRerank).

Examples:
    >>> from rankfunnel.integrations.llamaindex import RankfunnelRerank  # doctest: +SKIP
    >>> query_engine = index.as_query_engine(node_postprocessors=[RankfunnelRerank(top_n=3)])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from rankfunnel._optional import require
from rankfunnel.integrations import resolve_reranker
from rankfunnel.rerank.base import BaseReranker

require("llama_index.core", "llamaindex", package="llama-index-core")
from llama_index.core.bridge.pydantic import Field, PrivateAttr  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402

__all__ = ["RankfunnelRerank"]


class RankfunnelRerank(BaseNodePostprocessor):
    """Rerank LlamaIndex nodes with a rankfunnel reranker; node scores become calibrated 0-1 scores.

    The text read for each node is ``node.get_content(metadata_mode=MetadataMode.EMBED)``, as LlamaIndex's
    ``CohereRerank`` does.

    Args:
        reranker: A reranker object, or a :func:`rankfunnel.rerank.load_reranker` spec loaded once.
        top_n: Nodes to keep.
        device: Device for a loaded model.
    """

    top_n: int = Field(default=5, ge=1, description="Nodes to keep.")
    _reranker: BaseReranker = PrivateAttr()

    def __init__(self, reranker: BaseReranker | str | None = "auto", top_n: int = 5, device: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(top_n=top_n, **kwargs)  # type: ignore[call-arg]  # pydantic field
        self._reranker = resolve_reranker(reranker, device=device)

    @classmethod
    def class_name(cls) -> str:
        return "RankfunnelRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("RankfunnelRerank needs the query: call postprocess_nodes(nodes, query_str=...).")
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = self._reranker.rank(query_bundle.query_str, texts, self.top_n)
        return [NodeWithScore(node=nodes[i].node, score=norm) for i, _raw, norm in ranked]
