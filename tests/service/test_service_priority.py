"""Priority classes: most urgent served first, the lowest class refused first, and the applied class in answers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svc_helpers import served
from typer.testing import CliRunner

from rankfunnel.cli import app as cli_app
from rankfunnel.errors import InvalidInputError, OverloadedError
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig
from rankfunnel.service.batcher import MicroBatcher
from rankfunnel.service.priority import ClassPolicy, PriorityConfig, request_class


class Recorder(FakeReranker):
    """A slow fake that records the query of every pair it scores, in order."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.seen: list[str] = []

    def predict(self, pairs):
        self.seen.extend(q for q, _ in pairs)
        return super().predict(pairs)


def test_batcher_serves_most_urgent_first_fifo_within_a_class() -> None:
    model = Recorder(delay_s=0.03)

    async def body():
        async with MicroBatcher(model, max_batch_pairs=1, max_wait_ms=0) as b:
            blocker = asyncio.create_task(b.predict([("blocker", "d")]))
            await asyncio.sleep(0.01)  # the worker is busy scoring the blocker: everything else queues
            mix = [(f"{c}{i}", p) for i in range(3) for c, p in (("low", 2), ("normal", 1), ("high", 0))]
            tasks = [asyncio.create_task(b.predict([(q, "d")], priority=p)) for q, p in mix]
            await asyncio.gather(blocker, *tasks)

    asyncio.run(body())
    assert model.seen == ["blocker", "high0", "high1", "high2", "normal0", "normal1", "normal2",
                          "low0", "low1", "low2"]


def test_overload_refuses_the_lowest_class_first() -> None:
    model = FakeReranker(delay_s=0.3)  # long enough that the worker is still busy while the test queues

    async def body():
        async with MicroBatcher(model, max_wait_ms=0, max_queue_pairs=10,
                                queue_shares=(1.0, 1.0, 0.5)) as b:
            busy = asyncio.create_task(b.predict([("busy", "d")]))
            await asyncio.sleep(0.01)
            queued = [asyncio.create_task(b.predict([("q", "d")], priority=1)) for _ in range(5)]
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError, match="priority 2 may only queue up to 50%") as low:
                await b.predict([("low", "d")], priority=2)
            assert low.value.retry_after >= 1
            high = await b.predict([("high", "d")] * 4, priority=0)  # 5 + 4 <= 10: accepted
            await asyncio.gather(busy, *queued)
            return high

    assert len(asyncio.run(body())) == 4
    with pytest.raises(ValueError, match="queue_shares"):
        MicroBatcher(model, queue_shares=(1.0, 0.0))


def test_drain_time_bound_is_scaled_by_the_class_share() -> None:
    model = FakeReranker(delay_s=0.3)

    async def body():
        async with MicroBatcher(model, max_wait_ms=0, max_queue_wait_ms=1000,
                                queue_shares=(1.0, 1.0, 0.5)) as b:
            b._pairs_per_s = 10.0  # as if measured: 10 pairs/s, so 7 queued pairs take 0.7 s to drain
            busy = asyncio.create_task(b.predict([("busy", "d")]))
            await asyncio.sleep(0.01)
            queued = [asyncio.create_task(b.predict([("q", "d")], priority=1)) for _ in range(5)]
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError, match="for priority 2 .50% of the bound"):
                await b.predict([("low", "d")], priority=2)  # 0.7 s > 0.5 s (half the bound)
            await b.predict([("high", "d")], priority=0)  # 0.7 s <= 1 s
            await asyncio.gather(busy, *queued)

    asyncio.run(body())


