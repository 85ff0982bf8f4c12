from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from rankfunnel.errors import InvalidInputError
from rankfunnel.train import MiningConfig, TrainConfig, WallClockCallback, load_labelled, train_reranker

FAST = dict(
    max_length=32,
    batch_size=8,
    eval_depth=5,
    eval_steps=2,
    held_out=3,
    device="cpu",
    seed=0,
    mining=MiningConfig(negatives=2, depth=8),
)


def test_train_cli_writes_loadable_cross_encoder_with_card(
    tiny_beir, tiny_bert_ce_path, tmp_path, monkeypatch
):
    from sentence_transformers import CrossEncoder

    from rankfunnel.cli import app
    from rankfunnel.rerank import load_reranker

    monkeypatch.chdir(tmp_path)  # the stage-1 index cache goes under ./.cache
    out = tmp_path / "model"
    args = [
        "train",
        "--dataset",
        str(tiny_beir),
        "--base",
        str(tiny_bert_ce_path),
        "--out",
        str(out),
        "--embedder",
        "hashing-32",
        "--max-steps",
        "4",
        "--eval-steps",
        "2",
        "--held-out",
        "3",
        "--eval-depth",
        "5",
        "--negatives",
        "2",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # stdout holds only the JSON
    assert summary["steps"] == 4 and summary["held_out_queries"] == 3
    assert "heldout_ndcg@10" in summary["metrics"] and "heldout_base_ndcg@10" in summary["metrics"]
    assert (tmp_path / ".cache" / "indexes").is_dir()  # mined with the project's own cached index

    card = (out / "README.md").read_text(encoding="utf-8")
    front = card.split("---")[1]
    assert f"base_model: {tiny_bert_ce_path}" in front and "license:" in front
    assert "## Metrics" in card and "ndcg@10" in card and "negatives per query | 2" in card
    assert "MultipleNegativesRankingLoss" in card  # the default loss
    facts = json.loads((out / "rankfunnel_training.json").read_text(encoding="utf-8"))
    assert facts["settings"]["steps done"] == 4
    from rankfunnel.rerank.resolve import card_domain

    assert facts["domain"] == card_domain(out) == tiny_beir.name  # auto may use it for this dataset's domain

    pairs = [("what is the cancer patient", "the cancer study of patient treatment risk cancer")] * 2
    trained = CrossEncoder(str(out), device="cpu").predict(pairs)
    base = CrossEncoder(str(tiny_bert_ce_path), device="cpu").predict(pairs)
    assert trained.shape == (2,) and not np.allclose(trained, base)  # the weights did change
    reranker = load_reranker(str(out), device="cpu")
    assert reranker is not None and reranker.score("cancer", ["cancer patient", "legal court"]).shape == (2,)


def test_mnrl_rows_hold_hard_negatives_topped_up_with_unjudged_random_documents(tiny_beir):
    from rankfunnel.train.trainer import build_train_dataset

    data = load_labelled(tiny_beir, "train")
    qids = sorted(data.queries)[:4]
    negatives = {qids[0]: ["d1", "d2", "d3"], qids[1]: ["d4"]}  # q2, q3: none mined
    ds = build_train_dataset(data, qids, negatives, "mnrl", seed=3)
    assert ds.column_names == ["query", "positive", "negative_1", "negative_2", "negative_3"]
    assert len(ds) == sum(len(data.positives(q)) for q in qids)  # one row per (query, positive)
    by_text = {d.content: i for i, d in data.corpus.items()}
    for row, q in zip(ds, qids, strict=True):
        assert row["query"] == data.queries[q] and by_text[row["positive"]] in data.positives(q)
        negs = [by_text[row[f"negative_{k}"]] for k in (1, 2, 3)]
        assert len(set(negs)) == 3 and not set(negs) & set(data.qrels[q])  # never a judged document
        assert negs[: len(negatives.get(q, []))] == negatives.get(q, [])  # mined ones first, in order
    again = build_train_dataset(data, qids, negatives, "mnrl", seed=3)
    assert again.to_dict() == ds.to_dict()


def test_bce_loss_stays_selectable(tiny_beir, tiny_stage1, tiny_bert_ce_path, tmp_path):
    data = load_labelled(tiny_beir, "train")
    cfg = TrainConfig(base=str(tiny_bert_ce_path), loss="bce", max_steps=2, **{**FAST, "held_out": 0})
    res = train_reranker(data, tmp_path / "bce", cfg, stage1=tiny_stage1)
    assert res.steps == 2 and "BinaryCrossEntropyLoss" in (tmp_path / "bce" / "README.md").read_text("utf-8")
    with pytest.raises(InvalidInputError, match="mnrl"):
        TrainConfig(loss="pairwise")  # type: ignore[arg-type]


def test_listwise_loss_trains(tiny_beir, tiny_stage1, tiny_bert_ce_path, tmp_path):
    data = load_labelled(tiny_beir, "train")
    cfg = TrainConfig(base=str(tiny_bert_ce_path), loss="listwise", max_steps=2, **{**FAST, "held_out": 0})
    res = train_reranker(data, tmp_path / "lw", cfg, stage1=tiny_stage1)
    assert res.steps == 2 and res.held_out_queries == 0 and (tmp_path / "lw" / "config.json").is_file()
    assert "LambdaLoss" in (tmp_path / "lw" / "README.md").read_text(encoding="utf-8")


def test_max_minutes_cap_stops_training(tiny_beir, tiny_stage1, tiny_bert_ce_path, tmp_path):
    data = load_labelled(tiny_beir, "train")
    cfg = TrainConfig(base=str(tiny_bert_ce_path), epochs=50, max_minutes=0.001, **FAST)
    res = train_reranker(data, tmp_path / "capped", cfg, stage1=tiny_stage1)
    total = 50 * res.train_examples // 8
    assert res.stopped_by_cap and 1 <= res.steps < total
    assert (tmp_path / "capped" / "model.safetensors").is_file()
    assert "| stopped by wall-clock cap | True |" in (tmp_path / "capped" / "README.md").read_text()


def test_wall_clock_callback_reserves_time_for_last_evaluation(monkeypatch):
    clock = iter([100.0, 101.0, 103.0, 104.0, 105.5])
    monkeypatch.setattr("rankfunnel.train.callbacks.time.monotonic", lambda: next(clock))
    cb = WallClockCallback(6.0, start=100.0)
    args, state = SimpleNamespace(eval_strategy="steps"), SimpleNamespace(global_step=1)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
    cb.on_train_begin(args, state, control)  # t=100
    cb.on_step_end(args, state, control)  # t=101, step took 1 s
    assert not control.should_training_stop
    cb.on_evaluate(args, state, control)  # t=103 -> an evaluation takes 2 s; t=104 restarts steps
    cb.on_step_end(args, state, control)  # t=105.5: 5.5 + 1.5 step + 2 eval > 6
    assert control.should_training_stop and control.should_evaluate and cb.stopped


def test_missing_split_and_no_positives_give_clear_errors(tmp_path, tiny_beir, beir_writer):
    from rankfunnel.cli import app

    with pytest.raises(InvalidInputError, match="train"):
        load_labelled(beir_writer(tmp_path / "only-test", splits=("test",)), "train")
    with pytest.raises(InvalidInputError, match="relevant"):
        load_labelled(beir_writer(tmp_path / "no-pos", positives=False), "train")
    res = CliRunner().invoke(
        app, ["train", "--dataset", str(tiny_beir), "--split", "dev", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "dev" in res.output and "train" in res.output
    with pytest.raises(InvalidInputError):
        TrainConfig(loss="pairwise")  # type: ignore[arg-type]


def test_truncated_student(tiny_bert_ce_path):
    from rankfunnel.train.loop import load_student

    model = load_student(str(tiny_bert_ce_path), max_length=32, device="cpu", layers=1)
    assert model.model.config.num_hidden_layers == 1 and len(model.model.base_model.encoder.layer) == 1
    with pytest.raises(InvalidInputError, match="layers"):
        load_student(str(tiny_bert_ce_path), max_length=32, device="cpu", layers=9)


def test_bad_base_model_is_a_clear_error(tmp_path):
    from rankfunnel.errors import ModelNotFoundError
    from rankfunnel.train.loop import load_student

    with pytest.raises(ModelNotFoundError):
        load_student(str(Path(tmp_path) / "nope"), max_length=32, device="cpu")


def test_head_learning_rate_is_its_own_param_group(tiny_beir, tiny_stage1, tiny_bert_ce_path, tmp_path):
    from safetensors.torch import load_file

    from rankfunnel.train.loop import head_param_groups, load_student

    model = load_student(str(tiny_bert_ce_path), max_length=32, device="cpu")
    groups = head_param_groups(model.model, 1e-5, 1e-3, 0.01)
    n_params = len(list(model.model.parameters()))
    assert sum(len(g["params"]) for g in groups) == n_params  # every parameter exactly once
    head = {id(p) for n, p in model.model.named_parameters() if n.startswith("classifier.")}
    assert head and all(g["lr"] == 1e-3 for g in groups if head & {id(p) for p in g["params"]})
    assert all(g["weight_decay"] == 0.0 for g in groups if any(p.ndim == 1 for p in g["params"]))

    # End to end: with the encoder's lr at zero only the head moves.
    data = load_labelled(tiny_beir, "train")
    cfg = TrainConfig(
        base=str(tiny_bert_ce_path),
        learning_rate=0.0,
        head_learning_rate=0.5,
        warmup_ratio=0.0,
        max_steps=2,
        **{**FAST, "held_out": 0},
    )
    train_reranker(data, tmp_path / "head", cfg, stage1=tiny_stage1)
    before = load_file(str(tiny_bert_ce_path / "model.safetensors"))
    after = load_file(str(tmp_path / "head" / "model.safetensors"))
    enc = [k for k in after if "encoder.layer.0." in k and k.endswith("weight")]
    assert enc and all(np.allclose(after[k].numpy(), before[k].numpy()) for k in enc)
    assert not np.allclose(after["classifier.weight"].numpy(), before["classifier.weight"].numpy())
