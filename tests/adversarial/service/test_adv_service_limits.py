"""Class 4 (service): every field of /v1/documents and the rerank requests has a cap that names its limit.

Generated: which field is oversized and by how much (small limits keep the test fast). An oversized field
gets 413/422 naming the limit before any work is done (the model scores nothing, the collection gets
nothing); the same request at the limit is accepted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svc_helpers import MemoryCollection, make_pipeline, served

from rankfunnel.errors import InvalidInputError
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import Limits, ServiceConfig

LIMITS = Limits(
    max_documents=5,
    max_doc_chars=200,
    max_query_chars=50,
    max_id_chars=20,
    max_title_chars=40,
    max_metadata_bytes=100,
)
CFG = ServiceConfig(limits=LIMITS, cache_size=0, warmup=False)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _doc(field: str, size: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "d", "text": "some text", "title": "t", "metadata": {"k": "v"}}
    if field == "metadata":
        doc["metadata"] = {"k": "x" * max(0, size - len('{"k":""}'))}  # `size` bytes as compact JSON
    else:
        doc[field] = "x" * size
    return doc


FIELD_LIMIT = {
    "id": "max_id_chars",
    "title": "max_title_chars",
    "text": "max_doc_chars",
    "metadata": "max_metadata_bytes",
}


@SETTINGS
@given(field=st.sampled_from(sorted(FIELD_LIMIT)), over=st.integers(1, 5000), n_ok=st.integers(0, 3))
def test_document_fields_over_their_cap(field: str, over: int, n_ok: int):
    limit = getattr(LIMITS, FIELD_LIMIT[field])
    coll = MemoryCollection([])

    async def body():
        async with served(CFG, rerankers=[FakeReranker()], pipeline=make_pipeline(coll)) as c:
            docs = [{**_doc("text", 5), "id": f"ok{i}"} for i in range(n_ok)] + [_doc(field, limit + over)]
            too_big = await c.post("/v1/documents", json={"documents": docs})
            at_limit = await c.post("/v1/documents", json={"documents": [_doc(field, limit)]})
            return too_big, at_limit

    too_big, at_limit = asyncio.run(body())
    assert too_big.status_code in (413, 422), too_big.text
    assert FIELD_LIMIT[field] in too_big.json()["detail"] and f"documents[{n_ok}]" in too_big.json()["detail"]
    assert at_limit.status_code == 200, at_limit.text
    assert list(coll.docs) == [_doc(field, limit)["id"]], "a rejected batch must add nothing"


def test_too_many_documents_and_a_large_filter():
    async def body():
        async with served(CFG, rerankers=[FakeReranker()], pipeline=make_pipeline(MemoryCollection([]))) as c:
            many = await c.post(
                "/v1/documents", json={"documents": [{**_doc("text", 3), "id": str(i)} for i in range(6)]}
            )
            filt = await c.post("/v1/search", json={"query": "q", "top_k": 5, "filter": {"k": "x" * 200}})
            return many, filt

    many, filt = asyncio.run(body())
    assert many.status_code == 413 and "max_documents" in many.json()["detail"]
    assert filt.status_code == 413 and "max_metadata_bytes" in filt.json()["detail"]


@SETTINGS
@given(
    path=st.sampled_from(["/v2/rerank", "/v1/models/rerank", "/rerank"]),
    field=st.sampled_from(["query", "document", "count", "model"]),
    over=st.integers(1, 3000),
)
def test_rerank_fields_over_their_cap(path: str, field: str, over: int):
    model = FakeReranker()
    query, docs, name = "red car", ["a red car"], None
    if field == "query":
        query, limit = "q" * (LIMITS.max_query_chars + over), "max_query_chars"
    elif field == "document":
        docs, limit = ["d" * (LIMITS.max_doc_chars + over)], "max_doc_chars"
    elif field == "count":
        docs, limit = ["doc"] * (LIMITS.max_documents + min(over, 50)), "max_documents"
    else:
        name, limit = "m" * (LIMITS.max_id_chars + over), "max_id_chars"
    body: dict[str, Any] = {"query": query}
    body["texts" if path == "/rerank" else "documents"] = docs
    if name is not None and path != "/rerank":
        body["model"] = name

    async def call():
        async with served(CFG, rerankers=[model], index=False) as c:
            return await c.post(path, json=body)

    r = asyncio.run(call())
    if field == "model" and path == "/rerank":  # TEI has no model field
        assert r.status_code == 200
        return
    assert r.status_code in (413, 422), r.text
    assert limit in r.json()["detail"], r.json()["detail"]
    assert model.pairs_scored == 0, "an oversized request reached the model"


def test_limits_are_validated():
    for bad in ({"max_id_chars": 0}, {"max_title_chars": -1}, {"max_metadata_bytes": 1.5}):
        try:
            Limits(**bad)
        except InvalidInputError as exc:
            assert next(iter(bad)) in str(exc)
        else:
            raise AssertionError(f"Limits({bad}) was accepted")


def test_cohere_object_document_fields_are_bounded():
    model = FakeReranker()

    async def call(extra_chars: int):
        async with served(CFG, rerankers=[model], index=False) as c:
            doc = {"text": "a red car", "title": "t" * extra_chars}
            return await c.post("/v2/rerank", json={"query": "red car", "documents": [doc], "return_documents": True})

    big, ok = asyncio.run(call(LIMITS.max_metadata_bytes + 1)), asyncio.run(call(10))
    assert big.status_code == 413 and "max_metadata_bytes" in big.json()["detail"], big.text
    assert ok.status_code == 200, ok.text
