"""Evaluation commands: ``eval`` (quality and lift on BEIR data), ``bench`` (speed, cost), ``calibrate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rankfunnel import defaults
from rankfunnel.cli import _reranker, app
from rankfunnel.cli._reranker import CpuRouteOpt, OfflineOpt, RerankerApiKeyOpt
from rankfunnel.cli.core import (
    DEFAULT_RETRIEVER,
    AttemptTimeoutOpt,
    AutoMarginOpt,
    DeadlineOpt,
    DepthPolicyOpt,
    DeviceOpt,
    FailClosedOpt,
    FallbackOpt,
    JsonFlag,
    RerankMode,
    RerankModeOpt,
    Retriever,
    ScoreCacheOpt,
    depth_policy_mode,
    handle_errors,
    load_fallbacks,
    stage2_options,
)
from rankfunnel.errors import InvalidInputError
from rankfunnel.models import DEFAULT_EMBEDDER

err_console = Console(stderr=True)

EmbedderOpt = Annotated[
    str,
    typer.Option(
        "--embedder", help="Bi-encoder name or path; 'hashing-32' is the deterministic fake for smoke tests."
    ),
]
CacheOpt = Annotated[
    Path, typer.Option("--cache-dir", help="Where dataset indexes are built once and reused.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def parse_ints(text: str, what: str) -> list[int]:
    """``"1,3,10"`` -> ``[1, 3, 10]`` with a clear error on anything else."""
    try:
        vals = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise InvalidInputError(
            f"{what} must be comma-separated integers such as 1,3,10; got {text!r}."
        ) from None
    if not vals or any(v < 1 for v in vals):
        raise InvalidInputError(f"{what} must hold integers >= 1; got {text!r}.")
    return vals


def pick_split(folder: Path, split: str | None) -> str:
    """The requested split, or ``test`` (else ``dev``, else the only one) when none was requested."""
    from rankfunnel.eval.datasets import available_splits, check_dataset_dir

    check_dataset_dir(folder)
    if split:
        return split
    have = available_splits(folder)
    for s in ("test", "dev"):
        if s in have:
            return s
    if not have:
        raise InvalidInputError(
            f"{folder}/qrels holds no <split>.tsv file; a BEIR folder needs qrels/test.tsv."
        )
    return have[0]


def _dataset_dirs(paths: list[Path] | None, datasets: list[str] | None) -> list[Path]:
    out = list(paths or [])
    for item in datasets or []:
        out += [Path(p) for p in item.split(",") if p.strip()]
    if not out:
        raise InvalidInputError(
            "Pass a dataset folder (BEIR layout), e.g. `rankfunnel eval ../shared/datasets/scifact`,"
            " or several with --datasets a,b."
        )
    return out


def _print_eval_table(summaries: list[dict[str, Any]]) -> None:
    table = Table(title="rankfunnel eval")
    for col in (
        "dataset",
        "split",
        "queries",
        "stage",
        "ndcg@10",
        "mrr@10",
        "recall@100",
        "lift ndcg@10 [95% CI]",
        "helped/hurt",
        "p50 ms",
    ):
        table.add_column(col, justify="left" if col in {"dataset", "stage"} else "right")
    for s in summaries:
        for stage in ("stage1", "reranked"):
            vals = s.get(stage)
            if not vals:
                continue
            lift = s["lift"].get("ndcg@10") if stage == "reranked" else None
            lat = s["latency_ms"].get("total" if stage == "reranked" else "stage1", {})
            name = s["retriever"] if stage == "stage1" else f"+ {s['reranker']}"
            table.add_row(
                s["dataset"],
                s["split"],
                str(s["queries"]),
                name,
                f"{vals.get('ndcg@10', 0):.4f}",
                f"{vals.get('mrr@10', 0):.4f}",
                f"{vals.get('recall@100', float('nan')):.4f}",
                f"{lift['delta']:+.4f} [{lift['ci95'][0]:+.4f}, {lift['ci95'][1]:+.4f}]" if lift else "",
                f"{lift['helped']}/{lift['hurt']}" if lift else "",
                f"{lat.get('p50', 0):.1f}",
            )
    Console(stderr=True).print(table)


@app.command("eval")
@handle_errors
def eval_cmd(
    dataset_dirs: Annotated[list[Path] | None, typer.Argument(help="BEIR dataset folder(s).")] = None,
    datasets: Annotated[
        list[str] | None, typer.Option("--datasets", help="More folders, comma-separated.")
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="qrels split (default test, else dev).")
    ] = None,
    retriever: Annotated[
        Retriever, typer.Option("--retriever", help="Stage-1 retriever (default: as `rankfunnel search`).")
    ] = DEFAULT_RETRIEVER,
    reranker: Annotated[
        str,
        typer.Option(
            "--reranker",
            "-r",
            help="Model name/path, loader spec, 'auto' (as `rankfunnel search`) or 'none' (stage 1 only).",
        ),
    ] = defaults.RERANKER,
    top_k: Annotated[int, typer.Option("--top-k", help="Stage-1 candidates per query.")] = defaults.TOP_K,
    k: Annotated[str, typer.Option("--k", help="Metric cut-offs.")] = "1,3,5,10,100",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for TREC runs, summary.json and report.html.")
    ] = Path("out/eval"),
    as_json: JsonFlag = False,
    embedder: EmbedderOpt = DEFAULT_EMBEDDER,
    cache_dir: CacheOpt = Path(".cache/indexes"),
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Queries per search call (1 = true per-query latency).")
    ] = 1,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap / randomisation resamples.")
    ] = 10_000,
    sweep_fusion: Annotated[
        bool, typer.Option("--sweep-fusion", help="Also sweep the hybrid fusion weight.")
    ] = False,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
    fallback: FallbackOpt = None,
    deadline_ms: DeadlineOpt = None,
    attempt_timeout_ms: AttemptTimeoutOpt = None,
    cache: ScoreCacheOpt = None,
    fail_closed: FailClosedOpt = False,
    rerank: RerankModeOpt = RerankMode.on,
    auto_margin: AutoMarginOpt = defaults.AUTO_MARGIN,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            help="Compare two rerankers (SPEC_A SPEC_B; 'none' = stage 1): NDCG@10 of both and B's paired lift "
            "over A with its 95%% CI, on the same stage-1 candidates. Replaces --reranker.",
        ),
    ] = None,
    depth_policy: DepthPolicyOpt = None,
) -> None:
    """Measure stage-1 and reranked quality (NDCG, MRR, P, R, MAP), the lift with a 95% CI, and latency.

    With no options it measures exactly what `rankfunnel search` returns (same retriever, top-k, reranker
    and stage 2). A reranker named explicitly must load (an evaluation never silently measures stage 1);
    with 'auto', when no reranker can be loaded, stage 1 is measured and the reason is printed, as search
    would show stage-1 results. Writes TREC run files of both stages, summary.json and report.html under --out.
    """
    from rankfunnel.embed import make_embedder
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.report import write_report
    from rankfunnel.eval.runner import dataset_collection, evaluate_dataset

    folders = _dataset_dirs(dataset_dirs, datasets)
    loaded = [load_beir(folder, pick_split(folder, split)) for folder in folders]  # bad input: before any model
    ks = parse_ints(k, "--k")
    if top_k < 1:
        raise InvalidInputError(f"--top-k must be >= 1, got {top_k}.")
    policy, rerank = depth_policy_mode(depth_policy, rerank)
    opts: dict[str, Any] = stage2_options(
        deadline_ms=deadline_ms, attempt_timeout_ms=attempt_timeout_ms, cache=cache,
        fail_closed=fail_closed, auto_margin=auto_margin,
    )
    opts["depth_policy"] = policy
    opts["fallbacks"] = load_fallbacks(
        fallback, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route
    )
    emb = make_embedder(embedder, device=device)
    if compare is not None:
        _compare(
            compare, loaded, emb, retriever=retriever.value, top_k=top_k, ks=ks, batch_size=batch_size,
            resamples=resamples, quiet=quiet, rerank=rerank.flag, opts=opts, cache_dir=cache_dir, as_json=as_json,
            device=device, offline=offline, api_key=reranker_api_key, route=cpu_route,
        )
        return
    model, why = _eval_reranker(reranker, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route)
    summaries, deltas, lat, sweeps = [], {}, {}, []
    for ds in loaded:
        col = dataset_collection(ds, emb, cache_dir=cache_dir, show_progress=not quiet)
        res = evaluate_dataset(
            ds,
            col,
            retriever=retriever.value,
            reranker=model,
            top_k=top_k,
            ks=ks,
            batch_size=batch_size,
            n_resamples=resamples,
            show_progress=not quiet,
            rerank=rerank.flag,
            reason=why,
            pipeline_options=opts,
        )
        summary = res.summary()
        if policy is not None:
            summary["depth_policy"] = policy.to_dict()
        summary["run_files"] = [str(f) for f in _write_runs(res, out / ds.name, retriever.value)]
        if sweep_fusion:
            from rankfunnel.eval.sweep import sweep_fusion as run_sweep

            sw = run_sweep(ds, col, top_k=top_k, show_progress=not quiet)
            summary["fusion_sweep"] = sw
            sweeps.append(sw)
        summaries.append(summary)
        if res.deltas():
            deltas[ds.name] = res.deltas()
        for key, vals in res.latency_ms.items():
            lat[f"{ds.name} {key}" if len(folders) > 1 else key] = list(vals)
    paths = write_report(summaries, out, deltas=deltas, latencies=lat)
    if not quiet:
        _print_eval_table(summaries)
        err_console.print(f"report: {paths['html']}  summary: {paths['summary']}", highlight=False)
    if as_json:
        typer.echo(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2, default=str))


def _compare(
    specs: tuple[str, str], loaded: list[Any], emb: Any, *, retriever: str, top_k: int, ks: list[int],
    batch_size: int, resamples: int, quiet: bool, rerank: bool | str, opts: dict[str, Any], cache_dir: Path,
    as_json: bool, device: str | None, offline: bool, api_key: str | None, route: str,
) -> None:
    """``eval --compare A B``: both evaluated on the same candidates; B's paired NDCG@10 lift over A."""
    from rankfunnel.eval.runner import dataset_collection, evaluate_dataset
    from rankfunnel.eval.stats import paired_lift

    models = []
    for spec in specs:  # both load before any evaluation: a bad spec fails fast
        none = spec.strip().lower() == "none"
        models.append(None if none else _reranker.load(
            spec, device=device, offline=offline, api_key=api_key, route=route, required=True
        ).model)
    out = []
    for ds in loaded:
        col = dataset_collection(ds, emb, cache_dir=cache_dir, show_progress=not quiet)
        per_query = []
        for model in models:
            res = evaluate_dataset(
                ds, col, retriever=retriever, reranker=model, top_k=top_k, ks=ks, batch_size=batch_size,
                n_resamples=resamples, show_progress=not quiet, rerank=rerank, pipeline_options=opts,
            )
            per_query.append((res.reranked or res.stage1).per_query["ndcg@10"])
        lift = paired_lift(per_query[0], per_query[1], metric="ndcg@10", n_resamples=resamples)
        out.append({"dataset": ds.name, "a": specs[0], "b": specs[1], **lift.to_dict()})
    if as_json:
        typer.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return
    table = Table(title=f"NDCG@10: B={escape(specs[1])} vs A={escape(specs[0])}")
    for col_name in ("dataset", "queries", "A", "B", "lift B-A", "95% CI", "p"):
        table.add_column(col_name, justify="left" if col_name == "dataset" else "right")
    for r in out:
        table.add_row(
            r["dataset"], str(r["queries"]), f"{r['before']:.4f}", f"{r['after']:.4f}", f"{r['delta']:+.4f}",
            f"[{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]", f"{r['p_value']:.3f}",
        )
    Console().print(table)


