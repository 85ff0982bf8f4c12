"""Class 2: one bad request does not fail other clients' work batched with it.

The FakeReranker's ``fail_on`` trigger makes any model call that holds a poisoned pair raise, as a document
that crashes a tokenizer would. Innocent requests merged into the same model call must all succeed, and
only the poisoned ones fail. Generated: how many innocent and poisoned requests, and where the poison sits.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from svc_helpers import served

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig
from rankfunnel.service.batcher import MicroBatcher

POISON = "POISON"
WORDS = ["red", "car", "blue", "boat", "gene", "cell", "court", "law", "price", "python"]


class Recorder(FakeReranker):
    """Records the size of every model call, to prove that poisoned and innocent pairs shared one."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches: list[int] = []

    def predict(self, pairs):
        self.batches.append(len(pairs))
        return super().predict(pairs)


def _requests(rng: random.Random, n_ok: int, n_bad: int) -> list[tuple[list[tuple[str, str]], bool]]:
    reqs = []
    for _ in range(n_ok):
        q = " ".join(rng.choices(WORDS, k=2))
        reqs.append(([(q, " ".join(rng.choices(WORDS, k=4))) for _ in range(rng.randint(1, 6))], False))
    for _ in range(n_bad):
        q = " ".join(rng.choices(WORDS, k=2))
        docs = [(q, " ".join(rng.choices(WORDS, k=4))) for _ in range(rng.randint(1, 6))]
        docs[rng.randrange(len(docs))] = (q, f"text with {POISON} inside")
        reqs.append((docs, True))
    rng.shuffle(reqs)
    return reqs


@pytest.mark.parametrize("seed", range(6))
def test_batcher_fails_only_the_poisoned_requests(seed: int):
    rng = random.Random(seed)
    reqs = _requests(rng, n_ok=rng.randint(5, 30), n_bad=rng.randint(1, 3))
    model = Recorder(fail_on=POISON, delay_s=0.001)

    async def body():
        async with MicroBatcher(model, max_wait_ms=50, max_batch_pairs=10_000) as b:
            return await asyncio.gather(*[b.predict(p) for p, _ in reqs], return_exceptions=True)

    outs = asyncio.run(body())
    for (pairs, bad), out in zip(reqs, outs, strict=True):
        if bad:
            assert isinstance(out, ValueError) and POISON in str(out)
        else:
            assert isinstance(out, np.ndarray), out
            np.testing.assert_array_equal(out, FakeReranker().predict(pairs))
    total = sum(len(p) for p, _ in reqs)
    assert model.batches[0] == total, "the requests were not batched together; the test proves nothing"
    # bisection: a bounded number of extra calls (at most 2 per request), not one call per pair
    assert len(model.batches) <= 2 * len(reqs)


def test_twenty_valid_and_one_poisoned_request_over_http():
    """The issue's case: 20 valid rerank requests, 1 poisoned one, and a search, all at once, in 5 rounds."""
    model = Recorder(fail_on=POISON, delay_s=0.01)
    rng = random.Random(7)

    async def body():
        cfg = ServiceConfig(max_wait_ms=30, cache_size=0)
        async with served(cfg, rerankers=[model]) as c:
            for _ in range(5):
                calls = [
                    c.post(
                        "/v2/rerank",
                        json={"query": "red car", "documents": [" ".join(rng.choices(WORDS, k=3)) for _ in range(5)]},
                    )
                    for _ in range(20)
                ]
                calls.insert(
                    rng.randrange(21), c.post("/v2/rerank", json={"query": "red car", "documents": ["ok", POISON]})
                )
                calls.append(c.post("/v1/search", json={"query": "python list error", "top_k": 5}))
                rs = await asyncio.gather(*calls)
                statuses = [r.status_code for r in rs]
                assert statuses.count(200) == 21, statuses  # 20 valid reranks + the search
                assert statuses.count(503) == 1
                assert rs[-1].json()["reranked"] is True, rs[-1].json()
                bad = next(r for r in rs if r.status_code == 503)
                assert POISON in bad.json()["detail"]

    asyncio.run(body())
    assert max(model.batches) > 20, "the requests were not batched together; the test proves nothing"
