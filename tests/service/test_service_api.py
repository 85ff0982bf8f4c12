"""Endpoints and their wire shapes, through httpx.ASGITransport with the lifespan running."""

from __future__ import annotations

import asyncio
import json

from svc_helpers import CORPUS, MemoryCollection, make_pipeline, served

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig

DOCS = ["a red car", "a blue boat", "red", "the car is red and fast"]


def run(coro):
    return asyncio.run(coro)


def test_search_blocking_matches_library_pipeline():
    from rankfunnel.pipeline import Pipeline

    expected = Pipeline(MemoryCollection(), FakeReranker()).search("python list error", top_k=8, top_n=3)

    async def body():
        async with served(rerankers=[FakeReranker()]) as c:
            r = await c.post("/v1/search", json={"query": "python list error", "top_k": 8, "top_n": 3})
            assert r.status_code == 200, r.text
            return r.json()

    got = run(body())
    assert got["reranked"] is True and got["reason"] is None and got["reranker"] == "fake"
    assert [h["id"] for h in got["hits"]] == [h.id for h in expected.hits]
    assert [h["score"] for h in got["hits"]] == [h.score for h in expected.hits]
    assert set(got["timings_ms"]) >= {"stage1_ms", "rerank_ms", "total_ms"}


def test_search_rerank_false_and_auto():
    async def body():
        async with served(ServiceConfig(auto_margin=0.0), rerankers=[FakeReranker()]) as c:
            off = (await c.post("/v1/search", json={"query": "cancer cells", "rerank": False})).json()
            auto = (await c.post("/v1/search", json={"query": "cancer cells", "rerank": "auto"})).json()
        async with served(ServiceConfig(auto_margin=100.0), rerankers=[FakeReranker()]) as c:
            auto_on = (await c.post("/v1/search", json={"query": "cancer cells", "rerank": "auto"})).json()
        return off, auto, auto_on

    off, auto, auto_on = run(body())
    assert off["reranked"] is False and "rerank=false" in off["reason"]
    assert [h["rank"] for h in off["hits"]] == [h["stage1_rank"] for h in off["hits"]]
    assert auto["reranked"] is False and "stage 2 skipped" in auto["reason"] and "margin" in auto["reason"]
    assert auto_on["reranked"] is True


def test_two_phase_sse_order():
    async def body():
        async with (
            served(rerankers=[FakeReranker(delay_s=0.05)]) as c,
            c.stream(
                "POST",
                "/v1/search",
                json={"query": "discount approval", "mode": "two-phase", "top_k": 10, "top_n": 4},
            ) as r,
        ):
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "".join([chunk async for chunk in r.aiter_text()])
        return text

    text = run(body())
    events = [blk for blk in text.split("\n\n") if blk.strip()]
    names = [blk.splitlines()[0].removeprefix("event: ") for blk in events]
    assert names == ["stage1", "reranked"]
    first = json.loads(events[0].splitlines()[1].removeprefix("data: "))
    second = json.loads(events[1].splitlines()[1].removeprefix("data: "))
    assert first["reranked"] is False and "two-phase" in first["reason"]
    assert second["reranked"] is True and len(second["hits"]) == 4
    assert {h["id"] for h in second["hits"]} <= {d.id for d in CORPUS}


def test_cohere_shape():
    fake = FakeReranker()
    expected = fake.rank("red car", DOCS)

    async def body():
        async with served(rerankers=[fake], index=False) as c:
            r = await c.post(
                "/v2/rerank", json={"model": "rerank-v3.5", "query": "red car", "documents": DOCS, "top_n": 2}
            )
            v1 = await c.post(
                "/v1/rerank",
                json={"query": "red car", "documents": [{"text": d} for d in DOCS], "return_documents": True},
            )
            return r, v1

    r, v1 = run(body())
    assert r.status_code == 200, r.text
    body_ = r.json()
    assert set(body_) == {"id", "results", "meta"}
    assert [(x["index"], x["relevance_score"]) for x in body_["results"]] == [
        (i, n) for i, _, n in expected[:2]
    ]
    assert "rerank-v3.5" in " ".join(body_["meta"]["warnings"])  # the unknown model is said, not hidden
    assert [x["document"]["text"] for x in v1.json()["results"]][0] == DOCS[expected[0][0]]


