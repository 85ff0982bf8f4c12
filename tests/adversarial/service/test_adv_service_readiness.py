"""Class 9: /readyz says ready only after every configured model scored a warm-up batch; /healthz is liveness."""

from __future__ import annotations

import asyncio
import threading

import httpx
from svc_helpers import make_pipeline

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig, create_app
from rankfunnel.service.engine import WARMUP_PAIRS


class SlowFirstCall(FakeReranker):
    """Like a lazily loaded model: the first predict takes ``load_s`` (weights loading), later ones are fast."""

    def __init__(self, load_s: float, **kw):
        super().__init__(**kw)
        self.load_s, self.loaded = load_s, threading.Event()

    def predict(self, pairs):
        if not self.loaded.is_set():
            self.loaded.wait(self.load_s)
            self.loaded.set()
        return super().predict(pairs)


async def _probe(app, paths=("/healthz", "/readyz")):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return {p: await c.get(p) for p in paths}


def test_ready_only_after_every_model_scored_its_warm_up_batch():
    primary, fallback = SlowFirstCall(0.4, name="primary"), SlowFirstCall(0.8, name="fallback")
    app = create_app(ServiceConfig(), rerankers=[primary, fallback], pipeline=make_pipeline())

    async def body():
        async with app.router.lifespan_context(app):
            early = await _probe(app)
            await asyncio.sleep(0.6)  # the primary is warm, the fallback still "loading"
            middle = await _probe(app)
            for _ in range(300):
                if (await _probe(app, ("/readyz",)))["/readyz"].status_code == 200:
                    break
                await asyncio.sleep(0.01)
            late = await _probe(app)
            return early, middle, late

    early, middle, late = asyncio.run(body())
    assert early["/healthz"].status_code == 200  # alive while warming up
    assert early["/readyz"].status_code == 503 and early["/readyz"].json()["status"] == "warming up"
    assert middle["/readyz"].status_code == 503, "ready before the fallback model had scored its warm-up batch"
    assert late["/readyz"].status_code == 200, late["/readyz"].text
    assert primary.pairs_scored == fallback.pairs_scored == len(WARMUP_PAIRS)


def test_a_failing_warm_up_keeps_it_unready_with_the_reason_and_is_retried():
    model = FakeReranker(fail_with=RuntimeError("CUDA out of memory"))
    app = create_app(ServiceConfig(), rerankers=[model])

    async def body():
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.2)
            failing = (await _probe(app, ("/readyz",)))["/readyz"]
            model.fail_with = None  # the model recovers: the next attempt (after 1 s back-off) warms it
            for _ in range(300):
                ok = (await _probe(app, ("/readyz",)))["/readyz"]
                if ok.status_code == 200:
                    break
                await asyncio.sleep(0.01)
            return failing, ok

    failing, ok = asyncio.run(body())
    assert failing.status_code == 503 and "CUDA out of memory" in failing.json()["reason"]
    assert ok.status_code == 200, ok.text


def test_warmup_false_is_ready_at_once():
    model = FakeReranker()
    app = create_app(ServiceConfig(warmup=False), rerankers=[model])

    async def body():
        async with app.router.lifespan_context(app):
            return (await _probe(app, ("/readyz",)))["/readyz"]

    assert asyncio.run(body()).status_code == 200
    assert model.pairs_scored == 0
