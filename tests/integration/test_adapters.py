"""The in-process adapters (rankfunnel.integrations) inside the real LangChain, LlamaIndex and Haystack."""

from __future__ import annotations

import pytest
from itest_helpers import DOCS, QUERY, assert_same_ranking, expected_ranking

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.types import Document

pytestmark = pytest.mark.integration


def test_langchain_compressor_with_tiny_model(tiny_reranker):
    from langchain_core.documents import Document as LCDocument

    from rankfunnel.integrations.langchain import RankfunnelRerank

    comp = RankfunnelRerank(reranker=tiny_reranker, top_n=3)
    docs = [LCDocument(page_content=t, metadata={"pos": i}) for i, t in enumerate(DOCS)]
    out = comp.compress_documents(docs, QUERY)
    assert_same_ranking([(d.metadata["pos"], d.metadata["relevance_score"]) for d in out],
                        expected_ranking(tiny_reranker, QUERY, DOCS), top_n=3)
    assert all("rerank_score" in d.metadata for d in out) and "relevance_score" not in docs[0].metadata
    assert RankfunnelRerank(reranker="fake", top_n=None).compress_documents(docs, QUERY)[0].metadata["pos"] in (1, 4)
    with pytest.raises(ValueError):
        RankfunnelRerank(reranker="fake", top_n=0)


def test_langchain_retriever_over_a_pipeline(tmp_path, fake_embedder):
    from langchain_core.retrievers import BaseRetriever

    from rankfunnel.collection import open_collection
    from rankfunnel.integrations.langchain import RankfunnelRetriever
    from rankfunnel.pipeline import Pipeline

    col = open_collection(str(tmp_path / "idx"), embedder=fake_embedder, create=True)
    col.add([Document(id=f"d{i}", text=t, title=f"t{i}", metadata={"k": i}) for i, t in enumerate(DOCS)],
            show_progress=False)
    pipe = Pipeline(col, FakeReranker(), retriever="hybrid", top_k=5, top_n=3)
    retriever = RankfunnelRetriever(pipeline=pipe, top_n=2)
    assert isinstance(retriever, BaseRetriever)
    got = retriever.invoke(QUERY)
    want = pipe.search(QUERY, top_n=2)
    assert [d.metadata["id"] for d in got] == [h.id for h in want.hits]
    assert [d.metadata["score"] for d in got] == [h.score for h in want.hits]
    first = DOCS[int(got[0].metadata["id"][1:])]
    assert got[0].page_content == first and got[0].metadata["reranked"] is True
    assert got[0].metadata["k"] == int(got[0].metadata["id"][1:])  # stored metadata comes along


def test_llamaindex_postprocessor_with_tiny_model(tiny_reranker):
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, TextNode

    from rankfunnel.integrations.llamaindex import RankfunnelRerank

    post = RankfunnelRerank(reranker=tiny_reranker, top_n=2)
    assert isinstance(post, BaseNodePostprocessor)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(DOCS)]
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert_same_ranking([(int(n.node.node_id), n.score) for n in out], expected_ranking(tiny_reranker, QUERY, DOCS),
                        top_n=2)
    with pytest.raises(ValueError, match="query"):
        post.postprocess_nodes(nodes)


def test_haystack_ranker_in_a_pipeline(tiny_reranker):
    from haystack import Document as HSDocument
    from haystack import Pipeline

    from rankfunnel.integrations.haystack import RankfunnelRanker

    pipe = Pipeline()
    pipe.add_component("ranker", RankfunnelRanker(reranker=tiny_reranker, top_k=3))
    docs = [HSDocument(content=t, meta={"pos": i}) for i, t in enumerate(DOCS)]
    out = pipe.run({"ranker": {"query": QUERY, "documents": docs}})["ranker"]["documents"]
    assert_same_ranking([(d.meta["pos"], d.score) for d in out], expected_ranking(tiny_reranker, QUERY, DOCS),
                        top_n=3)
    # meta fields are read before the content, as CohereRanker does
    ranker = RankfunnelRanker(reranker="fake", top_k=1, meta_fields_to_embed=["tag"])
    tagged = [HSDocument(content="nothing here", meta={"tag": "cancer patients"}), HSDocument(content="a boat")]
    assert ranker.run(query="cancer patients", documents=tagged)["documents"][0].content == "nothing here"
    assert ranker.to_dict()["init_parameters"]["reranker"] == "fake"