def test_cohere_v1_objects_rank_fields_and_echo():
    fake = FakeReranker()
    docs = [
        {"title": "boat", "body": "a blue boat", "id": 7, "tags": ["x"], "note": None},
        {"title": "red car", "body": "fast and red", "id": 8},
        {"title": "car", "body": "ünïcode car: parked", "id": 9},
    ]
    rendered = ["title: boat\nbody: a blue boat", "title: red car\nbody: fast and red",
                "title: car\nbody: 'ünïcode car: parked'"]
    expected = fake.rank("red car", rendered)

    async def body():
        async with served(rerankers=[fake], index=False) as c:
            v1 = await c.post("/v1/rerank", json={"query": "red car", "documents": docs,
                                                   "rank_fields": ["title", "body"], "return_documents": True,
                                                   "max_chunks_per_doc": 3})
            v2 = await c.post("/v2/rerank", json={"query": "red car", "documents": docs,
                                                   "rank_fields": ["title", "body"], "priority": 5})
            no_text = await c.post("/v1/rerank", json={"query": "red car", "documents": docs})
            no_field = await c.post("/v1/rerank", json={"query": "red car", "documents": docs,
                                                         "rank_fields": ["author"]})
            mixed = await c.post("/v1/rerank", json={"query": "red car", "return_documents": True,
                                                      "documents": ["a red car", {"text": "a boat", "k": 1}]})
            return v1, v2, no_text, no_field, mixed

    v1, v2, no_text, no_field, mixed = run(body())
    assert v1.status_code == 200 and v2.status_code == 200, (v1.text, v2.text)
    got = v1.json()
    assert [(x["index"], x["relevance_score"]) for x in got["results"]] == [(i, n) for i, _, n in expected]
    assert [x["document"] for x in got["results"]] == [docs[i] for i, _, _ in expected]  # every field, as sent
    assert got["meta"]["api_version"] == {"version": "1"}
    assert any("max_chunks_per_doc" in w for w in got["meta"]["warnings"])
    assert v2.json()["meta"]["api_version"] == {"version": "2"}
    assert [x["index"] for x in v2.json()["results"]] == [i for i, _, _ in expected]
    assert "document" not in v2.json()["results"][0]
    assert no_text.status_code == 422 and "documents[0]" in no_text.json()["detail"]
    assert "rank_fields" in no_text.json()["detail"]
    assert no_field.status_code == 422 and "author" in no_field.json()["detail"]
    assert mixed.status_code == 200
    assert {x["index"]: x["document"] for x in mixed.json()["results"]} == {
        0: {"text": "a red car"}, 1: {"text": "a boat", "k": 1}}


