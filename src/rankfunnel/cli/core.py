"""Core commands: ``index``, ``search``, ``rerank``, ``info``. A thin layer: all logic lives in the library.

Environment variables (read here only, never in the library): ``RANKFUNNEL_INDEX_DIR`` (default for
``--index-dir``), ``RANKFUNNEL_RERANKER`` (default for ``--reranker``), ``RANKFUNNEL_DEVICE``,
``RANKFUNNEL_DEBUG=1`` (show tracebacks of unexpected errors); the reranker options ``--cpu-route``
(``RANKFUNNEL_CPU_ROUTE``), ``--reranker-api-key`` (``RANKFUNNEL_RERANKER_API_KEY``) and ``--offline``
(``HF_HUB_OFFLINE``) are defined in :mod:`rankfunnel.cli._reranker`.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rankfunnel import defaults
from rankfunnel.cli import _reranker, app
from rankfunnel.cli._errors import handle_errors
from rankfunnel.cli._helpers import read_docs_file
from rankfunnel.cli._reranker import CpuRouteOpt, OfflineOpt, RerankerApiKeyOpt
from rankfunnel.errors import InvalidInputError

err_console = Console(stderr=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class Retriever(StrEnum):
    dense = "dense"
    bm25 = "bm25"
    hybrid = "hybrid"


#: The shared default retriever (rankfunnel.defaults) as the CLI enum.
DEFAULT_RETRIEVER = Retriever(defaults.RETRIEVER)

class Backend(StrEnum):
    auto = "auto"
    faiss = "faiss"
    milvus = "milvus"


class IndexType(StrEnum):
    auto = "auto"
    flat = "flat"
    hnsw = "hnsw"


IndexDir = Annotated[
    Path | None,
    typer.Option(
        "--index-dir",
        "-i",
        envvar="RANKFUNNEL_INDEX_DIR",
        help="Index directory (env RANKFUNNEL_INDEX_DIR); not needed with --milvus-uri.",
    ),
]
class RerankMode(StrEnum):
    on = "on"
    off = "off"
    auto = "auto"

    @property
    def flag(self) -> bool | str:
        """The library's ``rerank=`` value: True, False or ``"auto"``."""
        flags: dict[str, bool | str] = {"on": True, "off": False, "auto": "auto"}
        return flags[self.value]


# -- stage-2 options shared by search, eval, bench (and, with the same names, serve) ---------------------------
FallbackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fallback", help="Fallback reranker tried when the previous one times out or fails (repeatable)."
    ),
]
DeadlineOpt = Annotated[
    float | None,
    typer.Option(
        "--deadline-ms",
        help="Deadline of a whole search (stage 1 + rerank); when it passes, stage-1 order is shown.",
    ),
]
AttemptTimeoutOpt = Annotated[
    float | None,
    typer.Option("--attempt-timeout-ms", help="Time one reranker of the chain gets before the next is tried."),
]
ScoreCacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="SQLite file of cached rerank scores, reused across runs."),
]
FailClosedOpt = Annotated[
    bool,
    typer.Option("--fail-closed", help="Fail (exit 2) instead of showing stage-1 results when reranking fails."),
]
RerankModeOpt = Annotated[
    RerankMode,
    typer.Option(
        "--rerank", help="on: always rerank; off: stage 1 only; auto: skip when stage 1 is confident."
    ),
]
AutoMarginOpt = Annotated[
    float, typer.Option("--auto-margin", help="--rerank auto skips stage 2 above this stage-1 top-1/top-2 gap.")
]
DepthPolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--depth-policy",
        help="Adaptive-depth policy JSON (fit_depth_policy / bench/adaptive_depth.py): per query, skip or "
        "rerank only the top 10/20/50/100. Implies --rerank auto (serve: for /v1/search requests with rerank "
        '"auto").',
    ),
]


