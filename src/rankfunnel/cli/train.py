"""``rankfunnel train`` and ``rankfunnel distil``: make a small reranker of your own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console

from rankfunnel.cli import _reranker, app
from rankfunnel.cli._errors import handle_errors
from rankfunnel.cli._reranker import CpuRouteOpt, OfflineOpt, RerankerApiKeyOpt
from rankfunnel.errors import InvalidInputError
from rankfunnel.models import DEFAULT_EMBEDDER

console = Console(stderr=True)
DEFAULT_CACHE = Path(".cache") / "rankfunnel"


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _stage1_for(
    corpus: Any,
    dataset: Path | None,
    index_dir: Path | None,
    embedder: str,
    device: str | None,
    progress: bool,
) -> tuple[Any, str]:
    """Stage 1 over the corpus: ``--index-dir`` when given, else the evaluation's cached index of the dataset.

    Sharing ``rankfunnel eval``'s index cache (``.cache/indexes/<dataset>-<embedder>``) means the corpus is
    embedded once for training and evaluation.
    """
    from rankfunnel.embed import make_embedder
    from rankfunnel.train import corpus_stage1

    if index_dir is None and dataset is not None:
        from rankfunnel.eval.datasets import load_beir
        from rankfunnel.eval.runner import DEFAULT_CACHE as EVAL_CACHE
        from rankfunnel.eval.runner import dataset_collection

        ds = load_beir(dataset, _any_split(dataset))
        coll = dataset_collection(ds, make_embedder(embedder, device=device), show_progress=progress)
        return coll, f"rankfunnel LocalCollection ({embedder}, dense + bm25s), cached under {EVAL_CACHE}"
    emb = make_embedder(embedder, device=device)
    return corpus_stage1(
        corpus, index_dir=index_dir, embedder=emb, show_progress=progress, cache_dir=DEFAULT_CACHE / "vectors"
    )


def _any_split(dataset: Path) -> str:
    from rankfunnel.eval.datasets import available_splits

    splits = available_splits(dataset)
    if not splits:
        raise InvalidInputError(
            f"{dataset} has no qrels/<split>.tsv; a BEIR folder needs at least one split."
        )
    return splits[0]


@app.command("train")
@handle_errors
def train_cmd(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the trained CrossEncoder and its model card.")
    ],
    split: Annotated[str, typer.Option("--split", help="qrels split to train on.")] = "train",
    base: Annotated[str, typer.Option("--base", help="Start model (hub id or folder).")] = DEFAULT_EMBEDDER,
    layers: Annotated[
        int | None, typer.Option("--layers", help="Keep only the first N layers of --base.")
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            "--loss", help="mnrl (softmax over hard + in-batch negatives), bce (pointwise), listwise (LambdaLoss)."
        ),
    ] = "mnrl",
    negatives: Annotated[int, typer.Option("--negatives", help="Hard negatives per query.")] = 3,
    random_negatives: Annotated[
        int, typer.Option("--random-negatives", help="mnrl: in-batch negatives per positive.")
    ] = 4,
    retrievers: str = typer.Option(
        "dense,bm25", "--mine-from", help="Stage-1 retrievers that mine negatives."
    ),
    depth: Annotated[int, typer.Option("--mining-depth", help="Candidates per retriever to mine from.")] = 30,
    skip_top: Annotated[
        int, typer.Option("--skip-top", help="Best-ranked candidates never used as negatives.")
    ] = 0,
    margin: Annotated[
        float, typer.Option("--relative-margin", help="Drop candidates within this margin of a positive.")
    ] = 0.05,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per (query, document) pair.")] = 128,
    epochs: Annotated[float, typer.Option("--epochs")] = 2.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per optimiser step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate of the encoder.")] = 5e-5,
    head_lr: Annotated[
        float,
        typer.Option("--head-lr", help="Peak learning rate of the classification head (0: same as --lr)."),
    ] = 1e-3,
    warmup: Annotated[float, typer.Option("--warmup-ratio", help="Fraction of steps warming up.")] = 0.1,
    held_out: Annotated[
        float, typer.Option("--held-out", help="Held-out training queries (count, or fraction < 1).")
    ] = 32,
    eval_depth: Annotated[
        int, typer.Option("--eval-depth", help="Dense candidates reranked per held-out query.")
    ] = 16,
    eval_steps: Annotated[int, typer.Option("--eval-steps", help="Steps between held-out evaluations.")] = 40,
    patience: Annotated[
        int, typer.Option("--patience", help="Evaluations without gain before early stopping.")
    ] = 5,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Wall-clock cap (mining + training).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="Stage-1 index of the corpus (built if empty).")
    ] = None,
    embedder: Annotated[
        str, typer.Option("--embedder", help="Embedder of the stage-1 index.")
    ] = DEFAULT_EMBEDDER,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, mps (default: automatic).")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    data_licence: Annotated[
        str | None, typer.Option("--data-licence", help="Licence of the data, for the card.")
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain", help="Domain the model card declares (default: the dataset's name); reranker=auto "
            "uses the model only for searches of that domain."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Fine-tune a cross-encoder reranker on labelled queries (hard negatives mined by stage 1).

    Example: rankfunnel train --dataset ../shared/datasets/scifact --out models/reranker --max-minutes 25
    """
    from rankfunnel.train import TrainConfig, load_labelled, train_reranker

    _threads(threads)
    progress = not as_json or bool(os.environ.get("RANKFUNNEL_PROGRESS"))
    held: float = held_out if held_out < 1 else int(held_out)
    mining = _mining_config(retrievers, depth, negatives, skip_top, margin)
    config = TrainConfig(
        base=base,
        layers=layers,
        loss=cast(Any, loss),
        random_negatives=random_negatives,
        mining=mining,
        max_length=max_length,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        head_learning_rate=head_lr or None,
        warmup_ratio=warmup,
        held_out=held,
        eval_depth=eval_depth,
        eval_steps=eval_steps,
        patience=patience,
        max_minutes=max_minutes,
        max_steps=max_steps,
        seed=seed,
        device=device,
        data_licence=data_licence,
        domain=domain,
    )
    data = load_labelled(dataset, split)
    console.print(f"{data.name}/{split}: {len(data.queries)} queries, {len(data.corpus)} documents")
    stage1, desc = _stage1_for(data.corpus, dataset, index_dir, embedder, device, progress)
    result = train_reranker(
        data, out, config, stage1=stage1, stage1_description=desc, show_progress=progress
    )
    _report(
        result,
        as_json,
        stopped_by_cap=result.stopped_by_cap,
        train_queries=result.train_queries,
        held_out_queries=result.held_out_queries,
    )


