from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.train import DistilConfig, distil_reranker
from rankfunnel.train.distil import agreement

QUERIES = [
    "what is the cancer patient",
    "protein gene",
    "legal contract clause",
    "python error list",
    "query document rank",
    "mouse study data",
    "disease effect level",
    "finance price discount",
]


def test_distil_with_fake_teacher_end_to_end(tiny_stage1, tiny_bert_ce_path, tmp_path):
    from sentence_transformers import CrossEncoder

    teacher = FakeReranker()
    cfg = DistilConfig(
        base=str(tiny_bert_ce_path),
        layers=1,
        candidates=5,
        max_steps=3,
        batch_size=8,
        max_length=32,
        held_out=0.25,
        device="cpu",
    )
    res = distil_reranker(teacher, QUERIES, tiny_stage1, tmp_path / "student", cfg, teacher_name="fake")
    assert res.queries == len(QUERIES) and res.pairs == 5 * len(QUERIES) and res.steps == 3
    assert teacher.pairs_scored == res.pairs  # the teacher scored every stage-1 candidate once
    assert {"student_spearman", "student_top1_agreement", "stage1_spearman"} <= set(res.metrics)
    student = CrossEncoder(str(tmp_path / "student"), device="cpu")
    assert student.model.config.num_hidden_layers == 1
    card = (tmp_path / "student" / "README.md").read_text(encoding="utf-8")
    assert "distilled from fake" in card and "MSELoss" in card
    from rankfunnel.rerank.resolve import card_domain

    assert card_domain(tmp_path / "student") is None  # no --domain: reranker=auto never picks a distilled model


def test_distil_cli_listwise(tiny_beir, tiny_bert_ce_path, tmp_path, monkeypatch):
    from rankfunnel.cli import app

    monkeypatch.chdir(tmp_path)
    qfile = tmp_path / "queries.txt"
    qfile.write_text("\n".join(QUERIES) + "\n\n", encoding="utf-8")
    res = CliRunner().invoke(
        app,
        [
            "distil",
            "--teacher",
            "fake",
            "--queries",
            str(qfile),
            "--dataset",
            str(tiny_beir),
            "--base",
            str(tiny_bert_ce_path),
            "--out",
            str(tmp_path / "s"),
            "--loss",
            "listwise",
            "--candidates",
            "4",
            "--max-steps",
            "2",
            "--embedder",
            "hashing-32",
            "--max-length",
            "32",
            "--head-lr",
            "0.002",
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # stdout holds only the JSON
    assert summary["steps"] == 2 and summary["pairs"] == 4 * len(QUERIES)
    assert (tmp_path / "s" / "model.safetensors").is_file()
    settings = json.loads((tmp_path / "s" / "rankfunnel_training.json").read_text(encoding="utf-8"))["settings"]
    assert settings["head learning rate"] == 0.002 and settings["learning rate"] == 5e-5


def test_failing_teacher_and_bad_input(tiny_stage1, tiny_bert_ce_path, tmp_path):
    cfg = DistilConfig(base=str(tiny_bert_ce_path), candidates=3, max_steps=1, device="cpu")
    with pytest.raises(RerankerUnavailableError, match="teacher"):
        distil_reranker(
            FakeReranker(fail_with=RuntimeError("boom")), QUERIES, tiny_stage1, tmp_path / "a", cfg
        )
    with pytest.raises(InvalidInputError, match="2"):
        distil_reranker(FakeReranker(), ["only one"], tiny_stage1, tmp_path / "b", cfg)
    with pytest.raises(InvalidInputError):
        DistilConfig(loss="kl")  # type: ignore[arg-type]


def test_agreement_metric_against_hand_values():
    t = [np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0])]
    same = agreement(t, [np.array([30.0, 20.0, 10.0]), np.array([0.1, 0.2, 0.3])])
    assert same == {"spearman": 1.0, "top1_agreement": 1.0}
    rev = agreement(t, [np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])])
    assert rev == {"spearman": -1.0, "top1_agreement": 0.0}
