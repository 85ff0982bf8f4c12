"""Shadow mode in the library: off the primary's path, bounded, counted, logged and rotated."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.pipeline import Pipeline
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.rerank.shadow import Shadow, compare_rankings, parse_shadow_spec, query_hash, sampled
from rankfunnel.types import Document, Hit

QUERIES = ["discount approval", "index out of range", "terminate after breach", "floor price", "missing key"]


def hits() -> list[Hit]:
    texts = ["a blue boat", "a red car", "red paint", "car wash", "green tree", "red car red car"]
    return [
        Hit(id=f"d{i}", rank=i + 1, score=1 / (i + 1), stage1_rank=i + 1, stage1_score=1 / (i + 1),
            document=Document(id=f"d{i}", text=t))
        for i, t in enumerate(texts)
    ]


def _timed(pipe: Pipeline, queries: list[str]) -> float:
    t0 = time.perf_counter()
    for q in queries:
        pipe.search(q, top_k=5, top_n=3)
    return time.perf_counter() - t0


def test_a_slow_shadow_never_delays_the_primary(collection, tmp_path: Path) -> None:
    base = Pipeline(collection, FakeReranker())
    _timed(base, QUERIES)  # warm-up
    no_shadow = _timed(base, QUERIES)
    slow = FakeReranker(delay_s=1.0, name="slow")
    shadow = Shadow(slow, rate=1.0, log_path=tmp_path / "s.jsonl", max_queue=2)
    with Pipeline(collection, FakeReranker(), shadow=shadow) as pipe:
        with_shadow = _timed(pipe, QUERIES)
        # 5 sampled searches against a 1 s shadow: were the shadow on the path it would take >= 1 s
        assert with_shadow < no_shadow + 0.5, (with_shadow, no_shadow)
        stats = shadow.stats()
        assert stats["sampled"] == 5
        # one is being scored, two wait, the rest were dropped and counted (never blocking the caller)
        assert stats["dropped"] >= 1
    assert shadow.stats()["recorded"] + shadow.stats()["dropped"] == 5
    assert slow.calls == shadow.stats()["recorded"]


def test_full_queue_drops_and_counts() -> None:
    gate = threading.Event()

    class Blocked(FakeReranker):
        def predict(self, pairs):
            gate.wait(5)
            return super().predict(pairs)

    sh = Shadow(Blocked(), rate=1.0, max_queue=1)
    results = [sh.offer(f"red car {i}", hits(), hits()[:3]) for i in range(5)]
    time.sleep(0.05)
    st = sh.stats()
    assert st["dropped"] >= 3 and st["sampled"] == 5
    assert results.count(False) == st["dropped"]
    gate.set()
    sh.close()
    assert sh.stats()["recorded"] == 5 - st["dropped"]


def test_records_have_the_fields_and_no_query_text(collection, tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    shadow = Shadow(FakeReranker(name="shadow-fake", scale=3.0), rate=1.0, log_path=log, top_n=3)
    with Pipeline(collection, None, shadow=shadow) as pipe:  # primary: stage 1; shadow: reranker
        pipe.search_many(QUERIES[:2], top_k=8, top_n=3, query_ids=["q1", "q2"])
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(recs) == 2
    for rec, qid, q in zip(recs, ["q1", "q2"], QUERIES[:2], strict=True):
        assert rec["query_id"] == qid and rec["query_hash"] == query_hash(q)
        assert q not in json.dumps(rec)
        assert len(rec["primary_ids"]) == 3 and len(rec["shadow_ids"]) == 3
        assert 0.0 <= rec["overlap"] <= 1.0
        assert rec["kendall_tau"] is None or -1.0 <= rec["kendall_tau"] <= 1.0
        assert isinstance(rec["score_shift"], float) and rec["shadow_ms"] >= 0
        assert rec["shadow"] == "shadow-fake"


def test_rotation_bounds_the_file_size(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    sh = Shadow(FakeReranker(), rate=1.0, log_path=log, max_bytes=2000, backups=2, max_queue=1000)
    for i in range(100):
        sh.offer(f"red car {i}", hits(), hits()[:3])
    sh.close()
    files = sorted(tmp_path.glob("s.jsonl*"))
    assert [f.name for f in files] == ["s.jsonl", "s.jsonl.1", "s.jsonl.2"]
    assert all(f.stat().st_size <= 2000 for f in files)
    assert sh.stats()["recorded"] == 100


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    keys = [f"user-{i}" for i in range(4000)]
    frac = sum(sampled(k, 0.1) for k in keys) / len(keys)
    assert 0.08 < frac < 0.12
    assert [sampled(k, 0.3) for k in keys[:50]] == [sampled(k, 0.3) for k in keys[:50]]
    assert not any(sampled(k, 0.0) for k in keys[:50]) and all(sampled(k, 1.0) for k in keys[:50])


def test_compare_rankings() -> None:
    same = compare_rankings(["a", "b", "c"], ["a", "b", "c"], [0.9, 0.5, 0.1], [0.9, 0.5, 0.1])
    assert same == {"overlap": 1.0, "kendall_tau": 1.0, "score_shift": 0.0, "changed": False}
    flip = compare_rankings(["a", "b"], ["c", "d"])
    assert flip["overlap"] == 0.0 and flip["changed"] and flip["kendall_tau"] < 0


def test_bad_shadow_options_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="rate"):
        Shadow(FakeReranker(), rate=1.5)
    with pytest.raises(InvalidInputError, match="reranker"):
        Shadow(None)
    assert parse_shadow_spec("fake:0.25") == ("fake", 0.25)
    assert parse_shadow_spec("remote:http://h:8000") == ("remote:http://h:8000", 0.1)
    with pytest.raises(InvalidInputError):
        parse_shadow_spec("  ")


def test_close_out_of_time_counts_what_was_not_scored() -> None:
    """Nothing vanishes silently: requests still queued when close() runs out of time are counted as dropped."""
    sh = Shadow(FakeReranker(delay_s=0.3), rate=1.0, max_queue=10)
    for i in range(5):
        assert sh.offer(f"red car {i}", hits(), hits()[:3])
    sh.close(timeout_s=0.1)
    for _ in range(300):  # the one being scored when close() gave up is still counted when it ends
        st = sh.stats()
        if st["recorded"] + st["dropped"] + st["failed"] == 5:
            break
        time.sleep(0.01)
    assert st["sampled"] == 5 and st["dropped"] >= 3
    assert st["recorded"] + st["dropped"] + st["failed"] == 5


def test_library_ab_split_is_sticky_weighted_and_named(collection) -> None:
    """Pipeline(variants=...): each search goes to one variant by its key; results say which, and the variant's
    own reranker answered."""
    from collections import Counter

    new = FakeReranker(name="new-model", scale=2.0)
    pipe = Pipeline(collection, FakeReranker(), variants={"control": ("primary", 3), "new": (new, 1),
                                                            "off": (None, 0.0001)})
    keys = [f"user-{i}" for i in range(400)]
    res = pipe.search_many(["red car"] * 400, top_k=5, top_n=3, keys=keys)
    seen = Counter(r.variant for r in res)
    assert 0.75 - 0.07 < seen["control"] / 400 < 0.75 + 0.07 and seen["new"] > 0
    for r in res:
        assert r.reranker == ("new-model" if r.variant == "new" else "fake") or r.variant == "off"
        assert r.to_dict()["variant"] == r.variant
    again = [pipe.search("another query", key="user-7", top_k=5).variant for _ in range(3)]
    assert len(set(again)) == 1 and again[0] == res[7].variant  # sticky by key, whatever the query
    assert Pipeline(collection, FakeReranker()).search("red car", top_k=5).variant is None
    with pytest.raises(InvalidInputError, match="variant 'x'"):
        Pipeline(collection, FakeReranker(), variants={"x": ("some-model-name", 1)})
    with pytest.raises(InvalidInputError, match="keys must match"):
        pipe.search_many(["a", "b"], keys=["k"])