def _mining_config(retrievers: str, depth: int, negatives: int, skip_top: int, margin: float) -> Any:
    from rankfunnel.train import MiningConfig

    return MiningConfig(
        retrievers=tuple(r.strip() for r in retrievers.split(",") if r.strip()),
        depth=depth,
        negatives=negatives,
        skip_top=skip_top,
        relative_margin=margin,
    )


def _report(result: Any, as_json: bool, **facts: Any) -> None:
    """A training run's result: one JSON object on stdout, or a summary line and the metrics on stderr."""
    if as_json:
        summary = {"out": str(result.out_dir), "steps": result.steps, "seconds": round(result.seconds, 1)}
        typer.echo(json.dumps({**summary, **facts, "metrics": dict(result.metrics)}))
        return
    console.print(
        f"saved {result.out_dir} after {result.steps} steps in {result.seconds / 60:.1f} min"
        f"{' (wall-clock cap)' if result.stopped_by_cap else ''}"
    )
    for k, v in result.metrics.items():
        console.print(f"  {k}: {v:.4f}")


def _teacher(spec: str, device: str | None, **options: Any) -> Any:
    if spec.strip().lower() in {"", "none", "off"}:
        raise InvalidInputError("--teacher none has no scores to learn from; name a reranker model.")
    return _reranker.load(spec, device=device, required=True, **options).model