def _write_runs(res: Any, dest: Path, retriever: str) -> list[Path]:
    """TREC run files of stage 1 and (when there is one) the reranked run, under ``dest``."""
    from rankfunnel.eval.runner import write_trec_run

    dest.mkdir(parents=True, exist_ok=True)
    files = [write_trec_run(res.stage1_run, dest / f"{retriever}.stage1.trec", tag=retriever)]
    if res.reranked_run is not None:
        files.append(
            write_trec_run(res.reranked_run, dest / f"{retriever}.reranked.trec", tag=f"{retriever}+{res.reranker}")
        )
    return files


def _dataset_index(
    dataset: Path, split: str | None, embedder: str, device: str | None, cache_dir: Path, quiet: bool
) -> tuple[Any, Any]:
    """A BEIR folder's split and the cached index of its corpus (built on first use)."""
    from rankfunnel.embed import make_embedder
    from rankfunnel.eval.datasets import load_beir
    from rankfunnel.eval.runner import dataset_collection

    ds = load_beir(dataset, pick_split(dataset, split))
    col = dataset_collection(ds, make_embedder(embedder, device=device), cache_dir=cache_dir, show_progress=not quiet)
    return ds, col


def _eval_reranker(
    spec: str, *, device: str | None, offline: bool, api_key: str | None, route: str
) -> tuple[Any, str | None]:
    """The reranker ``eval``/``bench`` measure, resolved as ``search`` resolves it.

    ``auto`` behaves as in ``search``: when no reranker can be loaded, stage 1 is measured and the reason is
    printed. A reranker named explicitly must load (an evaluation never silently measures stage 1).
    """
    auto = spec.strip().lower() == "auto"
    loaded = _reranker.load(spec, device=device, offline=offline, api_key=api_key, route=route, required=not auto)
    if loaded.model is None and loaded.reason and auto:
        err_console.print(f"[yellow]not reranked:[/] {escape(loaded.reason)}", highlight=False, soft_wrap=True)
    return loaded.model, loaded.reason


