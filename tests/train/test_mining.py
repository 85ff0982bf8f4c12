from __future__ import annotations

import pytest

from rankfunnel.errors import InvalidInputError
from rankfunnel.train import MiningConfig, mine_hard_negatives, split_queries
from rankfunnel.train.mining import filter_candidates
from rankfunnel.types import Hit


def _hits(scores: dict[str, float]) -> list[Hit]:
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    return [
        Hit(id=d, rank=i + 1, score=s, stage1_rank=i + 1, stage1_score=s) for i, (d, s) in enumerate(ranked)
    ]


class ListStage1:
    """Stand-in stage 1 returning fixed ranked lists per retriever (records the calls)."""

    def __init__(self, lists: dict[str, dict[str, dict[str, float]]]) -> None:
        self.lists = lists
        self.calls: list[str] = []

    def search(self, query: str, *, k: int = 100, retriever: str = "dense", filter=None) -> list[Hit]:
        self.calls.append(retriever)
        return _hits(self.lists[retriever][query])[:k]


def test_negatives_never_include_judged_positives_and_merge_retrievers():
    stage1 = ListStage1(
        {
            "dense": {"qa": {"p1": 0.9, "n1": 0.5, "n2": 0.4, "p2": 0.3}, "qb": {"n3": 0.2, "p3": 0.1}},
            "bm25": {"qa": {"n4": 9.0, "p1": 1.0}, "qb": {"n5": 3.0, "p3": 1.0}},
        }
    )
    qrels = {"qa": {"p1": 1, "p2": 2, "n2": 0}, "qb": {"p3": 1}}
    cfg = MiningConfig(negatives=10, relative_margin=0.0)
    negs = mine_hard_negatives(stage1, {"qa": "qa", "qb": "qb"}, qrels, cfg)
    assert set(stage1.calls) == {"dense", "bm25"}
    assert negs["qa"] == ["n1", "n4", "n2"]  # interleaved rank by rank; n2 is judged 0, a true negative
    assert negs["qb"] == ["n3", "n5"]
    for q, ids in negs.items():
        assert not {d for d, g in qrels[q].items() if g > 0} & set(ids)


def test_false_negative_guards():
    hits = _hits({"n_close": 0.99, "pos": 1.0, "n_far": 0.5, "n_mid": 0.9})
    assert filter_candidates(hits, {"pos"}, MiningConfig(relative_margin=0.05)) == ["n_mid", "n_far"]
    assert filter_candidates(hits, {"pos"}, MiningConfig(relative_margin=0.0)) == [
        "n_close",
        "n_mid",
        "n_far",
    ]
    # skip_top drops the best-ranked candidates whatever they are
    assert filter_candidates(hits, {"pos"}, MiningConfig(relative_margin=0.0, skip_top=2)) == [
        "n_mid",
        "n_far",
    ]
    # no positive in the list: the margin rule cannot apply
    assert filter_candidates(_hits({"a": 1.0, "b": 0.9}), {"pos"}, MiningConfig()) == ["a", "b"]


def test_sampling_is_seeded_and_bounded():
    pool = {f"n{i}": 1.0 - i / 100 for i in range(20)}
    stage1 = ListStage1({"dense": {"q": pool}})
    cfg = MiningConfig(retrievers=("dense",), negatives=5, relative_margin=0.0)
    a = mine_hard_negatives(stage1, {"q": "q"}, {"q": {}}, cfg, seed=1)
    b = mine_hard_negatives(stage1, {"q": "q"}, {"q": {}}, cfg, seed=1)
    assert a == b and len(a["q"]) == 5 and len(set(a["q"])) == 5


@pytest.mark.parametrize(
    "kwargs", [{"retrievers": ("sparse",)}, {"negatives": 0}, {"skip_top": 30}, {"relative_margin": 1.0}]
)
def test_bad_mining_config(kwargs):
    with pytest.raises(InvalidInputError):
        MiningConfig(**kwargs)


def test_split_queries_deterministic_and_disjoint():
    ids = [f"q{i}" for i in range(50)]
    tr, ho = split_queries(ids, 0.2, seed=3)
    assert len(ho) == 10 and not set(tr) & set(ho) and sorted(tr + ho) == sorted(ids)
    assert split_queries(ids, 0.2, seed=3) == (tr, ho)
    assert split_queries(ids, 7, seed=3)[1].__len__() == 7
    assert split_queries(["a"], 0.5, seed=0) == (["a"], [])  # at least one query stays for training
