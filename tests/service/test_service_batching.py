"""Cross-request batching (identical to the unbatched path), the score cache and the config checks."""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import pytest
from svc_helpers import served

from rankfunnel.errors import InvalidInputError, OverloadedError
from rankfunnel.rerank.cache import ScoreCache, cache_key
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig
from rankfunnel.service.batcher import MicroBatcher
from rankfunnel.service.engine import WARMUP_PAIRS

WORDS = [
    "red",
    "car",
    "blue",
    "boat",
    "fast",
    "slow",
    "gene",
    "cell",
    "court",
    "law",
    "price",
    "rule",
    "list",
    "index",
    "error",
    "python",
]


def _docs(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(n)]


def test_concurrent_requests_are_batched_and_identical_to_unbatched():
    rng = random.Random(0)
    requests = [(" ".join(rng.choices(WORDS, k=3)), _docs(rng, rng.randint(1, 17))) for _ in range(32)]
    reference = FakeReranker()
    expected = [reference.rank(q, d) for q, d in requests]
    served_model = FakeReranker(delay_s=0.02)

    async def body():
        cfg = ServiceConfig(max_wait_ms=20, cache_size=0)
        async with served(cfg, rerankers=[served_model], index=False) as c:
            rs = await asyncio.gather(
                *[c.post("/v2/rerank", json={"query": q, "documents": d}) for q, d in requests]
            )
            return [r.json() for r in rs], (await c.get("/metrics")).text

    got, metrics = run(body())
    for exp, g in zip(expected, got, strict=True):
        assert [(x["index"], x["relevance_score"]) for x in g["results"]] == [(i, n) for i, _, n in exp]
    assert served_model.pairs_scored == len(WARMUP_PAIRS) + sum(len(d) for _, d in requests)
    assert served_model.calls - 1 < len(requests) / 2, "requests were not merged into shared model calls"
    assert "rankfunnel_batch_requests_bucket" in metrics


def run(coro):
    return asyncio.run(coro)


def test_batcher_respects_pair_budget_and_splits_results():
    class Recorder(FakeReranker):
        sizes: list[int]

        def predict(self, pairs):
            self.sizes.append(len(pairs))
            return super().predict(pairs)

    model = Recorder(delay_s=0.01)
    model.sizes = []

    async def body():
        async with MicroBatcher(model, max_batch_pairs=5, max_wait_ms=10) as b:
            reqs = [
                [("red car", "red"), ("red car", "car boat")],
                [("gene", "gene cell")] * 3,
                [("law", "court")] * 7,
                [("x", "x")],
            ]
            outs = await asyncio.gather(*[b.predict(p) for p in reqs])
            return reqs, outs

    reqs, outs = run(body())
    for pairs, out in zip(reqs, outs, strict=True):
        np.testing.assert_array_equal(out, FakeReranker().predict(pairs))
    assert sum(model.sizes) == 13
    assert all(s <= 5 for s in model.sizes if s != 7)  # a request larger than the budget runs alone


def test_batcher_drops_requests_cancelled_before_scoring():
    model = FakeReranker(delay_s=0.2)

    async def body():
        async with MicroBatcher(model, max_wait_ms=0, max_queue_pairs=100) as b:
            first = asyncio.ensure_future(b.predict([("a", "a")]))
            await asyncio.sleep(0.02)  # the first call is now running
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(b.predict([("b", "b")] * 10), 0.05)
            assert b.queue_pairs == 0
            await first

    run(body())
    assert model.pairs_scored == 1


def test_batcher_rejects_when_full():
    async def body():
        async with MicroBatcher(FakeReranker(delay_s=0.2), max_wait_ms=0, max_queue_pairs=4) as b:
            running_ = asyncio.ensure_future(b.predict([("a", "a")]))
            await asyncio.sleep(0.02)
            waiting = asyncio.ensure_future(b.predict([("b", "b")] * 3))
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError) as info:
                await b.predict([("c", "c")] * 2)
            await asyncio.gather(running_, waiting)
            return info.value

    err = run(body())
    assert err.retry_after >= 1 and "max_queue_pairs=4" in str(err)


