"""Class 8: with default settings, overload gets 429 + Retry-After and accepted requests stay within the deadline.

The default ``max_queue_wait_ms="auto"`` derives the queue bound from the measured model-call time (seeded
by the warm-up batch). A burst of 4x more work than fits in the deadline: the excess is refused at once
and the accepted requests' latency stays below the deadline. Without the bound every request is queued and
the last ones time out at their deadline (503 after waiting it out: the control run), so the test can fail.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from svc_helpers import served

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig

DEADLINE_MS = 4000.0
CALL_S = 0.2  # one model call per request (max_batch_pairs = documents per request); slow enough that event
# loop delays on a loaded machine stay small next to it


DETAILS: list[str] = []  # bodies of answers other than 200/429 in the last burst, for failure messages


def _burst(queue_wait: object) -> tuple[list[int], list[float], list[str | None]]:
    cfg = ServiceConfig(
        deadline_ms=DEADLINE_MS, max_batch_pairs=10, max_wait_ms=0, cache_size=0, max_queue_wait_ms=queue_wait
    )
    n = int(4 * DEADLINE_MS / 1e3 / CALL_S)  # 4x what the deadline lets the model do
    details: list[str] = []

    async def body():
        async with served(cfg, rerankers=[FakeReranker(delay_s=CALL_S)], index=False) as c:

            async def one(i: int):
                t0 = time.perf_counter()
                r = await c.post(
                    "/v2/rerank", json={"query": "red car", "documents": [f"red car {i} {j}" for j in range(10)]}
                )
                if r.status_code not in (200, 429):
                    details.append(r.text[:200])
                return r.status_code, time.perf_counter() - t0, r.headers.get("retry-after")

            return await asyncio.gather(*[one(i) for i in range(n)])

    out = asyncio.run(body())
    DETAILS[:] = details
    return [s for s, _, _ in out], [t for s, t, _ in out if s == 200], [h for s, _, h in out if s == 429]


def test_default_config_derives_the_queue_bound():
    assert ServiceConfig().max_queue_wait_ms == "auto"


def test_overload_with_defaults_gets_429_and_accepted_stay_within_the_deadline():
    statuses, ok_latency, retry_after = _burst("auto")
    assert set(statuses) <= {200, 429}, (statuses, DETAILS[:3])  # no request waited out its deadline
    assert statuses.count(429) > len(statuses) / 2, "the excess was not refused"
    assert all(h is not None and int(h) >= 1 for h in retry_after)
    assert float(np.percentile(ok_latency, 95)) < DEADLINE_MS / 1e3, ok_latency


def test_control_without_the_bound_queues_everything_and_misses_the_deadline():
    statuses, ok_latency, _ = _burst(None)
    assert statuses.count(429) == 0
    # what the default bound prevents: requests queued past their deadline, failed after waiting it out
    assert statuses.count(503) > len(statuses) / 4, statuses


def test_auto_inflight_limit_follows_the_rate_measured_while_busy(monkeypatch):
    from rankfunnel.service import app as app_mod
    from rankfunnel.service.metrics import ServiceMetrics

    clock = [0.0]
    monkeypatch.setattr(app_mod.time, "perf_counter", lambda: clock[0])
    mw = app_mod._MetricsAndAuth(None, metrics=ServiceMetrics(), keys=(), max_inflight="auto")
    assert ServiceConfig().max_inflight == "auto" and mw.limit() == app_mod.AUTO_INFLIGHT_MAX

    def complete(n: int, every_s: float, inflight: int) -> None:
        for _ in range(n):
            clock[0] += every_s
            mw.inflight = inflight
            mw._completed()

    complete(300, 0.005, inflight=400)  # busy, 200 completions/s -> ~1 s of work = ~200 in flight
    assert 150 <= mw.limit() <= 250, mw.limit()
    before = mw.limit()
    complete(20, 0.5, inflight=0)  # idle: a low completion rate says nothing about capacity
    assert mw.limit() == before
    complete(200, 0.1, inflight=50)  # busy and slow (10/s): the floor keeps room for batching
    assert mw.limit() == app_mod.AUTO_INFLIGHT_MIN
    fixed = app_mod._MetricsAndAuth(None, metrics=ServiceMetrics(), keys=(), max_inflight=7)
    assert fixed.limit() == 7
