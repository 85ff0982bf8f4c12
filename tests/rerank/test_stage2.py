"""The one stage-2 policy: fallbacks, deadlines, cache, skipping, circuit breaker and output checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankfunnel.errors import InvalidInputError, OverloadedError, RerankerUnavailableError
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.rerank.cache import ScoreCache
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.rerank.stage2 import CircuitBreaker, MarginSkip, Stage2
from rankfunnel.types import Document, Hit

DOCS = ["a blue boat", "a red car", "red paint", "car wash", "green tree", "red car red car"]


def hits(texts: Sequence[str] = DOCS, scores: Sequence[float] | None = None) -> list[Hit]:
    scores = scores or [1.0 / (i + 1) for i in range(len(texts))]
    return [
        Hit(id=f"d{i}", rank=i + 1, score=s, stage1_rank=i + 1, stage1_score=s, document=Document(id=f"d{i}", text=t))
        for i, (t, s) in enumerate(zip(texts, scores, strict=True))
    ]


class CountingWrong(BaseReranker):
    """Returns ``extra`` more (or fewer) scores than pairs."""

    name = "wrong-count"

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def predict(self, pairs):
        return np.ones(max(len(pairs) + self.extra, 0), dtype=np.float32)


def test_reranks_sorts_and_normalises_like_the_reranker() -> None:
    fake = FakeReranker()
    res = Stage2(fake).run(["red car"], [hits()], top_n=3)[0]
    raw = fake.score("red car", DOCS)
    order = np.argsort(-raw, kind="stable")[:3]
    assert res.reranked and res.reason is None and res.model == "fake"
    assert [h.id for h in res.hits] == [f"d{i}" for i in order]
    assert [h.rerank_score for h in res.hits] == [float(raw[i]) for i in order]
    assert [h.score for h in res.hits] == pytest.approx(fake.normalise(raw[order]).tolist())
    assert [h.rank for h in res.hits] == [1, 2, 3] and res.pairs_scored == len(DOCS)


@pytest.mark.parametrize("extra", [-1, 1, -len(DOCS)])
@pytest.mark.parametrize("top_n", [2, len(DOCS)])
def test_wrong_number_of_scores_is_a_failure_even_below_top_k(extra: int, top_n: int) -> None:
    res = Stage2(CountingWrong(extra)).run(["red car"], [hits()], top_n=top_n)[0]
    assert not res.reranked and "wrong-count" in res.reason and "for 6 pairs" in res.reason
    assert [h.id for h in res.hits] == [f"d{i}" for i in range(top_n)]  # stage-1 order, top_n of it
    assert all(h.rerank_score is None for h in res.hits)


@settings(max_examples=40, deadline=None)
@given(n_docs=st.integers(1, 8), extra=st.integers(-8, 8).filter(lambda e: e != 0), top_n=st.integers(1, 8))
def test_any_count_mismatch_fails_open(n_docs: int, extra: int, top_n: int) -> None:
    texts = [f"red doc {i}" for i in range(n_docs)]
    (res,) = Stage2(CountingWrong(extra)).run(["red"], [hits(texts)], top_n=top_n)
    assert not res.reranked and len(res.hits) == min(top_n, n_docs)


def test_fallback_answers_when_the_primary_fails() -> None:
    broken = FakeReranker(fail_with=RuntimeError("CUDA out of memory"), name="big")
    small = FakeReranker(name="small")
    res = Stage2(broken, fallbacks=[small]).run(["red car"], [hits()], top_n=2)[0]
    assert res.reranked and res.model == "small"
    assert "CUDA out of memory" in res.reason and "answered by fallback 'small'" in res.reason


def test_fail_closed_raises_and_fail_open_explains() -> None:
    broken = FakeReranker(fail_with=ValueError("boom"))
    with pytest.raises(RerankerUnavailableError, match="boom"):
        Stage2(broken, fail_open=False).run(["red"], [hits()], top_n=2)
    res = Stage2(broken).run(["red"], [hits()], top_n=2)[0]
    assert not res.reranked and "boom" in res.reason and "stage-1" in res.reason


def test_request_deadline_bounds_a_slow_reranker() -> None:
    slow = FakeReranker(delay_s=1.0, name="slow")
    policy = Stage2(slow, deadline_ms=150)
    t0 = time.monotonic()
    res = policy.run(["red"], [hits()], top_n=2, deadline=policy.deadline())[0]
    took = time.monotonic() - t0
    assert not res.reranked and "timed out" in res.reason
    assert took < 0.6, took  # gave up at the deadline, did not wait for the 1 s model call


def test_attempt_timeout_moves_to_the_fallback_within_the_deadline() -> None:
    slow = FakeReranker(delay_s=1.0, name="slow")
    policy = Stage2(slow, fallbacks=[FakeReranker(name="fast")], deadline_ms=2000, attempt_timeout_ms=100)
    t0 = time.monotonic()
    res = policy.run(["red"], [hits()], top_n=2, deadline=policy.deadline())[0]
    assert res.reranked and res.model == "fast" and "attempt_timeout_ms" in res.reason
    assert time.monotonic() - t0 < 0.8


def test_no_time_left_skips_scoring() -> None:
    fake = FakeReranker()
    res = Stage2(fake).run(["red"], [hits()], top_n=2, deadline=time.monotonic() - 1)[0]
    assert not res.reranked and "no time left" in res.reason and fake.calls == 0


def test_cache_avoids_rescoring_and_persists_in_sqlite(tmp_path) -> None:
    fake = FakeReranker()
    path = tmp_path / "scores.sqlite"
    first = Stage2(fake, cache=ScoreCache(path=path)).run(["red car"], [hits()], top_n=3)[0]
    assert fake.pairs_scored == len(DOCS)
    again = Stage2(fake, cache=ScoreCache(path=path)).run(["red car"], [hits()], top_n=3)[0]  # new process
    assert fake.pairs_scored == len(DOCS) and again.cached_pairs == len(DOCS) and again.pairs_scored == 0
    assert again.hits == first.hits


def test_auto_uses_the_skip_policy_per_query() -> None:
    fake = FakeReranker()
    confident = hits(scores=[0.9, 0.2, 0.1, 0.05, 0.04, 0.03])
    close = hits(scores=[0.50, 0.49, 0.3, 0.2, 0.1, 0.05])
    out = Stage2(fake, auto_margin=0.1).run(["red car", "red car"], [confident, close], top_n=2, rerank="auto")
    assert not out[0].reranked and "confident" in out[0].reason
    assert out[1].reranked and fake.pairs_scored == len(DOCS)  # only the unsure query was scored
    custom = Stage2(fake, skip=lambda q, c: "never" if q == "skip me" else None)
    assert custom.run(["skip me"], [close], top_n=2, rerank="auto")[0].reason == "never"
    with pytest.raises(InvalidInputError):
        MarginSkip(-1)


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InvalidInputError, match="rerank"):
        Stage2(FakeReranker()).run(["q"], [hits()], top_n=2, rerank="sometimes")
    with pytest.raises(InvalidInputError, match="top_n"):
        Stage2(FakeReranker()).run(["q"], [hits()], top_n=0)
    with pytest.raises(InvalidInputError, match="deadline_ms"):
        Stage2(FakeReranker(), deadline_ms=0)


def test_circuit_breaker_stops_calling_a_dead_reranker_then_probes() -> None:
    dead = FakeReranker(fail_with=RuntimeError("down"), name="dead")
    policy = Stage2(dead, fallbacks=[FakeReranker(name="backup")], breaker_failures=2, breaker_cooldown_s=0.2)
    for _ in range(2):
        policy.run(["red"], [hits()], top_n=2)
    assert dead.calls == 2 and policy.breaker_states()["dead"]["state"] == "open"
    res = policy.run(["red"], [hits()], top_n=2)[0]
    assert dead.calls == 2  # refused at once, not called
    assert res.reranked and res.model == "backup" and "circuit breaker is open" in res.reason
    time.sleep(0.25)
    dead.fail_with = None  # recovered
    res = policy.run(["red"], [hits()], top_n=2)[0]
    assert dead.calls == 3 and res.model == "dead"  # the half-open probe went through and closed it
    assert policy.breaker_states()["dead"]["state"] == "closed"


def test_breaker_probe_failure_reopens() -> None:
    t = [0.0]
    b = CircuitBreaker("m", failures=3, cooldown_s=10, clock=lambda: t[0])
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == "open" and not b.allow()
    t[0] = 11
    assert b.allow() and b.state == "half_open" and not b.allow()  # one probe at a time
    b.failure()
    assert b.state == "open" and not b.allow()
    t[0] = 22
    assert b.allow()
    b.release()  # the probe was not used
    assert b.allow()
    t[0] = 40  # a probe that never reported back is replaced after another cool-down
    assert b.allow()


def test_async_driver_gives_the_same_answer_and_passes_overload_through() -> None:
    fake = FakeReranker()
    policy = Stage2(fake)

    class Async:
        async def score(self, pairs, timeout_s):
            return fake.predict(pairs)

    class Full:
        async def score(self, pairs, timeout_s):
            raise OverloadedError("queue full", 1.0)

    sync = policy.run(["red car"], [hits()], top_n=3)
    got = asyncio.run(policy.arun(["red car"], [hits()], top_n=3, scorers=[Async()]))
    assert got[0].hits == sync[0].hits
    with pytest.raises(OverloadedError):
        asyncio.run(policy.arun(["red car"], [hits()], top_n=3, scorers=[Full()]))
    assert policy.breaker_states()["fake"]["state"] == "closed"  # a full queue is not a model failure