def test_request_class_and_config_parsing(tmp_path: Path) -> None:
    assert [request_class(cohere_priority=p) for p in (0, 1, 2, 9)] == ["high", "normal", "low", "low"]
    assert request_class(latency="fast") == "high" and request_class(latency="slow", header="high") == "low"
    with pytest.raises(InvalidInputError, match="X-Priority must be one of"):
        request_class(header="urgent")
    cfg = PriorityConfig.parse(["high=depth:100", "low=share:0.25,stage1", "normal=idle"])
    assert cfg.policies["high"] == ClassPolicy(depth=100)
    assert PriorityConfig.parse(["low=stage1"]).policies["low"] == ClassPolicy(queue_share=0.5, stage1_only=True)
    assert cfg.queue_shares() == (1.0, 1.0, 0.25) and cfg.policies["normal"].idle_only
    for bad in ["urgent=depth:1", "low", "low=depth:x", "low=share:2", "low=depth:0", "low=fast"]:
        with pytest.raises(InvalidInputError):
            PriorityConfig.parse([bad])
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"low": {"queue_share": 0.3, "stage1_only": True}}))
    loaded = PriorityConfig.load(path)
    assert loaded.policies["low"] == ClassPolicy(queue_share=0.3, stage1_only=True)
    assert loaded.policies["high"] == ClassPolicy()  # classes not given keep their default
    path.write_text(json.dumps({"low": {"depth": 5}}))
    assert PriorityConfig.load(path).policies["low"] == ClassPolicy(queue_share=0.5, depth=5)  # share: default
    path.write_text(json.dumps({"low": {"speed": 1}}))
    with pytest.raises(InvalidInputError, match="fields are queue_share"):
        PriorityConfig.load(path)


def test_responses_name_the_applied_class() -> None:
    cfg = ServiceConfig(max_wait_ms=1, cache_size=0, priority=PriorityConfig.parse(["low=stage1", "high=depth:2"]))

    async def body():
        async with served(cfg, rerankers=[FakeReranker()]) as c:
            co = (await c.post("/v2/rerank", json={"query": "red", "documents": ["red", "b"], "priority": 0})).json()
            co_default = (await c.post("/v2/rerank", json={"query": "red", "documents": ["red"]})).json()
            neg = await c.post("/v2/rerank", json={"query": "red", "documents": ["red"], "priority": -1})
            ze = (await c.post("/v1/models/rerank", json={"query": "red", "documents": ["red"], "latency": "slow"}))
            ze_hdr = await c.post("/v1/models/rerank", json={"query": "red", "documents": ["red"]},
                                  headers={"X-Priority": "low"})
            bad = await c.post("/rerank", json={"query": "red", "texts": ["red"]}, headers={"X-Priority": "asap"})
            body = {"query": "python list error", "top_k": 6, "top_n": 4}
            low = (await c.post("/v1/search", json=body, headers={"X-Priority": "low"})).json()
            high = (await c.post("/v1/search", json=body, headers={"X-Priority": "high"})).json()
            normal = (await c.post("/v1/search", json=body)).json()
            return co, co_default, neg, ze.json(), ze_hdr.json(), bad, low, high, normal

    co, co_default, neg, ze, ze_hdr, bad, low, high, normal = asyncio.run(body())
    assert co["meta"]["priority"] == {"class": "high", "requested": 0}
    assert co_default["meta"]["priority"] == {"class": "normal", "requested": None}
    assert neg.status_code == 422
    assert ze["actual_latency_mode"] == "slow" and ze_hdr["actual_latency_mode"] == "slow"
    assert bad.status_code == 422 and "X-Priority" in bad.text
    assert low["priority"] == "low" and low["reranked"] is False and "stage 1 only" in low["reason"]
    assert high["priority"] == "high" and high["reranked"] and high["timings_ms"]["pairs_scored"] == 2
    assert [h["rerank_score"] is None for h in high["hits"]] == [False, False, True, True]  # past depth 2
    assert normal["priority"] == "normal" and normal["timings_ms"]["pairs_scored"] == 6


def test_serve_priority_flags(monkeypatch, tmp_path: Path) -> None:
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(app=application))
    (tmp_path / "p.json").write_text(json.dumps({"high": {"depth": 100}}))
    res = CliRunner().invoke(cli_app, ["serve", "--reranker", "fake", "--priority-config", str(tmp_path / "p.json"),
                                       "--priority", "low=share:0.2,stage1"])
    assert res.exit_code == 0, res.output
    pr = seen["app"].state.config.priority
    assert pr.policies["high"].depth == 100 and pr.policies["low"] == ClassPolicy(queue_share=0.2, stage1_only=True)
    bad = CliRunner().invoke(cli_app, ["serve", "--reranker", "fake", "--priority", "urgent=depth:5"])
    assert bad.exit_code == 2 and "--priority" in bad.output


