"""Short training probes: which loss and learning rate get a MiniLM cross-encoder off its plateau on SciFact?

Each probe fine-tunes all-MiniLM-L6-v2 (fresh 1-logit head) on SciFact train with the same mined negatives
(dense + BM25 top 30 of the cached all-MiniLM-L6-v2 index, 7 per query, seeded) for a fixed number of steps
or minutes, evaluating held-out NDCG@10 (32 held-out training queries, dense top 16, stage-1 order = 0.646)
every ``--eval-steps``. It uses the library's own pieces (``mine_hard_negatives``, ``load_student``,
``run_trainer``), so a probe is a shortened ``rankfunnel train`` with one knob changed. These probes chose
the defaults of ``rankfunnel train`` (docs/training.md, "Probes").

Run (one probe):
  .venv/bin/python bench/train_probe.py --loss mnrl --activation identity --lr 5e-5 --head-lr 1e-3 \
      --steps 600 --minutes 11 --threads 1
Losses: ``bce`` (pointwise, ``--hard`` mined + ``--random`` corpus negatives, pos_weight = negatives),
``mnrl`` (``--hard`` mined negatives per row + ``--random`` in-batch negatives; ``--activation sigmoid``
is the sentence-transformers default with scale 10, ``identity`` is plain softmax over logits).
Skips with a message when ../shared/datasets/scifact is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(DATASETS / "scifact"))
    p.add_argument("--loss", choices=("bce", "mnrl"), default="mnrl")
    p.add_argument("--activation", choices=("sigmoid", "identity"), default="identity", help="mnrl only")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=600, help="planned steps (the schedule's length)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--hard", type=int, default=3, help="mined negatives per query")
    p.add_argument("--random", type=int, default=4, help="random negatives (bce: corpus; mnrl: in-batch)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if not (Path(args.dataset) / "corpus.jsonl").is_file():
        print(f"skipped: {args.dataset} is not there (put ../shared/datasets beside the repository)")
        return 0

    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import losses
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    from rankfunnel.embed import make_embedder
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.runner import dataset_collection
    from rankfunnel.train.data import load_labelled, split_queries
    from rankfunnel.train.loop import EVAL_NAME, load_student, run_trainer
    from rankfunnel.train.mining import MiningConfig, mine_hard_negatives
    from rankfunnel.train.trainer import TrainConfig, build_eval_samples

    torch.set_num_threads(args.threads)
    data = load_labelled(args.dataset, "train")
    stage1 = dataset_collection(load_beir(args.dataset, "train"), make_embedder())
    train_q, held_q = split_queries([q for q in data.queries if data.positives(q)], 32, args.seed)
    negatives = mine_hard_negatives(
        stage1, {q: data.queries[q] for q in train_q}, data.qrels, MiningConfig(negatives=7), seed=args.seed
    )
    samples = build_eval_samples(data, held_q, stage1, 16)
    rng = random.Random(0)
    ids = list(data.corpus)

    def text(d: str) -> str:
        return data.corpus[d].content

    if args.loss == "bce":
        rows: dict[str, list] = {"query": [], "document": [], "label": []}
        for q in train_q:
            items = [(d, 1.0) for d in data.positives(q)] + [(n, 0.0) for n in negatives[q][: args.hard]]
            items += [(d, 0.0) for d in rng.sample(ids, args.random) if d not in data.qrels[q]]
            for d, lab in items:
                rows["query"].append(data.queries[q])
                rows["document"].append(text(d))
                rows["label"].append(lab)
        train_ds = Dataset.from_dict(rows).shuffle(seed=1)
        batch = 16
    else:
        rows = {"query": [], "positive": []} | {f"neg{i}": [] for i in range(args.hard)}
        for q in train_q:
            negs = negatives[q][: args.hard]
            if len(negs) < args.hard:
                continue
            for d in data.positives(q):
                rows["query"].append(data.queries[q])
                rows["positive"].append(text(d))
                for i, n in enumerate(negs):
                    rows[f"neg{i}"].append(text(n))
        train_ds = Dataset.from_dict(rows)
        batch = max(2, 16 // (1 + args.hard + args.random))
    model = load_student("sentence-transformers/all-MiniLM-L6-v2", max_length=args.max_length, device="cpu")
    if args.loss == "bce":
        loss = losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(args.hard + args.random)))
    elif args.activation == "identity":
        loss = losses.MultipleNegativesRankingLoss(
            model, num_negatives=args.random, scale=1.0, activation_fn=torch.nn.Identity()
        )
    else:
        loss = losses.MultipleNegativesRankingLoss(model, num_negatives=args.random)
    evaluator = CrossEncoderRerankingEvaluator(
        samples, at_k=10, always_rerank_positives=False, name=EVAL_NAME, batch_size=32, write_csv=False
    )
    cfg = TrainConfig(
        learning_rate=args.lr, head_learning_rate=args.head_lr or None, max_steps=args.steps,
        eval_steps=args.eval_steps, patience=0, max_minutes=args.minutes, batch_size=batch, epochs=10,
        device="cpu",
    )
    t = time.time()
    with tempfile.TemporaryDirectory() as work:
        steps, _, metrics = run_trainer(
            model, train_dataset=train_ds, loss=loss, evaluator=evaluator, config=cfg, workdir=Path(work),
            show_progress=False, start=time.monotonic(),
        )
    print(json.dumps({"probe": vars(args), "steps": steps, "seconds": round(time.time() - t),
                      **{k: round(v, 4) for k, v in metrics.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