def test_cache_hits_skip_the_model_and_are_exported():
    model = FakeReranker()
    docs = ["a red car", "a blue boat", "red"]

    async def body():
        async with served(rerankers=[model], index=False) as c:
            first = (await c.post("/v2/rerank", json={"query": "red car", "documents": docs})).json()
            second = (
                await c.post("/v2/rerank", json={"query": "red car", "documents": docs + ["car"]})
            ).json()
            return first, second

    first, second = run(body())
    assert first["meta"]["cached_pairs"] == 0 and second["meta"]["cached_pairs"] == 3
    assert model.pairs_scored == len(WARMUP_PAIRS) + 4  # warm-up, 3, then only the new document
    expected = FakeReranker().rank("red car", docs + ["car"])
    assert [(r["index"], r["relevance_score"]) for r in second["results"]] == [(i, n) for i, _, n in expected]


def test_persistent_cache_survives_restart(tmp_path):
    path = tmp_path / "scores.sqlite"
    docs = ["a red car", "a blue boat"]

    async def once(model):
        async with served(ServiceConfig(cache_path=str(path)), rerankers=[model], index=False) as c:
            return (await c.post("/v2/rerank", json={"query": "red car", "documents": docs})).json()

    m1, m2 = FakeReranker(), FakeReranker()
    a, b = run(once(m1)), run(once(m2))
    assert m1.pairs_scored == len(WARMUP_PAIRS) + 2 and m2.pairs_scored == len(WARMUP_PAIRS)  # + warm-up
    assert a["results"] == b["results"] and b["meta"]["cached_pairs"] == 2


def test_cache_key_separates_model_normalisation_and_text():
    c = ScoreCache(maxsize=10, ttl_s=0.05)
    k = cache_key("m", "T=1", "q", "doc")
    c.put_many([k], [2.0])
    assert c.get_many(
        [
            k,
            cache_key("m2", "T=1", "q", "doc"),
            cache_key("m", "T=5", "q", "doc"),
            cache_key("m", "T=1", "q", "doc!"),
        ]
    ) == [2.0, None, None, None]
    time.sleep(0.08)
    assert c.get_many([k]) == [None]  # expired
    assert c.stats().hits == 1 and c.stats().misses == 4
    off = ScoreCache(maxsize=0)
    off.put_many([k], [1.0])
    assert off.get_many([k]) == [None] and not off.enabled


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_wait_ms": -1},
        {"deadline_ms": 0},
        {"max_queue_pairs": 0},
        {"cache_size": -1},
        {"api_keys": "single-key-string"},
        {"api_keys": ("short",)},
        {"auto_margin": float("nan")},
        {"attempt_timeout_ms": -5},
    ],
)
def test_config_is_validated(kwargs):
    with pytest.raises(InvalidInputError):
        ServiceConfig(**kwargs)


def test_config_is_frozen_and_keyword_only():
    cfg = ServiceConfig()
    with pytest.raises(AttributeError):
        cfg.max_wait_ms = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        ServiceConfig(5)  # type: ignore[misc]


def test_batcher_rejects_when_the_queue_would_drain_too_slowly():
    async def body():
        async with MicroBatcher(FakeReranker(delay_s=0.1), max_wait_ms=0, max_queue_wait_ms=50) as b:
            await b.predict([("a", "a")])  # measures ~10 pairs/s
            busy = asyncio.ensure_future(b.predict([("a", "a")]))
            await asyncio.sleep(0.02)
            queued = asyncio.ensure_future(b.predict([("b", "b")]))
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError) as info:
                await b.predict([("c", "c")])
            await asyncio.gather(busy, queued)
            return info.value

    assert "max_queue_wait_ms=50" in str(run(body()))


@pytest.mark.slow
def test_batched_real_model_scores_match_unbatched(tiny_bert_ce_path):
    from rankfunnel.rerank import load_reranker

    # fp32 reference path: the int8 path quantises activations per batch, so its scores depend on batch mates
    model = load_reranker(str(tiny_bert_ce_path), device="cpu", fast=False)
    rng = random.Random(3)
    requests = [
        [(" ".join(rng.choices(WORDS, k=3)), d) for d in _docs(rng, rng.randint(1, 9))] for _ in range(8)
    ]
    expected = [model.predict(pairs) for pairs in requests]

    async def body():
        async with MicroBatcher(model, max_wait_ms=20) as b:
            return await asyncio.gather(*[b.predict(pairs) for pairs in requests])

    for got, want in zip(run(body()), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
