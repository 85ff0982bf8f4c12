"""The official clients, configured only by base URL and key, against one ``rankfunnel serve`` subprocess."""

from __future__ import annotations

import httpx
import pytest
from itest_helpers import DOCS, QUERY, assert_same_ranking, expected_ranking, run_side_client

pytestmark = pytest.mark.integration


def test_cohere_v2_client(server, tiny_reranker):
    import cohere

    co = cohere.ClientV2(api_key=server.api_key, base_url=server.base_url)
    res = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3, max_tokens_per_doc=512, priority=1)
    assert_same_ranking([(r.index, r.relevance_score) for r in res.results],
                        expected_ranking(tiny_reranker, QUERY, DOCS), top_n=3)
    assert res.meta is not None and res.meta.api_version is not None and res.meta.api_version.version == "2"
    assert any("rerank-v3.5" in w for w in res.meta.warnings or [])  # the model it did not use is said

    with pytest.raises(cohere.UnauthorizedError):
        cohere.ClientV2(api_key="wrong-key-123456", base_url=server.base_url).rerank(
            model="m", query=QUERY, documents=DOCS)
    with pytest.raises(cohere.UnprocessableEntityError):
        co.rerank(model="m", query=QUERY, documents=DOCS, top_n=0)


def test_cohere_v2_truncation_is_applied(server, tiny_reranker):
    import cohere

    long_doc = "patients " * 400 + "cancer"
    co = cohere.ClientV2(api_key=server.api_key, base_url=server.base_url)
    res = co.rerank(model="m", query=QUERY, documents=[long_doc, DOCS[1]], max_tokens_per_doc=8)
    assert_same_ranking([(r.index, r.relevance_score) for r in res.results],
                        expected_ranking(tiny_reranker, QUERY, [long_doc[:32], DOCS[1][:32]]))
    assert any("truncated" in w for w in res.meta.warnings or [])


def test_cohere_v1_client_objects_rank_fields_and_echo(server, tiny_reranker):
    import cohere

    docs = [{"title": f"doc {i}", "body": t, "source": f"s{i}"} for i, t in enumerate(DOCS)]
    co = cohere.Client(api_key=server.api_key, base_url=server.base_url)
    res = co.rerank(model="rerank-english-v3.0", query=QUERY, documents=docs, rank_fields=["body", "title"],
                    return_documents=True, top_n=4)
    rendered = [f"body: {d['body']}\ntitle: {d['title']}" for d in docs]
    assert_same_ranking([(r.index, r.relevance_score) for r in res.results],
                        expected_ranking(tiny_reranker, QUERY, rendered), top_n=4)
    for r in res.results:  # every field comes back, as Cohere does
        assert r.document is not None
        echoed = {k: v for k, v in r.document.model_dump().items() if v is not None}  # the SDK adds text=None
        assert echoed == docs[r.index]
    assert res.meta.api_version.version == "1"

    plain = co.rerank(model="m", query=QUERY, documents=DOCS, return_documents=True)
    assert_same_ranking([(r.index, r.relevance_score) for r in plain.results],
                        expected_ranking(tiny_reranker, QUERY, DOCS))
    assert [r.document.text for r in plain.results] == [DOCS[r.index] for r in plain.results]
    with pytest.raises(cohere.UnprocessableEntityError):  # an object without text and no rank_fields
        co.rerank(model="m", query=QUERY, documents=[{"body": "x"}])


def test_zeroentropy_client(server, tiny_reranker):
    from zeroentropy import ZeroEntropy

    ze = ZeroEntropy(api_key=server.api_key, base_url=f"{server.base_url}/v1")
    res = ze.models.rerank(model="zerank-2", query=QUERY, documents=DOCS, top_n=2)
    assert_same_ranking([(r.index, r.relevance_score) for r in res.results],
                        expected_ranking(tiny_reranker, QUERY, DOCS), top_n=2)
    assert res.actual_latency_mode == "fast"
    assert 0 <= res.inference_latency <= res.e2e_latency < 60
    assert res.total_bytes >= sum(len(d) for d in DOCS) and res.total_tokens > 0
    # every field the SDK declares is present and of the declared type (none read back as None)
    from zeroentropy.types import ModelRerankResponse

    raw = httpx.post(f"{server.base_url}/v1/models/rerank", headers={"Authorization": f"Bearer {server.api_key}"},
                     json={"model": "zerank-2", "query": QUERY, "documents": DOCS, "latency": "slow"}).json()
    ModelRerankResponse.model_validate(raw, strict=True)
    assert raw["actual_latency_mode"] == "slow"


def test_haystack_cohere_ranker(server, tiny_reranker):
    from haystack import Document, Pipeline
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker

    ranker = CohereRanker(api_key=Secret.from_token(server.api_key), api_base_url=server.base_url, top_k=3)
    pipe = Pipeline()
    pipe.add_component("ranker", ranker)
    out = pipe.run({"ranker": {"query": QUERY, "documents": [Document(content=t, meta={"pos": i})
                                                                  for i, t in enumerate(DOCS)]}})
    docs = out["ranker"]["documents"]
    assert_same_ranking([(d.meta["pos"], d.score) for d in docs], expected_ranking(tiny_reranker, QUERY, DOCS),
                        top_n=3)


def test_llamaindex_tei_rerank(server, tiny_reranker):
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    post = TextEmbeddingInference(base_url=server.base_url, top_n=3, auth_token=f"Bearer {server.api_key}")
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(DOCS)]
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert_same_ranking([(int(n.node.node_id), n.score) for n in out], expected_ranking(tiny_reranker, QUERY, DOCS),
                        top_n=3)


def test_langchain_cohere_rerank(server, tiny_reranker):
    got = run_side_client("langchain_cohere_rerank", server, {"query": QUERY, "documents": DOCS, "top_n": 3})
    assert_same_ranking([tuple(r) for r in got["results"]], expected_ranking(tiny_reranker, QUERY, DOCS), top_n=3)


def test_llamaindex_cohere_rerank(server, tiny_reranker):
    got = run_side_client("llamaindex_cohere_rerank", server, {"query": QUERY, "documents": DOCS, "top_n": 2})
    assert_same_ranking([tuple(r) for r in got["results"]], expected_ranking(tiny_reranker, QUERY, DOCS), top_n=2)