def test_openapi_lists_every_route():
    from fastapi.routing import APIRoute

    from rankfunnel.service import create_app
    from rankfunnel.service.routes import router

    app = create_app(ServiceConfig(), rerankers=[FakeReranker()])
    paths = app.openapi()["paths"]
    routes = {(r.path, m.lower()) for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert routes, "no routes found"
    missing = [(p, m) for p, m in routes if m not in paths.get(p, {})]
    assert not missing, missing
    assert {"/v1/rerank", "/v2/rerank", "/v1/models/rerank", "/rerank"} <= set(paths)


def test_cohere_max_tokens_per_doc_truncates_and_says_so():
    async def body():
        async with served(rerankers=[FakeReranker()], index=False) as c:
            return (
                await c.post(
                    "/v2/rerank",
                    json={"query": "car", "documents": ["x" * 100 + " car", "car"], "max_tokens_per_doc": 10},
                )
            ).json()

    got = run(body())
    assert any("truncated" in w for w in got["meta"]["warnings"])
    assert got["results"][0]["index"] == 1  # "car" was cut from document 0


def test_zeroentropy_and_tei_shapes():
    fake = FakeReranker()
    expected = fake.rank("red car", DOCS)

    async def body():
        async with served(rerankers=[fake], index=False) as c:
            ze = await c.post(
                "/v1/models/rerank",
                json={"model": "zerank-2", "query": "red car", "documents": DOCS, "latency": "fast"},
            )
            tei = await c.post(
                "/rerank", json={"query": "red car", "texts": DOCS, "raw_scores": True, "return_text": True}
            )
            tei2 = await c.post("/rerank", json={"query": "red car", "texts": DOCS})
            return ze.json(), tei.json(), tei2.json()

    ze, tei, tei2 = run(body())
    assert [(x["index"], x["relevance_score"]) for x in ze["results"]] == [(i, n) for i, _, n in expected]
    assert {"e2e_latency", "inference_latency", "total_tokens", "total_bytes"} <= set(ze)
    assert ze["actual_latency_mode"] == "fast"
    assert 0 <= ze["inference_latency"] <= ze["e2e_latency"]
    assert isinstance(tei, list) and [(x["index"], x["score"]) for x in tei] == [
        (i, r) for i, r, _ in expected
    ]
    assert tei[0]["text"] == DOCS[expected[0][0]]
    assert "text" not in tei2[0] and all(0 <= x["score"] <= 1 for x in tei2)


def test_documents_add_delete_then_search():
    pipe = make_pipeline()

    async def body():
        async with served(rerankers=[FakeReranker()], pipeline=pipe) as c:
            r = await c.post(
                "/v1/documents",
                json={"documents": [{"id": "new-1", "text": "zebra giraffe savanna", "metadata": {"k": 1}}]},
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"added": 1, "total": len(CORPUS) + 1}
            s = (
                await c.post("/v1/search", json={"query": "zebra giraffe", "top_n": 1, "return_text": True})
            ).json()
            assert s["hits"][0]["id"] == "new-1" and s["hits"][0]["text"] == "zebra giraffe savanna"
            d = await c.delete("/v1/documents/new-1")
            assert d.status_code == 200 and d.json()["deleted"] == "new-1"
            again = await c.delete("/v1/documents/new-1")
            assert again.status_code == 404 and "new-1" in again.json()["detail"]

    run(body())


def test_health_ready_metrics():
    async def body():
        async with served(rerankers=[FakeReranker()]) as c:
            assert (await c.get("/healthz")).json() == {"status": "ok"}
            ready = (await c.get("/readyz")).json()
            await c.post("/v2/rerank", json={"query": "red car", "documents": DOCS})
            await c.post("/v2/rerank", json={"query": "red car", "documents": DOCS})
            m = await c.get("/metrics")
            return ready, m

    ready, m = run(body())
    assert ready["status"] == "ready" and ready["rerankers"] == ["fake"]
    text = m.text
    for name in (
        "rankfunnel_requests_total",
        "rankfunnel_stage_latency_seconds",
        "rankfunnel_batch_pairs",
        "rankfunnel_queue_pairs",
        "rankfunnel_cache_hit_rate",
        "rankfunnel_cache_hits_total",
    ):
        assert name in text, name
    assert 'rankfunnel_requests_total{route="/v2/rerank",status="200"} 2.0' in text
    assert "rankfunnel_cache_hit_rate 0.5" in text


def test_search_without_index_is_501_not_500():
    async def body():
        async with served(rerankers=[FakeReranker()], index=False) as c:
            return await c.post("/v1/search", json={"query": "x"})

    r = run(body())
    assert r.status_code == 501 and "--index-dir" in r.json()["detail"]


def test_api_keys():
    key = "s3cret-key-123"

    async def body():
        async with served(ServiceConfig(api_keys=(key,)), rerankers=[FakeReranker()], index=False) as c:
            payload = {"query": "red car", "documents": DOCS}
            none = await c.post("/v2/rerank", json=payload)
            wrong = await c.post(
                "/v2/rerank", json=payload, headers={"Authorization": "Bearer nope-nope-nope"}
            )
            bearer = await c.post("/v2/rerank", json=payload, headers={"Authorization": f"Bearer {key}"})
            xkey = await c.post("/v2/rerank", json=payload, headers={"X-API-Key": key})
            health = await c.get("/healthz")
            metrics = await c.get("/metrics")
            return none, wrong, bearer, xkey, health, metrics

    none, wrong, bearer, xkey, health, metrics = run(body())
    assert none.status_code == 401 and wrong.status_code == 401 and metrics.status_code == 401
    assert "API key" in none.json()["detail"] and none.headers["www-authenticate"] == "Bearer"
    assert bearer.status_code == 200 and xkey.status_code == 200 and health.status_code == 200


def test_api_key_ok_is_constant_time_over_all_keys():
    from rankfunnel.service.app import api_key_ok

    assert api_key_ok("b" * 10, ["a" * 10, "b" * 10])
    assert not api_key_ok("c" * 10, ["a" * 10, "b" * 10])
    assert not api_key_ok(None, ["a" * 10])
    assert not api_key_ok("é", ["a" * 10])