def depth_policy_mode(path: Path | None, rerank: RerankMode) -> tuple[Any, RerankMode]:
    """The ``--depth-policy`` file loaded (None when not given) and the rerank mode it implies (``auto``)."""
    if path is None:
        return None, rerank
    from rankfunnel.rerank.depth import DepthPolicy

    if rerank is RerankMode.off:
        raise InvalidInputError("--depth-policy decides how deep to rerank: drop --rerank off.")
    return DepthPolicy.load(path), RerankMode.auto


def stage2_options(
    *,
    deadline_ms: float | None,
    attempt_timeout_ms: float | None,
    cache: Path | None,
    fail_closed: bool,
    auto_margin: float,
) -> dict[str, Any]:
    """Keyword arguments of :class:`~rankfunnel.pipeline.Pipeline` from the shared CLI options."""
    return {
        "deadline_ms": deadline_ms,
        "attempt_timeout_ms": attempt_timeout_ms,
        "cache": cache,
        "fail_open": not fail_closed,
        "auto_margin": auto_margin,
    }


def load_fallbacks(
    specs: list[str] | None,
    *,
    device: str | None,
    offline: bool,
    api_key: str | None,
    route: str,
    index_dir: Path | None = None,
) -> list[Any]:
    """The ``--fallback`` rerankers, loaded as the primary one is; one that cannot load is left out, said once."""
    from rankfunnel.rerank.resolve import apply_stored_calibration

    chain = []
    for spec in specs or []:
        loaded = _reranker.load(spec, device=device, offline=offline, api_key=api_key, route=route)
        if loaded.model is None:
            if loaded.reason:
                err_console.print(
                    f"[yellow]fallback {_escape(spec)} left out:[/] {_escape(loaded.reason)}",
                    highlight=False, soft_wrap=True,
                )
            continue
        if index_dir is not None:
            apply_stored_calibration(loaded.model, index_dir)
        chain.append(loaded.model)
    return chain


JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
RerankerOpt = Annotated[
    str,
    typer.Option(
        "--reranker",
        "-r",
        envvar="RANKFUNNEL_RERANKER",
        help="Model name or path, a loader spec, 'auto' or 'none'.",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option("--device", envvar="RANKFUNNEL_DEVICE", help="cuda, mps or cpu (default: automatic)."),
]
BackendOpt = Annotated[Backend, typer.Option("--backend", help="Vector index backend.")]
MilvusOpt = Annotated[
    str | None,
    typer.Option(
        "--milvus-uri",
        envvar="RANKFUNNEL_MILVUS_URI",
        help="Milvus URI: a local file (Milvus Lite) or http://host:19530.",
    ),
]


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _open(
    index_dir: Path | None,
    backend: Backend,
    milvus_uri: str | None,
    *,
    embedder: Any = None,
    create: bool = False,
    **opts: Any,
) -> Any:
    from rankfunnel.collection import open_collection

    if backend is Backend.milvus or milvus_uri:
        if not milvus_uri:
            raise InvalidInputError(
                "--backend milvus needs --milvus-uri (a local file for Milvus Lite, or http://host:19530)."
            )
        return open_collection(milvus_uri, backend="milvus", embedder=embedder, create=create, **opts)
    if index_dir is None:
        raise InvalidInputError(
            "No index given: pass --index-dir DIR (or set RANKFUNNEL_INDEX_DIR), "
            "or --milvus-uri URI for a Milvus collection."
        )
    if not create and not index_dir.exists():
        raise InvalidInputError(
            f"Index directory {index_dir} does not exist. Build it first with "
            f"`rankfunnel index SOURCE --index-dir {index_dir}`."
        )
    return open_collection(str(index_dir), backend=backend.value, embedder=embedder, create=create, **opts)


def _parse_filters(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(
                f"--filter {item!r} is not key=value; write e.g. --filter domain=finance."
            )
        try:  # numbers, booleans and null compare as their JSON values; anything else is a string
            parsed = json.loads(value)
            out[key.strip()] = parsed if isinstance(parsed, int | float | bool) or parsed is None else value
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@app.command()
@handle_errors
def index(
    source: Annotated[
        Path, typer.Argument(help="BEIR corpus.jsonl, JSONL of {id,title,text,metadata}, or folder.")
    ],
    index_dir: IndexDir = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="Embedding model name or path ('hashing[:DIM]': a test embedder). Default: the "
            "index's own, or sentence-transformers/all-MiniLM-L6-v2 for a new index."
        ),
    ] = None,
    index_type: Annotated[
        IndexType,
        typer.Option(
            "--index-type",
            help="Faiss index of a new index: auto (exact until 100,000 documents, then HNSW), flat "
            "(always exact) or hnsw.",
        ),
    ] = IndexType.auto,
    backend: BackendOpt = Backend.auto,
    milvus_uri: MilvusOpt = None,
    upsert: Annotated[bool, typer.Option(help="Replace documents whose id is already indexed.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Skip ids already in the index (resume a stopped run).")
    ] = True,
    chunk_size: Annotated[int, typer.Option(help="Documents per atomic commit.")] = 1024,
    device: DeviceOpt = None,
    encode_devices: Annotated[
        str | None,
        typer.Option(
            "--encode-devices",
            help="Encode with one worker process per device, comma-separated: 'cuda:0,cuda:1' or "
            "'cpu,cpu,cpu,cpu' (sentence-transformers' multi-process pool; large chunks only).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Check the whole source first; index nothing if any line is invalid (exit 2)."
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="JSONL file receiving every rejected line with its reason "
            "(default: <index-dir>.rejects.jsonl beside the index).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Index a corpus into an index directory (streams the source; rerun to resume after an interruption).

    Valid documents are indexed and invalid lines skipped; each rejected line goes with its reason to the
    rejects file. --strict indexes nothing unless every line is valid.
    """
    from rankfunnel.embed import make_embedder
    from rankfunnel.ingest import default_rejects_path, index_source, source_kind

    source_kind(source)  # fail fast on a missing / unsupported source, before loading a model
    devices = [d.strip() for d in (encode_devices or "").split(",") if d.strip()]
    if encode_devices is not None and not devices:
        raise InvalidInputError("--encode-devices is empty: give e.g. 'cuda:0,cuda:1' or 'cpu,cpu'.")
    if index_dir is not None and not milvus_uri and backend is not Backend.milvus:
        from rankfunnel.collection import check_index_target

        check_index_target(index_dir)  # before any model is loaded
    target = milvus_uri or str(index_dir)
    rejects_path = rejects if rejects is not None else default_rejects_path(target)
    emb = make_embedder(embedder, device=device) if embedder else None
    opts: dict[str, Any] = {} if index_type is IndexType.auto else {"index_type": index_type.value}
    if emb is None and device:
        opts["device"] = device
    collection = _open(index_dir, backend, milvus_uri, embedder=emb, create=True, **opts)
    pool = None
    if devices:
        from rankfunnel.embed_pool import PooledEmbedder

        # the pool keeps the index's embedder name and dim, so the index stays the same index
        pool = PooledEmbedder(collection.embedder, devices=devices, min_texts=min(chunk_size, 2048))
        collection.embedder = pool
    try:
        stats = index_source(
            collection,
            source,
            chunk_size=chunk_size,
            resume=resume,
            upsert=upsert,
            show_progress=not as_json and sys.stderr.isatty(),
            strict=strict,
            rejects=rejects_path,
        )
    finally:
        if pool is not None:
            pool.close()
    out = {**stats.to_dict(), "index_dir": target, "documents": len(collection)}
    if as_json:
        _print_json(out)
    else:
        err_console.print(
            f"[green]indexed[/] {stats.added} new documents ({stats.skipped} already present, {stats.rejected} "
            f"rejected) from {_escape(str(source))} into {_escape(target)}: {len(collection)} in total, "
            f"{stats.docs_per_s:.0f} docs/s.",
            highlight=False,
        )
    if stats.rejected:
        first = "; ".join(stats.reasons[:3])
        err_console.print(
            f"[yellow]rejected[/] {stats.rejected} of {stats.read} lines, e.g. {_escape(first)}. Every rejected line "
            f"with its reason is in {_escape(str(stats.rejects_path))}; fix them and rerun the same command to add "
            "them (documents already indexed are skipped).",
            highlight=False,
            soft_wrap=True,
        )
    if stats.rejected and not stats.added and not stats.skipped:
        raise typer.Exit(2)  # nothing usable in the source: an input error


@app.command()
@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    index_dir: IndexDir = None,
    retriever: Annotated[Retriever, typer.Option(help="Stage-1 retriever.")] = DEFAULT_RETRIEVER,
    reranker: RerankerOpt = defaults.RERANKER,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Stage-1 candidates handed to the reranker.")
    ] = defaults.TOP_K,
    top_n: Annotated[int, typer.Option("--top-n", help="Results shown.")] = defaults.TOP_N,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="Metadata equality filter key=value (repeatable).")
    ] = None,
    backend: BackendOpt = Backend.auto,
    milvus_uri: MilvusOpt = None,
    device: DeviceOpt = None,
    with_text: Annotated[
        bool, typer.Option("--with-text", help="Include title/text/metadata in JSON.")
    ] = False,
    as_json: JsonFlag = False,
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
    depth_policy: DepthPolicyOpt = None,
) -> None:
    """Search an index: stage-1 retrieval, then rerank (stage 1 only if there is no reranker to load)."""
    from rankfunnel.pipeline import Pipeline
    from rankfunnel.rerank.resolve import apply_stored_calibration

    filters = _parse_filters(filter_)
    policy, rerank = depth_policy_mode(depth_policy, rerank)
    collection = _open(index_dir, backend, milvus_uri)
    loaded = _reranker.load(reranker, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route)
    model, reason = loaded.model, loaded.reason
    local_index = index_dir if backend is not Backend.milvus and not milvus_uri else None
    if model is not None and local_index is not None:
        apply_stored_calibration(model, local_index)  # the fit `rankfunnel calibrate` stored, if any
    opts = stage2_options(
        deadline_ms=deadline_ms, attempt_timeout_ms=attempt_timeout_ms, cache=cache,
        fail_closed=fail_closed, auto_margin=auto_margin,
    )
    chain = load_fallbacks(
        fallback, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route, index_dir=local_index
    )
    pipe = Pipeline(
        collection, model, retriever=retriever.value, top_k=top_k, top_n=top_n, reason=reason,
        fallbacks=chain, depth_policy=policy, **opts,
    )
    result = pipe.search(query, filter=filters, rerank=rerank.flag)
    if as_json:
        _print_json(result.to_dict(with_text=with_text))
        return
    if not result.reranked and result.reason:
        err_console.print(
            f"[yellow]not reranked:[/] {_escape(result.reason)}", highlight=False, soft_wrap=True
        )
    t = result.timings_ms
    table = Table(
        title=f"{query!r}  ({retriever.value}, reranker={result.reranker or 'none'})",
        caption=f"stage 1 {t.get('stage1_ms', 0):.1f} ms, rerank {t.get('rerank_ms', 0):.1f} ms, "
        f"total {t.get('total_ms', 0):.1f} ms",
    )
    console = Console()
    ids = max((len(h.id) for h in result.hits), default=2)
    _add_columns(
        table,
        {"rank": 4, "s1 rank": 7, "s1 score": 8, "raw": 7, "score": 6, "id": min(ids, 24)},
        "title / text",
        console.width,
    )
    for h in result.hits:
        snippet = ""
        if h.document is not None:
            snippet = h.document.title or h.document.text
        table.add_row(
            str(h.rank),
            str(h.stage1_rank),
            f"{h.stage1_score:.4f}",
            "-" if h.rerank_score is None else f"{h.rerank_score:+.2f}",
            f"{h.score:.4f}",
            _escape(h.id),
            _escape(_snip(snippet, 200)),
        )
    console.print(table)


def _add_columns(table: Table, fixed: dict[str, int], text_column: str, width: int) -> None:
    """Numeric / id columns (name -> width) never wrap; the text column gets the rest, with an ellipsis."""
    for col, w in fixed.items():
        table.add_column(col, justify="left" if col == "id" else "right", no_wrap=True, min_width=w)
    rest = width - sum(fixed.values()) - 3 * (len(fixed) + 1) - 1
    table.add_column(text_column, no_wrap=True, overflow="ellipsis", max_width=max(12, rest))


def _snip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command()
@handle_errors
def rerank(
    query: Annotated[str, typer.Option("--query", "-q", help="The query.")],
    docs: Annotated[
        Path, typer.Option("--docs", "-d", help="JSONL (strings or {id,title,text}) or one doc per line.")
    ],
    reranker: RerankerOpt = "auto",
    top_n: Annotated[int | None, typer.Option("--top-n", help="Keep the best N (default: all).")] = None,
    device: DeviceOpt = None,
    as_json: JsonFlag = False,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Rerank a list of documents for one query (no index needed)."""
    from rankfunnel.rerank.resolve import apply_stored_calibration

    items = read_docs_file(docs)
    if reranker.strip().lower() in {"", "none", "off"}:
        raise InvalidInputError("`rankfunnel rerank` needs a reranker; pass --reranker NAME|PATH or 'auto'.")
    model = _reranker.load(
        reranker, device=device, offline=offline, api_key=reranker_api_key, route=cpu_route, required=True
    ).model  # raises with the resolver's reason or the loader's plain message
    name = reranker
    if model is None:
        raise InvalidInputError("`rankfunnel rerank` needs a reranker; pass --reranker NAME|PATH or 'auto'.")
    apply_stored_calibration(model)  # a fit stored beside the model folder by `rankfunnel calibrate`
    ranked = model.rank(query, [text for _, text in items], top_n)
    rows = [
        {"rank": r + 1, "index": i, "id": items[i][0], "rerank_score": raw, "score": norm}
        for r, (i, raw, norm) in enumerate(ranked)
    ]
    if as_json:
        _print_json({"query": query, "reranker": getattr(model, "name", name), "results": rows})
        return
    table = Table(title=f"{query!r}  (reranker={getattr(model, 'name', name)})")
    console = Console()
    ids = max((len(doc_id) for doc_id, _ in items), default=2)
    _add_columns(
        table, {"rank": 4, "index": 5, "id": min(ids, 24), "raw": 7, "score": 6}, "text", console.width
    )
    for r, (i, raw, norm) in enumerate(ranked):
        cells = (
            str(r + 1),
            str(i),
            _escape(items[i][0]),
            f"{raw:.3f}",
            f"{norm:.4f}",
            _escape(_snip(items[i][1], 200)),
        )
        table.add_row(*cells)
    console.print(table)


@app.command()
@handle_errors
def info(
    as_json: JsonFlag = False,
    reranker: RerankerOpt = "auto",
    device: DeviceOpt = None,
    offline: OfflineOpt = False,
) -> None:
    """Devices, library versions, the reranker the flags and environment resolve to (and why), licences."""
    from rankfunnel.cli._helpers import collect_info

    data = collect_info(reranker=reranker, device=device, offline=offline)
    if as_json:
        _print_json(data)
        return
    console = Console()
    table = Table(title="rankfunnel info", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for section in ("devices", "versions"):
        for key, value in data[section].items():
            table.add_row(f"{section}.{key}", str(value))
    for role, entry in data["models"].items():
        where = entry.get("path") or f"[red]{_escape(entry.get('error', 'unresolved'))}[/]"
        lic = entry.get("licence") or "unknown"
        table.add_row(f"model.{role}", f"{_escape(entry['name'])} -> {where} (licence: {_escape(lic)})")
    console.print(table)
    console.print(f"reranker: {_escape(data['reranker']['reason'])}", highlight=False, soft_wrap=True)
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/] {_escape(warning)}", highlight=False)
