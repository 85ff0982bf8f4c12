"""The service over the real LocalCollection (SQLite + Faiss + BM25) and the HashingEmbedder."""

from __future__ import annotations

import asyncio

import pytest
from svc_helpers import CORPUS, running

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig, create_app


@pytest.fixture
def index_dir(tmp_path):
    from rankfunnel.collection import open_collection
    from rankfunnel.embed import HashingEmbedder

    path = tmp_path / "idx"
    coll = open_collection(path, embedder=HashingEmbedder(dim=32), create=True)
    coll.add(CORPUS)
    close = getattr(coll, "close", None)
    if close is not None:
        close()
    return path


def test_index_dir_loaded_in_lifespan_with_specs(index_dir):
    app = create_app(ServiceConfig(), index_dir=index_dir, reranker_specs=["fake"])

    async def body():
        async with running(app) as c:
            out = {}
            for retriever in ("dense", "bm25", "hybrid"):
                r = await c.post(
                    "/v1/search",
                    json={
                        "query": "cancer patients treatment",
                        "retriever": retriever,
                        "top_k": 8,
                        "top_n": 3,
                    },
                )
                assert r.status_code == 200, r.text
                out[retriever] = r.json()
            add = await c.post(
                "/v1/documents",
                json={"documents": [{"id": "zz-1", "text": "zebra giraffe savanna migration"}]},
            )
            found = (
                await c.post(
                    "/v1/search", json={"query": "zebra giraffe savanna", "retriever": "bm25", "top_n": 1}
                )
            ).json()
            deleted = await c.delete("/v1/documents/zz-1")
            missing = await c.delete("/v1/documents/zz-1")
            return out, add, found, deleted, missing

    out, add, found, deleted, missing = asyncio.run(body())
    for res in out.values():
        assert res["reranked"] is True and res["reranker"] == "fake" and len(res["hits"]) == 3
    assert out["bm25"]["hits"][0]["id"] == "bio-3"
    assert add.status_code == 200 and add.json()["total"] == len(CORPUS) + 1
    assert found["hits"][0]["id"] == "zz-1"
    assert deleted.status_code == 200 and missing.status_code == 404


def test_fake_reranker_object_over_real_collection_matches_pipeline(index_dir):
    from rankfunnel.pipeline import Pipeline

    pipe = Pipeline.from_dir(index_dir, reranker="none")
    expected = Pipeline(pipe.collection, FakeReranker()).search("gene cells", top_k=10, top_n=5)

    async def body():
        app = create_app(ServiceConfig(), rerankers=[FakeReranker()], pipeline=pipe)
        async with running(app) as c:
            return (await c.post("/v1/search", json={"query": "gene cells", "top_k": 10, "top_n": 5})).json()

    got = asyncio.run(body())
    assert [h["id"] for h in got["hits"]] == [h.id for h in expected.hits]
    assert [h["rerank_score"] for h in got["hits"]] == [h.rerank_score for h in expected.hits]
