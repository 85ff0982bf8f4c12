"""Service traffic policies: shadow mode off the primary's path, and the sticky weighted A/B split."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from svc_helpers import make_pipeline, running

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.rerank.shadow import Shadow
from rankfunnel.rerank.variants import Variant
from rankfunnel.service import ServiceConfig
from rankfunnel.service.traffic import VARIANT_HEADER, TrafficOptions


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@asynccontextmanager
async def traffic_app(traffic: TrafficOptions | None, primary: Any = None):
    from rankfunnel.service.app import create_app

    app = create_app(
        ServiceConfig(warmup=False), rerankers=[primary or FakeReranker()], pipeline=make_pipeline(), traffic=traffic
    )
    async with running(app) as client:
        yield app, client


QUERIES = ["python list index error", "contract clause court", "gene cancer cells", "discount approval", "data"]


def test_slow_shadow_never_delays_the_primary(tmp_path: Path) -> None:
    async def timed(traffic: TrafficOptions | None) -> tuple[float, Any]:
        async with traffic_app(traffic) as (app, client):
            for q in QUERIES[:2]:  # warm-up
                await client.post("/v1/search", json={"query": q, "top_k": 8, "top_n": 3})
            t0 = time.perf_counter()
            for q in QUERIES:
                r = await client.post("/v1/search", json={"query": q, "top_k": 8, "top_n": 3})
                assert r.status_code == 200 and r.json()["reranked"]
                r = await client.post("/rerank", json={"query": q, "texts": ["a", "b c"]})
                assert r.status_code == 200
            elapsed = time.perf_counter() - t0
            metrics = (await client.get("/metrics")).text
            return elapsed, (app.state.engine.shadow.stats() if traffic else None, metrics)

    base, _ = run(timed(None))
    slow = Shadow(FakeReranker(delay_s=1.0, name="slow"), rate=1.0, log_path=tmp_path / "s.jsonl", max_queue=2)
    shadowed, (stats, metrics) = run(timed(TrafficOptions(shadow=slow)))
    # 10 timed requests (12 with the warm-up) against a 1 s shadow: on the primary's path they would add 10 s
    assert shadowed < base + 0.5, (shadowed, base)
    assert stats["sampled"] == 12 and stats["dropped"] >= 1  # one scored and two queued at most at a time
    assert "rankfunnel_shadow_dropped" in metrics
    recs = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(recs) == slow.stats()["recorded"] >= 1  # flushed on shutdown
    assert slow.stats()["recorded"] + slow.stats()["dropped"] == 12 and slow.stage2.chain[0].calls == len(recs)
    assert all(r["shadow"] == "slow" for r in recs)


def test_shadow_records_aggregate_into_metrics(tmp_path: Path) -> None:
    async def go() -> str:
        sh = Shadow(FakeReranker(scale=3.0, name="shadow"), rate=1.0, log_path=tmp_path / "s.jsonl")
        async with traffic_app(TrafficOptions(shadow=sh)) as (app, client):
            for q in QUERIES:
                assert (await client.post("/v1/search", json={"query": q, "top_k": 8, "top_n": 3})).status_code == 200
            await asyncio.to_thread(sh.flush, 10)
            return (await client.get("/metrics")).text

    text = run(go())
    assert "rankfunnel_shadow_records_total 5.0" in text
    assert "rankfunnel_shadow_overlap_count 5.0" in text


VARIANTS = (Variant("control", "primary", 3.0), Variant("new", "fake", 1.0))


def test_variant_is_sticky_weighted_and_named_everywhere() -> None:
    async def go() -> tuple[Counter[str], list[str], str, dict[str, str]]:
        opts = TrafficOptions(
            variants=VARIANTS, variant_rerankers={"new": [FakeReranker(name="new-fake", scale=2.0)]}
        )
        async with traffic_app(opts) as (_app, client):
            seen: Counter[str] = Counter()
            for i in range(400):
                r = await client.post("/rerank", json={"query": "red car", "texts": ["a red car", "a boat"]},
                                      headers={"X-User-Id": f"user-{i}"})
                assert r.status_code == 200
                seen[r.headers[VARIANT_HEADER]] += 1
            again = []
            for _ in range(3):
                r = await client.post("/v1/search", json={"query": "python list", "top_k": 5, "top_n": 2},
                                      headers={"X-User-Id": "user-7"})
                again.append(r.json()["variant"])
                assert r.headers[VARIANT_HEADER] == r.json()["variant"]
            cohere = await client.post("/v2/rerank", json={"query": "q", "documents": ["a"]},
                                       headers={"X-User-Id": "user-7"})
            zero = await client.post("/v1/models/rerank", json={"query": "q", "documents": ["a"]},
                                     headers={"X-User-Id": "user-7"})
            metrics = (await client.get("/metrics")).text
            others = {
                "cohere": cohere.headers[VARIANT_HEADER],
                "ze": zero.headers[VARIANT_HEADER],
                "cohere_model": cohere.json()["meta"]["model"],
            }
            return seen, again, metrics, others

    seen, again, metrics, others = run(go())
    assert set(seen) == {"control", "new"}
    assert 0.75 - 0.07 < seen["control"] / 400 < 0.75 + 0.07
    assert len(set(again)) == 1 and others["cohere"] == others["ze"] == again[0]
    # the variant's own reranker answered
    assert others["cohere_model"] == ("new-fake" if again[0] == "new" else "fake")
    assert 'rankfunnel_variant_requests_total{route="tei",variant="control"}' in metrics
    assert 'variant="new"' in metrics


def test_without_variants_nothing_is_added() -> None:
    async def go() -> Any:
        async with traffic_app(None) as (_app, client):
            return await client.post("/v1/search", json={"query": "python list", "top_k": 5, "top_n": 2})

    r = run(go())
    assert VARIANT_HEADER not in r.headers and r.json().get("variant") is None


def test_specs_load_in_the_lifespan_and_the_log_is_flushed_on_shutdown(tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    opts = TrafficOptions(shadow_spec="fake", shadow_rate=1.0, shadow_log=log, variants=(Variant("only", "fake", 1),))

    async def go() -> list[str]:
        async with traffic_app(opts) as (app, client):
            assert app.state.engine.variant_engines["only"].rerankers[0].name == "fake"
            out = []
            for q in QUERIES:
                r = await client.post("/v1/search", json={"query": q, "top_k": 8, "top_n": 3})
                out.append(r.json()["variant"])
            return out

    assert run(go()) == ["only"] * 5
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) == 5 and {r["variant"] for r in recs} == {"only"}


def test_readyz_waits_for_every_variant_to_be_warm() -> None:
    """A variant takes live traffic: while its model cannot score the warm-up batch the service is not ready."""
    from rankfunnel.service.app import create_app

    broken = FakeReranker(name="broken", fail_with=RuntimeError("weights missing"))
    opts = TrafficOptions(variants=(Variant("control", "primary", 1), Variant("new", "x", 1)),
                          variant_rerankers={"new": [broken]})

    async def go() -> tuple[Any, Any]:
        app = create_app(ServiceConfig(), rerankers=[FakeReranker()], pipeline=make_pipeline(), traffic=opts)
        async with running(app) as client:
            for _ in range(200):  # the primary warms at once; the variant keeps failing
                if app.state.engine.warm:
                    break
                await asyncio.sleep(0.01)
            cold = await client.get("/readyz")
            broken.fail_with = None  # the variant recovers: its warm-up retry succeeds (after a 1 s pause)
            for _ in range(300):
                ready = await client.get("/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.02)
            return cold, ready

    cold, ready = run(go())
    assert cold.status_code == 503 and "new" in cold.json()["variants"] and "weights missing" in cold.text
    assert ready.status_code == 200 and ready.json()["variants"] == {"new": ["broken"]}
