from __future__ import annotations

import pytest

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank import default_reranker_name, load_reranker
from rankfunnel.rerank.cascade import CascadeReranker
from rankfunnel.rerank.fake import FakeReranker


def test_simple_specs():
    assert load_reranker("none") is None
    assert load_reranker("None") is None
    assert isinstance(load_reranker("fake"), FakeReranker)
    assert default_reranker_name("cpu") == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert default_reranker_name("cuda") == "zeroentropy/zerank-2-reranker"
    with pytest.raises(InvalidInputError):
        load_reranker("  ")


def test_cascade_spec(tiny_bert_ce_path):
    r = load_reranker(f"fake:50,{tiny_bert_ce_path}:10", device="cpu", fast=False)
    assert isinstance(r, CascadeReranker)
    assert [c for _, c in r.stages] == [50, 10]
    assert r.stages[1][0].__class__.__name__ == "CrossEncoderReranker"
    assert r.name == f"fake:50,{tiny_bert_ce_path}:10"
    with pytest.raises(InvalidInputError, match="shrinking"):
        load_reranker("fake:10,fake:50")
    with pytest.raises(InvalidInputError):
        load_reranker("fake:10,none:5")


def test_unknown_model_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerankerUnavailableError) as info:
        load_reranker("no-such-org/no-such-model-abc", device="cpu")
    message = str(info.value)
    assert "no-such-org/no-such-model-abc" in message and "connect to the hub" in message
    assert "HF_HUB_OFFLINE is set. Or" not in message and message.count("Fix") == 0  # one sentence, one fix
    with pytest.raises(RerankerUnavailableError):
        load_reranker("/definitely/not/a/folder", device="cpu")


def test_remote_spec_parsing():
    from rankfunnel.rerank import split_stage

    assert split_stage("remote:http://host:8000") == ("remote:http://host:8000", None)
    assert split_stage("remote:http://host:8000:20") == ("remote:http://host:8000", 20)
    assert split_stage("remote:http://host/v2/rerank:20") == ("remote:http://host/v2/rerank", 20)
    assert split_stage("org/model:100") == ("org/model", 100)


def test_fast_false_bert_gives_reference(tiny_bert_ce_path):
    from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

    r = load_reranker(str(tiny_bert_ce_path), device="cpu", fast=False, batch_size=4)
    assert type(r) is CrossEncoderReranker and r.batch_size == 4