@app.command("distil")
@handle_errors
def distil_cmd(
    teacher: Annotated[
        str, typer.Option("--teacher", help="Any reranker spec load_reranker accepts (remote too).")
    ],
    queries: Annotated[
        Path, typer.Option("--queries", help="Unlabelled queries: .jsonl ({'text'}) or one a line.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the student CrossEncoder.")],
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="Stage-1 index that proposes candidates.")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Or: a BEIR folder whose corpus is indexed.")
    ] = None,
    base: Annotated[
        str, typer.Option("--base", help="Student start model (hub id or folder).")
    ] = DEFAULT_EMBEDDER,
    layers: Annotated[
        int | None, typer.Option("--layers", help="Keep only the first N layers of --base.")
    ] = None,
    loss: Annotated[
        str, typer.Option("--loss", help="mse (logits) or listwise (ListNet, KL to the teacher).")
    ] = "mse",
    candidates: Annotated[int, typer.Option("--candidates", help="Stage-1 candidates per query.")] = 20,
    retriever: Annotated[str, typer.Option("--retriever")] = "dense",
    max_length: Annotated[int, typer.Option("--max-length")] = 128,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate of the encoder.")] = 5e-5,
    head_lr: Annotated[
        float,
        typer.Option("--head-lr", help="Peak learning rate of the classification head (0: same as --lr)."),
    ] = 1e-3,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    embedder: Annotated[
        str, typer.Option("--embedder", help="Embedder of a new stage-1 index.")
    ] = DEFAULT_EMBEDDER,
    device: Annotated[str | None, typer.Option("--device")] = None,
    threads: Annotated[int | None, typer.Option("--threads")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain", help="Domain the student's model card declares (default: none, so reranker=auto never "
            "picks it; name the folder to use it)."
        ),
    ] = None,
) -> None:
    """Distil a teacher reranker into a small cross-encoder on stage-1 candidates of unlabelled queries.

    Example: rankfunnel distil --teacher models/reranker --queries q.jsonl --index-dir idx --layers 2 --out s
    """
    from rankfunnel.train import DistilConfig, distil_reranker, read_query_file

    _threads(threads)
    progress = not as_json
    if (index_dir is None) == (dataset is None):
        raise InvalidInputError(
            "Pass exactly one of --index-dir (an existing index) or --dataset (a BEIR "
            "folder whose corpus is indexed for you)."
        )
    config = DistilConfig(
        base=base,
        layers=layers,
        loss=cast(Any, loss),
        candidates=candidates,
        retriever=retriever,
        max_length=max_length,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        head_learning_rate=head_lr or None,
        max_minutes=max_minutes,
        max_steps=max_steps,
        seed=seed,
        device=device,
        domain=domain,
    )
    texts = read_query_file(queries)
    stage1 = _distil_stage1(index_dir, dataset, embedder, device, progress)
    teacher_model = _teacher(teacher, device, offline=offline, api_key=reranker_api_key, route=cpu_route)
    result = distil_reranker(
        teacher_model, texts, stage1, out, config, teacher_name=teacher, show_progress=progress
    )
    _report(result, as_json, queries=result.queries, pairs=result.pairs)


def _distil_stage1(
    index_dir: Path | None, dataset: Path | None, embedder: str, device: str | None, progress: bool
) -> Any:
    """The collection that proposes candidates: ``--index-dir``, or the index of ``--dataset``'s corpus."""
    if index_dir is not None:
        from rankfunnel.collection import open_collection  # type: ignore[import-not-found]

        if not index_dir.is_dir():
            raise InvalidInputError(
                f"Index {index_dir} does not exist; build it with `rankfunnel index`."
            )
        return open_collection(str(index_dir))
    from rankfunnel.train.data import load_corpus

    assert dataset is not None
    stage1, _ = _stage1_for(load_corpus(dataset), dataset, None, embedder, device, progress)
    return stage1
