"""Faults, back-pressure and bad input: fail-open/closed, fallback chain, 429, and 4xx (never 500)."""

from __future__ import annotations

import asyncio

import pytest
from svc_helpers import MemoryCollection, make_pipeline, served

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import Limits, ServiceConfig

DOCS = ["a red car", "a blue boat", "red", "the car is red and fast"]


def run(coro):
    return asyncio.run(coro)


def _stage1_ids(query: str, n: int) -> list[str]:
    return [h.id for h in MemoryCollection().search(query, k=n)]


def test_fail_open_on_injected_timeout():
    async def body():
        async with served(ServiceConfig(deadline_ms=100), rerankers=[FakeReranker(delay_s=1.0)]) as c:
            r = await c.post("/v1/search", json={"query": "gene cells", "top_k": 6, "top_n": 3})
            fast = await c.post("/v1/search", json={"query": "gene cells", "top_n": 3, "timeout_ms": 20})
            return r, fast

    r, fast = run(body())
    assert r.status_code == 200
    got = r.json()
    assert got["reranked"] is False and "timed out" in got["reason"] and "stage-1" in got["reason"]
    assert [h["id"] for h in got["hits"]] == _stage1_ids("gene cells", 3)
    assert all(h["rerank_score"] is None for h in got["hits"])
    assert fast.json()["reranked"] is False and "deadline" in fast.json()["reason"]


def test_fail_open_on_injected_exception():
    async def body():
        async with served(rerankers=[FakeReranker(fail_with=RuntimeError("CUDA out of memory"))]) as c:
            return await c.post("/v1/search", json={"query": "gene cells", "top_n": 3})

    got = run(body()).json()
    assert got["reranked"] is False
    assert "RuntimeError" in got["reason"] and "CUDA out of memory" in got["reason"]
    assert [h["id"] for h in got["hits"]] == _stage1_ids("gene cells", 3)


def test_fail_closed_answers_503_with_retry_after():
    async def body():
        cfg = ServiceConfig(fail_open=False)
        async with served(cfg, rerankers=[FakeReranker(fail_with=RuntimeError("boom"))]) as c:
            return await c.post("/v1/search", json={"query": "gene cells"})

    r = run(body())
    assert r.status_code == 503 and "boom" in r.json()["detail"] and r.headers["retry-after"] == "1"


def test_direct_rerank_failure_is_503_not_fake_scores():
    async def body():
        async with served(rerankers=[FakeReranker(fail_with=ValueError("bad"))], index=False) as c:
            return await c.post("/v2/rerank", json={"query": "red car", "documents": DOCS})

    r = run(body())
    assert r.status_code == 503 and "bad" in r.json()["detail"]


def test_fallback_chain_after_timeout_and_error():
    slow = FakeReranker(delay_s=1.0, name="gpu-model")
    broken = FakeReranker(fail_with=RuntimeError("driver"), name="mid-model")
    cpu = FakeReranker(name="cpu-model")

    async def body():
        cfg = ServiceConfig(deadline_ms=2000, attempt_timeout_ms=100)
        async with served(cfg, rerankers=[slow, broken, cpu]) as c:
            return (await c.post("/v1/search", json={"query": "gene cells", "top_n": 3})).json()

    got = run(body())
    assert got["reranked"] is True and got["reranker"] == "cpu-model"
    assert "gpu-model" in got["reason"] and "timed out" in got["reason"] and "driver" in got["reason"]
    assert "fallback 'cpu-model'" in got["reason"]


