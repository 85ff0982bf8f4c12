"""``rankfunnel serve``: the HTTP service (FastAPI + uvicorn) over an index directory and a reranker chain.

Environment variables (read here only, never in the library): ``RANKFUNNEL_INDEX_DIR``,
``RANKFUNNEL_RERANKER``, ``RANKFUNNEL_DEVICE``, ``RANKFUNNEL_API_KEYS`` (comma-separated; prefer it to
``--api-key``, which shows in ``ps``; these are the keys clients must send to this service),
``RANKFUNNEL_HOST``, ``RANKFUNNEL_PORT``, and the reranker options of :mod:`rankfunnel.cli._reranker`
(``RANKFUNNEL_RERANKER_API_KEY``: the key this service sends to a remote reranker).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from rankfunnel import defaults
from rankfunnel.cli import _reranker, app
from rankfunnel.cli._reranker import CpuRouteOpt, OfflineOpt, RerankerApiKeyOpt
from rankfunnel.cli.core import DepthPolicyOpt
from rankfunnel.errors import InvalidInputError

if TYPE_CHECKING:
    from rankfunnel.service.traffic import TrafficOptions

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _api_keys(cli_keys: list[str] | None) -> tuple[str, ...]:
    env = os.environ.get("RANKFUNNEL_API_KEYS", "")
    keys = [k.strip() for k in env.split(",") if k.strip()] + list(cli_keys or [])
    return tuple(dict.fromkeys(keys))


def _queue_wait(value: str) -> float | Literal["auto"] | None:
    v = value.strip().lower()
    if v in ("auto", "off"):
        return "auto" if v == "auto" else None
    try:
        return float(v)
    except ValueError:
        raise InvalidInputError(
            f"--max-queue-wait-ms must be a number of milliseconds, 'auto' or 'off', got {value!r}."
        ) from None


def _inflight(value: str) -> int | Literal["auto"]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"--max-inflight must be a positive integer or 'auto', got {value!r}.") from None


@app.command()
def serve(
    index_dir: Annotated[
        Path | None,
        typer.Option(
            "--index-dir",
            envvar="RANKFUNNEL_INDEX_DIR",
            help="Index directory for /v1/search (omit: rerank only).",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Vector index backend: auto, faiss or milvus.")
    ] = "auto",
    milvus_uri: Annotated[
        str | None,
        typer.Option(
            "--milvus-uri",
            envvar="RANKFUNNEL_MILVUS_URI",
            help="Milvus Lite file or http://host:19530 (instead of --index-dir).",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="RANKFUNNEL_HOST",
            help="Bind address; 0.0.0.0 exposes the service to the network.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="RANKFUNNEL_PORT")] = 8000,
    reranker: Annotated[
        str,
        typer.Option(
            "--reranker",
            "-r",
            envvar="RANKFUNNEL_RERANKER",
            help="Primary reranker: model name or path, a spec, 'auto' or 'none'.",
        ),
    ] = "auto",
    fallback: Annotated[
        list[str] | None,
        typer.Option(
            "--fallback",
            help="Fallback reranker tried when the previous one times out or fails (repeatable).",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", envvar="RANKFUNNEL_DEVICE", help="cuda, mps or cpu (default: automatic)."),
    ] = None,
    max_wait_ms: Annotated[float, typer.Option(help="Batching window once a request is queued.")] = 3.0,
    max_batch_tokens: Annotated[int, typer.Option(help="Estimated tokens per model call.")] = 16_384,
    max_batch_pairs: Annotated[int, typer.Option(help="Pairs per model call at most.")] = 512,
    max_queue_pairs: Annotated[int, typer.Option(help="Pairs allowed to wait; beyond: 429.")] = 8_192,
    max_queue_wait_ms: Annotated[
        str,
        typer.Option(
            help="Also 429 when the queue would take longer than this many ms to drain; 'auto' derives it "
            "from the measured model time (4 calls, >= 1 s, <= a quarter of the deadline); 'off': no such bound."
        ),
    ] = "auto",
    max_inflight: Annotated[
        str,
        typer.Option(
            help="Requests handled at once; beyond: 429. 'auto' derives it from the measured completion rate "
            "(about 1 s of work in flight, 32 to 1024)."
        ),
    ] = "auto",
    preempt_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=60_000.0,
            help="While more urgent requests arrive (priority classes), less urgent work goes to the model in "
            "slices of about this many ms, so an urgent request waits at most one slice; 0: never slice.",
        ),
    ] = 50.0,
    promote_after_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=3_600_000.0,
            help="Ageing: a queued request that has waited this long (or half its deadline) is served as most "
            "urgent, so urgent traffic cannot starve it; 0: strict priority.",
        ),
    ] = 5_000.0,
    deadline_ms: Annotated[float, typer.Option(help="Per-request rerank deadline.")] = 10_000.0,
    attempt_timeout_ms: Annotated[
        float | None, typer.Option(help="Time one reranker of the chain gets before the next is tried.")
    ] = None,
    fail_closed: Annotated[
        bool,
        typer.Option("--fail-closed", help="Answer 503 instead of stage-1 results when reranking fails."),
    ] = False,
    auto_margin: Annotated[
        float, typer.Option(help="rerank=auto skips stage 2 above this stage-1 gap.")
    ] = defaults.AUTO_MARGIN,
    depth_policy: DepthPolicyOpt = None,
    breaker_failures: Annotated[
        int, typer.Option(help="Consecutive failures of a reranker that open its circuit breaker.")
    ] = defaults.BREAKER_FAILURES,
    breaker_cooldown_s: Annotated[
        float, typer.Option(help="Seconds an open circuit breaker waits before one probe call.")
    ] = defaults.BREAKER_COOLDOWN_S,
    cache_size: Annotated[int, typer.Option(help="Score cache entries (0 disables).")] = defaults.CACHE_SIZE,
    cache_ttl_s: Annotated[float, typer.Option(help="Score cache time to live.")] = defaults.CACHE_TTL_S,
    cache_path: Annotated[
        Path | None,
        typer.Option("--cache-path", "--cache", help="SQLite file for a persistent score cache."),
    ] = None,
    max_documents: Annotated[int, typer.Option(help="Documents per request.")] = 1000,
    max_doc_chars: Annotated[int, typer.Option(help="Characters per document.")] = 20_000,
    max_query_chars: Annotated[int, typer.Option(help="Characters per query.")] = 2_000,
    max_id_chars: Annotated[int, typer.Option(help="Characters per document id (and rerank 'model').")] = 512,
    max_title_chars: Annotated[int, typer.Option(help="Characters per document title.")] = 2_000,
    max_metadata_bytes: Annotated[
        int, typer.Option(help="Bytes of one document's metadata (or a search filter) as JSON.")
    ] = 16_384,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="Accepted API key (repeatable); prefer RANKFUNNEL_API_KEYS."),
    ] = None,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code", help="Let model repositories run their own Python code (off by default)."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    priority: Annotated[
        list[str] | None,
        typer.Option(
            "--priority",
            help="Priority class policy CLASS=ITEMS (repeatable; classes high, normal, low; items depth:N, "
            "share:F = fraction of the queue it may find before 429, stage1, idle), e.g. low=share:0.5,stage1.",
        ),
    ] = None,
    priority_config: Annotated[
        Path | None,
        typer.Option("--priority-config", help='Priority classes as JSON: {"low": {"queue_share": 0.5}, ...}.'),
    ] = None,
    reranker_api_key: RerankerApiKeyOpt = None,
    cpu_route: CpuRouteOpt = "auto",
    offline: OfflineOpt = False,
    shadow: Annotated[
        str | None,
        typer.Option(
            "--shadow",
            help="SPEC[:RATE]: a second reranker scores RATE (default 0.1) of requests after each answer, off the "
            "primary's path; records go to --shadow-log (summarise with `rankfunnel shadow-report`).",
        ),
    ] = None,
    shadow_log: Annotated[
        Path, typer.Option("--shadow-log", help="JSONL file of shadow records (rotated, size-bounded).")
    ] = Path("shadow.jsonl"),
    shadow_queue: Annotated[
        int, typer.Option("--shadow-queue", help="Requests waiting for the shadow; beyond: not shadowed, counted.")
    ] = 64,
    shadow_max_mb: Annotated[
        float, typer.Option("--shadow-max-mb", help="Size of the shadow log before it rotates (3 copies kept).")
    ] = 10.0,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help="A/B split, repeatable: NAME=SPEC:WEIGHT (SPEC 'primary' = --reranker's chain), e.g. "
            "--variant control=primary:90 --variant new=MODEL:10.",
        ),
    ] = None,
    variant_key_header: Annotated[
        str, typer.Option("--variant-key-header", help="Request header whose value picks the variant (else the query).")
    ] = "X-User-Id",
) -> None:
    """Serve search and rerank over HTTP (rankfunnel, Cohere v1/v2, ZeroEntropy and TEI shapes; docs/integrations.md).

    Examples:
        rankfunnel serve --index-dir out/idx --reranker fake --port 8000
    """
    args = dict(locals())
    from rankfunnel.cli.core import handle_errors

    handle_errors(_serve)(**args)


def _serve(
    *,
    index_dir: Path | None,
    backend: str,
    milvus_uri: str | None,
    host: str,
    port: int,
    reranker: str,
    fallback: list[str] | None,
    device: str | None,
    max_wait_ms: float,
    max_batch_tokens: int,
    max_batch_pairs: int,
    max_queue_pairs: int,
    max_queue_wait_ms: str,
    max_inflight: str,
    preempt_ms: float,
    promote_after_ms: float,
    deadline_ms: float,
    attempt_timeout_ms: float | None,
    fail_closed: bool,
    auto_margin: float,
    depth_policy: Path | None,
    breaker_failures: int,
    breaker_cooldown_s: float,
    cache_size: int,
    cache_ttl_s: float,
    cache_path: Path | None,
    max_documents: int,
    max_doc_chars: int,
    max_query_chars: int,
    max_id_chars: int,
    max_title_chars: int,
    max_metadata_bytes: int,
    api_key: list[str] | None,
    trust_remote_code: bool,
    log_level: str,
    priority: list[str] | None,
    priority_config: Path | None,
    reranker_api_key: str | None,
    cpu_route: str,
    offline: bool,
    shadow: str | None,
    shadow_log: Path,
    shadow_queue: int,
    shadow_max_mb: float,
    variant: list[str] | None,
    variant_key_header: str,
) -> None:
    from rankfunnel._optional import require
    from rankfunnel.rerank.depth import DepthPolicy
    from rankfunnel.service import Limits, ServiceConfig, create_app
    from rankfunnel.service.priority import PriorityConfig

    uvicorn = require("uvicorn", "server")
    if not 0 < port < 65536:
        raise InvalidInputError(f"--port must be between 1 and 65535, got {port}.")
    if backend not in ("auto", "faiss", "milvus"):
        raise InvalidInputError(f"--backend must be auto, faiss or milvus, got {backend!r}.")
    if backend == "milvus" and not milvus_uri:
        raise InvalidInputError("--backend milvus needs --milvus-uri (a Milvus Lite file or http://host:19530).")
    if index_dir is not None and not index_dir.exists():
        raise InvalidInputError(f"--index-dir {index_dir} does not exist; build it with `rankfunnel index`.")
    classes = PriorityConfig.load(priority_config) if priority_config is not None else PriorityConfig()
    classes = PriorityConfig.parse(priority or [], base=classes)
    keys = _api_keys(api_key)
    if host not in _LOOPBACK and not keys:
        logging.getLogger(__name__).warning(
            "Binding %s without API keys: anyone on the network can use this service. "
            "Set RANKFUNNEL_API_KEYS or bind 127.0.0.1.",
            host,
        )
    config = ServiceConfig(
        max_batch_tokens=max_batch_tokens,
        max_batch_pairs=max_batch_pairs,
        max_wait_ms=max_wait_ms,
        max_queue_pairs=max_queue_pairs,
        max_queue_wait_ms=_queue_wait(max_queue_wait_ms),
        max_inflight=_inflight(max_inflight),
        preempt_ms=preempt_ms or None,
        promote_after_ms=promote_after_ms or None,
        deadline_ms=deadline_ms,
        fail_open=not fail_closed,
        attempt_timeout_ms=attempt_timeout_ms,
        auto_margin=auto_margin,
        depth_policy=DepthPolicy.load(depth_policy) if depth_policy is not None else None,
        breaker_failures=breaker_failures,
        breaker_cooldown_s=breaker_cooldown_s,
        cache_size=cache_size,
        cache_ttl_s=cache_ttl_s,
        cache_path=str(cache_path) if cache_path else None,
        api_keys=keys,
        limits=Limits(
            max_documents=max_documents,
            max_doc_chars=max_doc_chars,
            max_query_chars=max_query_chars,
            max_id_chars=max_id_chars,
            max_title_chars=max_title_chars,
            max_metadata_bytes=max_metadata_bytes,
        ),
        trust_remote_code=trust_remote_code,
        priority=classes,
    )
    route = _reranker.check_route(cpu_route)
    specs: list[str] = []
    for requested in [reranker, *(fallback or [])]:  # resolved once, here; loaded in the service's lifespan
        resolution, offline = _reranker.resolve(requested, device=device, offline=offline)
        if resolution.spec is None:
            logging.getLogger(__name__).warning("%s", resolution.reason)
        else:
            specs.append(resolution.spec)
    options = {"offline": offline, "route": route, "api_key": _reranker.api_key_for(",".join(specs), reranker_api_key)}
    target: str | Path | None = index_dir
    if milvus_uri:
        target, backend = milvus_uri, "milvus"
    application = create_app(
        config, index_dir=target, reranker_specs=specs, device=device, backend=backend, reranker_options=options,
        traffic=_traffic(shadow, shadow_log, shadow_queue, shadow_max_mb, variant, variant_key_header),
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level, lifespan="on")


def _traffic(
    shadow: str | None, log: Path, queue: int, max_mb: float, variants: list[str] | None, key_header: str
) -> TrafficOptions | None:
    """``--shadow`` / ``--variant`` checked here (exit 2 before any model loads); loaded in the lifespan."""
    from rankfunnel.rerank.shadow import parse_shadow_spec
    from rankfunnel.rerank.variants import PRIMARY, parse_variant
    from rankfunnel.service.traffic import TrafficOptions

    if shadow is None and not variants:
        return None
    if queue < 1 or not (math.isfinite(max_mb) and max_mb > 0):
        raise InvalidInputError(f"--shadow-queue must be >= 1 and --shadow-max-mb > 0, got {queue}, {max_mb}.")
    if not key_header.strip():
        raise InvalidInputError("--variant-key-header must name a header, e.g. X-User-Id.")
    parsed = [parse_variant(v) for v in variants or []]
    names = [v.name for v in parsed]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"--variant names must be unique, got {names}.")
    if parsed and all(v.spec == PRIMARY for v in parsed) and len(parsed) > 1:
        raise InvalidInputError("--variant: more than one variant is 'primary'; give the others a reranker SPEC.")
    spec, rate = parse_shadow_spec(shadow) if shadow is not None else (None, 0.1)
    return TrafficOptions(
        shadow_spec=spec, shadow_rate=rate, shadow_log=log, shadow_queue=queue,
        shadow_max_bytes=int(max_mb * 1024 * 1024), variants=parsed, variant_key_header=key_header.strip(),
    )