def _queries_for_bench(
    index_dir: Path | None, dataset: Path | None, queries_file: Path | None, col: Any, limit: int
) -> list[str]:
    if queries_file is not None:
        if not queries_file.is_file():
            raise InvalidInputError(
                f"--queries-file {queries_file} does not exist: pass a text file, one query a line."
            )
        qs = [line.strip() for line in queries_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif dataset is not None:
        from rankfunnel.eval.datasets import load_beir

        ds = load_beir(dataset, pick_split(dataset, None))
        qs = [ds.queries[q] for q in sorted(ds.queries)]
    else:  # an index without queries: the first words of some of its documents
        ids = list(col.ids())[:limit]
        qs = [" ".join(d.content.split()[:8]) for d in col.get(ids)]
    return qs[:limit]


def _print_bench(res: dict[str, Any]) -> None:
    table = Table(
        title=f"rankfunnel bench: {res['retriever']} + {res['reranker'] or 'no reranker'} "
        f"(top_k {res['top_k']}, {res['queries']} timed queries)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for stage, vals in res["latency_ms"].items():
        table.add_row(
            f"{stage} latency ms p50 / p95 / p99",
            f"{vals['p50']:.1f} / {vals['p95']:.1f} / {vals['p99']:.1f}",
        )
    for row in res["rerank_throughput"]:
        note = "" if row["batch_size_applied"] else " (batch size not settable)"
        table.add_row(
            f"rerank pairs/s, batch {row['batch_size']}, 50-pair requests{note}", f"{row['pairs_per_s']:.1f}"
        )
    if res["sustained"]:
        table.add_row(
            f"rerank pairs/s sustained ({res['sustained']['seconds']:.0f} s)",
            f"{res['sustained']['pairs_per_s']:.1f}",
        )
    for k, v in res["memory"].items():
        table.add_row(k.replace("_", " "), f"{v:.0f}")
    if res["cost_per_1k_queries"] is not None:
        table.add_row(
            f"cost per 1k queries (at {res['hourly_cost']}/h, serial)", f"{res['cost_per_1k_queries']:.4f}"
        )
    env = res["environment"]
    table.add_row(
        "machine",
        f"{env['cpus']} CPUs, load {env['loadavg_1m']:.2f}, torch threads {env['torch_threads']},"
        f" cuda {env['cuda']}",
    )
    Console(stderr=True).print(table)


@app.command("bench")
@handle_errors
def bench_cmd(
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", "-i", help="An index built by `rankfunnel index`.")
    ] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="A BEIR folder (index built and cached).")
    ] = None,
    reranker: Annotated[
        str, typer.Option("--reranker", "-r", help="Model name/path, loader spec, 'auto' or 'none'.")
    ] = defaults.RERANKER,
    retriever: Annotated[Retriever, typer.Option("--retriever")] = DEFAULT_RETRIEVER,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Reranker batch sizes.")] = "8,16,32,64",
    top_k: Annotated[int, typer.Option("--top-k")] = defaults.TOP_K,
    top_n: Annotated[int, typer.Option("--top-n")] = defaults.TOP_N,
    queries: Annotated[int, typer.Option("--queries", help="Queries to time.")] = 100,
    queries_file: Annotated[Path | None, typer.Option("--queries-file", help="One query a line.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up queries.")] = 5,
    sustained_s: Annotated[
        float, typer.Option("--sustained-s", help="Sustained rerank run (s); 0 skips.")
    ] = 10.0,
    hourly_cost: Annotated[
        float | None, typer.Option("--hourly-cost", help="Machine price per hour.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON here too.")] = None,
    as_json: JsonFlag = False,
    embedder: EmbedderOpt = DEFAULT_EMBEDDER,
    cache_dir: CacheOpt = Path(".cache/indexes"),
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Latency p50/p95/p99 (stage 1, rerank, end to end), rerank pairs/s per batch size, memory, cost."""
    from rankfunnel.bench import run_bench
    from rankfunnel.pipeline import Pipeline

    if (index_dir is None) == (dataset is None):
        raise InvalidInputError("Pass exactly one of --index-dir DIR or --dataset DIR.")
    if dataset is not None:
        _, col = _dataset_index(dataset, None, embedder, device, cache_dir, quiet)
    else:
        from rankfunnel.collection import open_collection

        assert index_dir is not None
        if not index_dir.is_dir():
            raise InvalidInputError(
                f"Index directory {index_dir} does not exist; build it with `rankfunnel index`."
            )
        col = open_collection(str(index_dir))
    model, _why = _eval_reranker(
        reranker, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route
    )
    pipe = Pipeline(col, model, retriever=retriever.value, top_k=top_k, top_n=top_n)
    qs = _queries_for_bench(index_dir, dataset, queries_file, col, queries + warmup)
    res = run_bench(
        pipe,
        qs,
        top_k=top_k,
        top_n=top_n,
        retriever=retriever.value,
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
        warmup=warmup,
        sustained_s=sustained_s,
        hourly_cost=hourly_cost,
        show_progress=not quiet,
    ).to_dict()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2), encoding="utf-8")
    if not quiet:
        _print_bench(res)
    if as_json:
        typer.echo(json.dumps(res, indent=2))


@app.command("calibrate")
@handle_errors
def calibrate_cmd(
    dataset: Annotated[Path, typer.Option("--dataset", help="A BEIR folder with labelled queries.")],
    reranker: Annotated[str, typer.Option("--reranker", "-r", help="Model name/path or loader spec.")],
    split: Annotated[
        str | None, typer.Option("--split", help="qrels split (default test, else dev).")
    ] = None,
    max_pairs: Annotated[int, typer.Option("--max-pairs", help="Labelled pairs to score.")] = 2000,
    negatives: Annotated[int, typer.Option("--negatives", help="Hard negatives per query.")] = 10,
    index_dir: Annotated[
        Path | None,
        typer.Option(
            "--index-dir", help="Store calibration.json here (default: the dataset's cached index)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the fit as JSON to this file.")
    ] = None,
    as_json: JsonFlag = False,
    embedder: EmbedderOpt = DEFAULT_EMBEDDER,
    cache_dir: CacheOpt = Path(".cache/indexes"),
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Fit T and b of sigmoid((raw - b) / T) on labelled pairs; report ECE before and after; store the fit.

    The fit goes into calibration.json of the index directory and, for a local model folder, beside the
    model, keyed by the model's identity (a hub id, or a folder's resolved path and content hash, however it
    was spelled); `search`, `rerank` and the service pick it up.
    """
    from rankfunnel.eval.calibrate import collect_pairs, fit_calibration
    from rankfunnel.rerank.calibration import model_identity, save_calibration

    if max_pairs < 2:
        raise InvalidInputError(f"--max-pairs must be >= 2, got {max_pairs}.")
    if reranker.strip().lower() in {"", "none", "off"}:
        raise InvalidInputError("--reranker none has nothing to calibrate: name a reranker model.")
    ds, col = _dataset_index(dataset, split, embedder, device, cache_dir, quiet)
    model = _reranker.load(
        reranker, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route, required=True
    ).model
    assert model is not None
    pairs, labels = collect_pairs(ds, col, negatives_per_query=negatives, max_pairs=max_pairs)
    raw = model.predict(pairs)
    fit = fit_calibration(raw, labels, before=getattr(model, "calibration", None))
    identity = model_identity(model.name, getattr(model, "path", None))
    extra = {**fit.to_dict(), "dataset": ds.name, "split": ds.split}
    stored = [
        save_calibration(
            index_dir or _default_index(cache_dir, ds.name, embedder), identity, fit.calibration, extra=extra
        )
    ]
    if Path(reranker).is_dir():
        stored.append(save_calibration(Path(reranker), identity, fit.calibration, extra=extra))
    result = {"reranker": model.name, "identity": identity, **extra, "stored": [str(p) for p in stored]}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if not quiet:
        err_console.print(
            f"T={fit.calibration.temperature:.4f} b={fit.calibration.bias:.4f} on {fit.pairs} pairs "
            f"({fit.positives} relevant); ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f}, log-loss "
            f"{fit.log_loss_before:.4f} -> {fit.log_loss_after:.4f}; stored in "
            f"{', '.join(result['stored'])}",
            highlight=False,
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2))


def _default_index(cache_dir: Path, name: str, embedder: str) -> Path:
    from rankfunnel.eval.runner import _slug

    return cache_dir / f"{_slug(name)}-{_slug(embedder)}"