def test_flooded_queue_answers_429_with_retry_after():
    async def body():
        cfg = ServiceConfig(max_queue_pairs=8, max_batch_pairs=4, max_wait_ms=0)
        async with served(cfg, rerankers=[FakeReranker(delay_s=0.15)], index=False) as c:
            reqs = [
                c.post("/v2/rerank", json={"query": f"red car {i}", "documents": DOCS}) for i in range(12)
            ]
            rs = await asyncio.gather(*reqs)
            metrics = (await c.get("/metrics")).text
            return rs, metrics

    rs, metrics = run(body())
    codes = [r.status_code for r in rs]
    assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
    for r in rs:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert "max_queue_pairs" in r.json()["detail"]
    assert "rankfunnel_rejected_total" in metrics


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        (b'{"query": "red", "documents": ["a"', 400, "Malformed JSON"),
        (b'{"query": 123, "documents": ["a"]}', 422, "query"),
        (b'{"query": "red", "documents": "a red car"}', 422, "documents"),
        (b'{"query": "red", "documents": [1, 2]}', 422, "documents"),
        (b'{"query": "red", "documents": []}', 422, "empty"),
        (b'{"query": "red", "documents": ["ok", "  "]}', 422, "documents[1] is empty"),
        (b'{"query": "   ", "documents": ["a"]}', 422, "query is empty"),
        (b'{"query": "red", "documents": ["a"], "top_n": 0}', 422, "top_n"),
        (b'{"documents": ["a"]}', 422, "query"),
        (b"[1, 2, 3]", 422, "Invalid request"),
        ('{"query": "r\xe9d", "documents": ["a"]}'.encode("latin-1"), 400, ""),
        (b"\xff\xfe\x00garbage", 400, ""),
        (b"", 422, ""),
    ],
)
def test_bad_input_is_4xx_never_500(payload, status, needle):
    async def body():
        async with served(rerankers=[FakeReranker()], index=False) as c:
            return await c.post("/v2/rerank", content=payload, headers={"content-type": "application/json"})

    r = run(body())
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_limits_name_the_limit():
    limits = Limits(max_documents=3, max_doc_chars=20, max_query_chars=10, max_body_bytes=2000)

    async def body():
        async with served(ServiceConfig(limits=limits), rerankers=[FakeReranker()]) as c:
            many = await c.post("/v2/rerank", json={"query": "red", "documents": ["a", "b", "c", "d"]})
            long_doc = await c.post("/v2/rerank", json={"query": "red", "documents": ["x" * 21]})
            long_q = await c.post("/v2/rerank", json={"query": "q" * 11, "documents": ["a"]})
            big = await c.post("/v2/rerank", json={"query": "red", "documents": ["x" * 3000]})
            top_k = await c.post("/v1/search", json={"query": "red", "top_k": 4})
            tei_trunc = await c.post(
                "/rerank", json={"query": "red", "texts": ["red " * 10], "truncate": True}
            )
            return many, long_doc, long_q, big, top_k, tei_trunc

    many, long_doc, long_q, big, top_k, tei_trunc = run(body())
    assert many.status_code == 413 and "max_documents" in many.json()["detail"]
    assert long_doc.status_code == 413 and "max_doc_chars" in long_doc.json()["detail"]
    assert long_q.status_code == 422 and "max_query_chars" in long_q.json()["detail"]
    assert big.status_code == 413
    assert top_k.status_code == 422 and "max_documents" in top_k.json()["detail"]
    assert tei_trunc.status_code == 200  # TEI's truncate=true cuts instead of refusing


def test_search_bad_fields():
    async def body():
        async with served(rerankers=[FakeReranker()]) as c:
            bad_mode = await c.post("/v1/search", json={"query": "x", "mode": "stream"})
            bad_rerank = await c.post("/v1/search", json={"query": "x", "rerank": "sometimes"})
            bad_retriever = await c.post("/v1/search", json={"query": "x", "retriever": "magic"})
            return bad_mode, bad_rerank, bad_retriever

    for r in run(body()):
        assert r.status_code == 422, r.text


def test_inflight_limit_answers_429_before_reading_the_body():
    async def body():
        cfg = ServiceConfig(max_inflight=2)
        async with served(cfg, rerankers=[FakeReranker(delay_s=0.2)], index=False) as c:
            rs = await asyncio.gather(
                *[c.post("/v2/rerank", json={"query": f"q{i}", "documents": DOCS}) for i in range(6)]
            )
            health = await c.get("/healthz")
            return rs, health

    rs, health = run(body())
    codes = sorted(r.status_code for r in rs)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and health.status_code == 200
    assert all("max_inflight=2" in r.json()["detail"] for r in rs if r.status_code == 429)


def test_unexpected_server_fault_is_a_json_500_without_internals():
    class Broken(MemoryCollection):
        def search(self, *a, **k):
            raise RuntimeError("secret path /etc/x")

    async def body():
        async with served(rerankers=[FakeReranker()], pipeline=make_pipeline(Broken())) as c:
            return await c.post("/v1/search", json={"query": "gene"})

    r = run(body())
    assert r.status_code == 500 and r.json()["error"] == "InternalError" and "secret" not in r.text