class Calls(FakeReranker):
    """A slow fake that records the pairs of every model call."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.batches: list[list[str]] = []

    def predict(self, pairs):
        self.batches.append([q for q, _ in pairs])
        return super().predict(pairs)


def test_less_urgent_work_is_sliced_while_urgent_requests_arrive() -> None:
    model = Calls(delay_s=0.04)
    low_pairs = [(f"low red {i}", "a red car" if i % 2 else "boat") for i in range(40)]

    async def body(urgent: bool):
        async with MicroBatcher(model, max_wait_ms=0, preempt_ms=40) as b:
            # measures ~250 pairs/s (a 40 ms slice is ~10 pairs); at the low class itself when not urgent
            await b.predict([("warm", "d")] * 10, priority=1 if urgent else 2)
            model.batches.clear()
            if urgent:
                await b.predict([("h0", "d")], priority=0)  # an urgent request was seen: slicing is on
            low = asyncio.create_task(b.predict(low_pairs, priority=2))
            await asyncio.sleep(0.01)  # the first slice of the low request is being scored
            high = asyncio.create_task(b.predict([("high", "d")], priority=0))
            done, _ = await asyncio.wait({low, high}, return_when=asyncio.FIRST_COMPLETED)
            first = "high" if high in done else "low"
            return first, await low, b.queue_pairs

    first, scores, left = asyncio.run(body(urgent=True))
    low_calls = [batch for batch in model.batches if any(q.startswith("low") for q in batch)]
    assert first == "high" and len(low_calls) >= 3 and max(map(len, low_calls)) <= 20
    assert scores.tolist() == FakeReranker().predict(low_pairs).tolist() and left == 0  # reassembled in order
    high_at = next(i for i, batch in enumerate(model.batches) if "high" in batch)
    assert 0 < high_at < len(model.batches) - 1  # between two slices of the low request
    assert model.batches[high_at] == ["high"]  # the urgent call carries no low filler

    model.batches.clear()
    first, scores, _ = asyncio.run(body(urgent=False))  # nothing more urgent seen before: the low request runs whole
    assert [len(batch) for batch in model.batches][0] == 40 and first == "low"


def test_an_urgent_request_counts_only_the_work_queued_ahead_of_it() -> None:
    model = FakeReranker(delay_s=0.3)

    async def body():
        async with MicroBatcher(model, max_wait_ms=0, max_queue_wait_ms=1000) as b:
            b._pairs_per_s = 10.0  # as if measured
            busy = asyncio.create_task(b.predict([("busy", "d")]))
            await asyncio.sleep(0.01)
            queued = [asyncio.create_task(b.predict([("q", "d")] * 3, priority=1)) for _ in range(3)]
            await asyncio.sleep(0)  # 9 normal pairs queued + 1 in the model: 1.0 s to drain, the bound
            with pytest.raises(OverloadedError, match="would take 1.1 s"):
                await b.predict([("normal", "d")], priority=1)
            high = await b.predict([("high", "d")], priority=0)  # waits only for the call in progress
            await asyncio.gather(busy, *queued)
            return high

    assert len(asyncio.run(body())) == 1


def test_ageing_serves_a_starved_request_before_the_urgent_stream_ends() -> None:
    """A steady stream of urgent requests keeps the model busy for ~1 s; a low request queued meanwhile is
    served after ``promote_after_ms`` (ageing), not after the stream; with strict priority it waits it out."""
    model = Calls(delay_s=0.02)

    async def body(promote_after_ms):
        async with MicroBatcher(model, max_wait_ms=0, promote_after_ms=promote_after_ms) as b:
            await b.predict([("warm", "d")], priority=0)
            t0 = time.perf_counter()

            async def stream():  # an urgent request every 5 ms, model calls of 20 ms: always some queued
                sent = []
                while time.perf_counter() - t0 < 1.0:
                    sent.append(asyncio.create_task(b.predict([("high", "d")], priority=0)))
                    await asyncio.sleep(0.005)
                await asyncio.gather(*sent)

            urgent = asyncio.create_task(stream())
            await asyncio.sleep(0.05)
            await b.predict([("low", "d")], priority=2)
            low_s = time.perf_counter() - t0
            await urgent
            return low_s, b.promoted, b.queue_pairs

    aged_s, promoted, left = asyncio.run(body(150))
    strict_s, never, _ = asyncio.run(body(None))
    assert promoted == 1 and never == 0 and left == 0
    assert aged_s < 0.6 and strict_s >= 1.0, (aged_s, strict_s)


def test_admission_counts_the_model_time_more_urgent_arrivals_take() -> None:
    """A normal request that would drain in 0.5 s is admitted; once urgent pairs arrive at 6/s (60% of a
    10 pairs/s model), the same queue drains at 4 pairs/s and the next normal request is refused up front
    (instead of being accepted and overtaken); an urgent request, with nothing more urgent, still gets in."""
    model = FakeReranker(delay_s=0.3)

    async def body():
        async with MicroBatcher(model, max_wait_ms=0, max_queue_wait_ms=1000) as b:
            b._pairs_per_s = 10.0  # as if measured
            busy = asyncio.create_task(b.predict([("busy", "d")]))
            await asyncio.sleep(0.01)
            queued = asyncio.create_task(b.predict([("q", "d")] * 3, priority=1))
            await asyncio.sleep(0)
            admitted = asyncio.create_task(b.predict([("n", "d")], priority=1))  # (3 + 1 + 1) / 10 = 0.5 s
            await asyncio.sleep(0)
            assert b.urgent_pairs_per_s(1) == 0.0
            b._note_arrival(time.monotonic(), 0, 60)  # 60 urgent pairs over the last 10 s
            assert b.urgent_pairs_per_s(1) == pytest.approx(6.0) and b.urgent_pairs_per_s(0) == 0.0
            with pytest.raises(OverloadedError, match="would take 1.5 s"):  # (4 + 1 + 1) / (10 * 0.4)
                await b.predict([("n2", "d")], priority=1)
            high = await b.predict([("h", "d")], priority=0)
            await asyncio.gather(busy, queued, admitted)
            return high

    assert len(asyncio.run(body())) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(
        st.tuples(st.integers(1, 25), st.integers(0, 2), st.booleans()), min_size=1, max_size=12
    ),
    preempt_ms=st.sampled_from([0.5, 2.0, 20.0]),
    promote_after_ms=st.sampled_from([None, 1.0, 3.0]),
)
def test_sliced_batches_give_every_request_its_own_scores(requests, preempt_ms, promote_after_ms) -> None:
    """Whatever the mix of sizes, priorities, cancellations and promotions (ageing): each answer is its own pairs'
    scores, in order, and nothing stays counted as queued."""
    model = FakeReranker(delay_s=0.001)
    words = ["red", "car", "boat", "blue", "sea"]

    async def body():
        async with MicroBatcher(model, max_wait_ms=0.5, max_batch_pairs=16, preempt_ms=preempt_ms,
                                promote_after_ms=promote_after_ms) as b:
            await b.predict([("warm", "d")] * 4)
            tasks, expected = [], []
            for i, (n, prio, cancel) in enumerate(requests):
                pairs = [(words[i % 5], " ".join(words[(i + j) % 5 :])) for j in range(n)]
                tasks.append(asyncio.create_task(b.predict(pairs, priority=prio)))
                expected.append((model.predict(pairs).tolist(), cancel))
                await asyncio.sleep(0)
            for task, (_, cancel) in zip(tasks, expected, strict=True):
                if cancel:
                    task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.01)
            return results, expected, b.queue_pairs

    results, expected, left = asyncio.run(body())
    for got, (want, cancel) in zip(results, expected, strict=True):
        if isinstance(got, asyncio.CancelledError):
            assert cancel
        else:
            assert got.tolist() == want
    assert left == 0


def test_the_in_flight_limit_refuses_the_lowest_class_first_and_keeps_headroom_for_high() -> None:
    """``max_inflight=4``: with 4 slow requests in flight, high (from the body's Cohere priority, no header) still
    gets in (headroom 25%), normal and low get 429 at the door; per-class counts are in /metrics."""
    cfg = ServiceConfig(max_wait_ms=0, cache_size=0, max_inflight=4)

    async def body():
        async with served(cfg, rerankers=[FakeReranker(delay_s=0.4)]) as c:
            def post(priority=None, header=None):
                doc = {"query": "red", "documents": ["red car", "boat"]}
                if priority is not None:
                    doc["priority"] = priority
                return c.post("/v2/rerank", json=doc, headers={"X-Priority": header} if header else {})

            holders = [asyncio.create_task(post()) for _ in range(4)]
            await asyncio.sleep(0.1)  # all four are in the model queue now
            high, normal, low, low_header = await asyncio.gather(post(0), post(1), post(2), post(header="low"))
            await asyncio.gather(*holders)
            metrics = (await c.get("/metrics")).text
            return high, normal, low, low_header, metrics

    high, normal, low, low_header, metrics = asyncio.run(body())
    assert high.status_code == 200 and high.json()["meta"]["priority"]["class"] == "high"
    assert normal.status_code == 429 and "priority class 'normal'" in normal.json()["detail"]
    assert low.status_code == 429 and low_header.status_code == 429 and "Retry-After" in low.headers
    assert 'rankfunnel_priority_requests_total{priority="low",status="429"} 2.0' in metrics
    assert 'rankfunnel_priority_requests_total{priority="high",status="200"} 1.0' in metrics
    assert 'rankfunnel_priority_latency_seconds_count{priority="normal"} 4.0' in metrics
    assert 'rankfunnel_priority_promoted{model="fake"} 0.0' in metrics  # nobody waited 5 s


def test_serve_applies_a_depth_policy_to_auto_searches(monkeypatch, tmp_path: Path) -> None:
    from rankfunnel.rerank.depth import DepthPolicy

    cfg = ServiceConfig(max_wait_ms=1, cache_size=0, depth_policy=DepthPolicy("gap", (-1e9,), (2, 100)))

    async def body():
        async with served(cfg, rerankers=[FakeReranker()]) as c:
            auto = (await c.post("/v1/search", json={"query": "python list", "top_k": 6, "top_n": 6,
                                                     "rerank": "auto"})).json()
            on = (await c.post("/v1/search", json={"query": "python list", "top_k": 6, "top_n": 6,
                                                   "rerank": True})).json()
            return auto, on

    auto, on = asyncio.run(body())
    assert auto["reranked"] and auto["timings_ms"]["pairs_scored"] == 2
    assert on["timings_ms"]["pairs_scored"] == 6  # the policy is for rerank "auto" only
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: seen.update(app=application))
    policy = DepthPolicy("gap", (0.5,), (0, 20)).save(tmp_path / "p.json")
    res = CliRunner().invoke(cli_app, ["serve", "--reranker", "fake", "--depth-policy", str(policy)])
    assert res.exit_code == 0, res.output
    assert seen["app"].state.config.depth_policy == DepthPolicy.load(policy)
    bad = CliRunner().invoke(cli_app, ["serve", "--reranker", "fake", "--depth-policy", str(tmp_path / "none.json")])
    assert bad.exit_code == 2 and "not found" in bad.output


def test_the_slice_size_follows_the_measured_time_of_slices() -> None:
    """A model with a fixed cost per call (30 ms + 2 ms per pair): the first slice size, from the average
    pairs/s, overshoots ``preempt_ms``; the size then follows the measured slices to ~5 pairs (40 ms)."""

    class Overhead(FakeReranker):
        def predict(self, pairs):
            time.sleep(0.03 + 0.002 * len(pairs))
            return super().predict(pairs)

    async def body():
        async with MicroBatcher(Overhead(), max_wait_ms=0, preempt_ms=40) as b:
            await b.predict([("warm", "d")] * 60, priority=2)  # 150 ms for 60 pairs: 400 pairs/s measured
            await b.predict([("h", "d")], priority=0)  # an urgent request was seen: slicing is on
            first = b.slice_pairs(2)
            await b.predict([("low", "d")] * 80, priority=2)  # goes in slices
            return first, b.slice_pairs(2)

    first, calibrated = asyncio.run(body())
    assert first >= 8 and 4 <= calibrated <= 6, (first, calibrated)  # 5 pairs = 30 + 10 ms
