"""FastAPI app factory: lifespan that loads models once, one error handler, API keys, metrics middleware.

Routes live in :mod:`rankfunnel.service.routes`; batching, caching and fallbacks in
:class:`~rankfunnel.service.engine.RerankEngine`.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from rankfunnel._optional import require
from rankfunnel.errors import (
    DocumentNotFoundError,
    InvalidInputError,
    ModelNotFoundError,
    OptionalDependencyError,
    OverloadedError,
    RankfunnelError,
    RerankerUnavailableError,
)
from rankfunnel.rerank.base import BaseReranker
from rankfunnel.service.config import ServiceConfig
from rankfunnel.service.engine import NotConfiguredError, RerankEngine
from rankfunnel.service.limits import LimitExceededError
from rankfunnel.service.metrics import ServiceMetrics
from rankfunnel.service.priority import CLASSES, DEFAULT_CLASS, PriorityConfig, request_class
from rankfunnel.service.priority import HEADER as PRIORITY_HEADER
from rankfunnel.service.traffic import TrafficOptions
from rankfunnel.service.traffic import attach as attach_traffic
from rankfunnel.service.traffic import detach as detach_traffic

require("fastapi", "server")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from rankfunnel.service.ui import PUBLIC_PREFIXES, UI_PATHS, mount_ui  # noqa: E402

log = logging.getLogger(__name__)

#: Paths answered without an API key (probes of orchestrators carry none; the browser pages hold no data).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/openapi.json", "/docs/oauth2-redirect", *UI_PATHS})


def is_public(path: str) -> bool:
    """Whether ``path`` is answered without an API key (and outside the in-flight limit)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
_KNOWN_ROUTES = (
    "/v1/search",
    "/v2/rerank",
    "/v1/rerank",
    "/v1/models/rerank",
    "/rerank",
    "/v1/documents",
    "/healthz",
    "/readyz",
    "/metrics",
)


def status_for(exc: RankfunnelError) -> int:
    """The HTTP status code of a library error."""
    if isinstance(exc, LimitExceededError):
        return exc.status
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, DocumentNotFoundError):
        return 404
    if isinstance(exc, OverloadedError):
        return 429
    if isinstance(exc, (NotConfiguredError, OptionalDependencyError)):
        return 501
    if isinstance(exc, (RerankerUnavailableError, ModelNotFoundError)):
        return 503
    return 500


def error_response(exc: RankfunnelError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif status == 503:
        headers["Retry-After"] = "1"
    return JSONResponse(
        {"detail": str(exc), "error": type(exc).__name__}, status_code=status, headers=headers
    )


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(str(e.get("msg")) for e in errors if e.get("type") == "json_invalid")
        return JSONResponse(
            {"detail": f"Malformed JSON body ({msg}); send a valid JSON object.", "error": "MalformedJSON"},
            status_code=400,
        )
    parts = []
    for e in errors[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    return JSONResponse(
        {
            "detail": "Invalid request: " + "; ".join(parts),
            "error": "ValidationError",
            "errors": [
                {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                for e in errors[:50]
            ],
        },
        status_code=422,
    )


def api_key_ok(presented: str | None, keys: Sequence[str]) -> bool:
    """Constant-time check of ``presented`` against every configured key (no early exit)."""
    if presented is None:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode("utf-8"))
    return ok


def _presented_key(headers: Any) -> str | None:
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    key = headers.get("x-api-key")
    return str(key) if key is not None else None


def _route_label(path: str) -> str:
    if path.startswith("/v1/documents/"):
        return "/v1/documents/{id}"
    return path if path in _KNOWN_ROUTES else "other"


#: ``max_inflight="auto"``: requests in flight at most (completions/s measured while busy) x this many seconds,
AUTO_INFLIGHT_TARGET_S = 1.0
#: ... but at least this many (room for the batcher to fill batches; it bounds model queueing itself) ...
AUTO_INFLIGHT_MIN = 32
#: ... and at most this many (also the limit before anything was measured).
AUTO_INFLIGHT_MAX = 1024
#: Completion rate windows shorter than this are not used.
_RATE_WINDOW_S = 0.5
#: The ``high`` priority class may have this much more in flight than the limit (headroom reserved for it),
#: so that a flood of less urgent requests never refuses an urgent one at the door.
HIGH_HEADROOM = 1.25


def _header_map(scope: Any) -> dict[str, str]:
    """An ASGI scope's headers as a dict with lower-case names."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _peek_class(body: bytes) -> str:
    """The priority class of a buffered request body (Cohere ``priority``, ZeroEntropy ``latency``).

    Only the in-flight check uses this, and only near the limit; anything unreadable counts as the default
    class (the route validates the body and answers 4xx itself).
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    cohere = latency = None
    if isinstance(data, dict):
        p, lat = data.get("priority"), data.get("latency")
        cohere = p if isinstance(p, int) and not isinstance(p, bool) else None
        latency = lat if lat in ("fast", "slow") else None
    return request_class(cohere_priority=cohere, latency=latency)  # both checked above: cannot raise


class _MetricsAndAuth:
    """Pure ASGI middleware (streaming-safe): API keys, in-flight limit, request counts and total latency.

    With ``max_inflight="auto"`` the in-flight limit follows Little's law: completions per second are measured
    over windows in which the server was never idle (so the rate is its capacity, not the offered load), and
    at most ``AUTO_INFLIGHT_TARGET_S`` of work may be in flight; the excess gets 429 + Retry-After at once
    instead of queueing in the event loop (the model queue has its own bound in the batcher).
    """

    def __init__(
        self,
        app: Any,
        *,
        metrics: ServiceMetrics,
        keys: Sequence[str],
        max_inflight: int | str,
        priority: PriorityConfig | None = None,
        max_body_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.app, self.metrics, self.keys = app, metrics, tuple(keys)
        self.auto = max_inflight == "auto"
        self.max_inflight = AUTO_INFLIGHT_MAX if self.auto else int(max_inflight)
        self.inflight = 0
        self._rate = 0.0  # completions per second while busy (EWMA)
        self._done = 0
        self._window_start = time.perf_counter()
        self._idle_in_window = True
        shares = (priority or PriorityConfig()).policies
        # per class, the fraction of the limit it may find in flight (high: the reserved headroom)
        self.class_factor = {c: (HIGH_HEADROOM if c == "high" else 1.0) * shares[c].queue_share for c in CLASSES}
        self.max_body_bytes = max_body_bytes

    def limit(self) -> int:
        """The in-flight limit now in force."""
        if not self.auto or self._rate <= 0:
            return self.max_inflight
        return int(min(AUTO_INFLIGHT_MAX, max(AUTO_INFLIGHT_MIN, self._rate * AUTO_INFLIGHT_TARGET_S)))

    def _completed(self) -> None:
        now = time.perf_counter()
        self._done += 1
        if self.inflight == 0:
            self._idle_in_window = True
        if now - self._window_start >= _RATE_WINDOW_S:
            if not self._idle_in_window:
                rate = self._done / (now - self._window_start)
                self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
            self._window_start, self._done, self._idle_in_window = now, 0, self.inflight == 0

    async def _classify(self, scope: Any, receive: Any) -> tuple[str, Any]:
        """The request's priority class, and a ``receive`` that replays what was read to find it.

        The ``X-Priority`` header is enough when present; otherwise a JSON body of declared size up to
        ``max_body_bytes`` is read (it would be read next anyway) for Cohere's ``priority`` / ZeroEntropy's
        ``latency``. Bodies without a declared size are not read here: they count as the default class.
        """
        headers = _header_map(scope)
        header = headers.get(PRIORITY_HEADER.lower())
        if header is not None:
            try:
                return request_class(header=header), receive
            except InvalidInputError:
                return DEFAULT_CLASS, receive  # the route answers 422 for it
        length = headers.get("content-length", "")
        if scope.get("method") != "POST" or not length.isdigit() or int(length) > self.max_body_bytes:
            return DEFAULT_CLASS, receive
        messages, chunks = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Any:
            for message in replay:
                return message
            return await receive()

        return _peek_class(b"".join(chunks)), replayed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = _route_label(path)
        if self.keys and not is_public(path):
            headers = _header_map(scope)
            if not api_key_ok(_presented_key(headers), self.keys):
                self.metrics.requests.labels(route=route, status="401").inc()
                resp = JSONResponse(
                    {
                        "detail": "Missing or wrong API key: send 'Authorization: Bearer KEY' or "
                        "'X-API-Key: KEY'.",
                        "error": "Unauthorized",
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await resp(scope, receive, send)
                return
        work = not is_public(path) and route != "/metrics"
        base = self.limit() if work else 0
        if work and self.inflight >= base * min(self.class_factor.values()):  # the class decides from here
            cls, receive = await self._classify(scope, receive)
            limit = max(1, int(base * self.class_factor[cls]))
            if self.inflight >= limit:
                self.metrics.requests.labels(route=route, status="429").inc()
                self.metrics.rejected.inc()
                self.metrics.priority_requests.labels(priority=cls, status="429").inc()
                how = " derived from the measured request rate" if self.auto and self._rate > 0 else ""
                share = f"; priority class {cls!r} may use {self.class_factor[cls]:.0%} of it"
                wait = max(1, math.ceil(self.inflight / self._rate)) if self._rate > 0 else 1
                resp = JSONResponse(
                    {
                        "detail": f"Too many requests in flight (max_inflight={base}{how}{share}); retry after "
                        f"{wait} s or send a more urgent request.",
                        "error": "OverloadedError",
                    },
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
                await resp(scope, receive, send)
                return
        status = {"code": 500}
        t0 = time.perf_counter()
        self.inflight += 1

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                # Server-Timing: time in the app until the response starts (lets clients split off queueing)
                dur = f"app;dur={(time.perf_counter() - t0) * 1e3:.1f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", dur)]}
            await send(message)

        state = scope.setdefault("state", {})  # routes put the request's priority class here
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.inflight -= 1
            if work:
                self._completed()
            self.metrics.requests.labels(route=route, status=str(status["code"])).inc()
            elapsed = time.perf_counter() - t0
            if route not in ("/metrics", "/healthz", "/readyz", "other"):
                self.metrics.latency.labels(stage="total").observe(elapsed)
            served = state.get("priority") if isinstance(state, dict) else None
            if served in CLASSES:
                self.metrics.priority_requests.labels(priority=served, status=str(status["code"])).inc()
                if 200 <= status["code"] < 300:
                    self.metrics.priority_latency.labels(priority=served).observe(elapsed)


def load_chain(
    specs: Sequence[str],
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    reranker_options: Mapping[str, Any] | None = None,
) -> list[BaseReranker]:
    """Load the fallback chain (primary first); ``"none"`` entries are dropped.

    ``reranker_options`` go to :func:`~rankfunnel.rerank.load_reranker` (``offline``, ``route``, ``api_key``).

    Raises:
        RerankerUnavailableError: a model cannot be loaded (the message names the fix).
    """
    from rankfunnel.rerank import load_reranker

    out: list[BaseReranker] = []
    for spec in specs:
        plain_model = spec.lower() not in {"fake", "none", "auto"} and ":" not in spec and "," not in spec
        if trust_remote_code and plain_model:  # load_reranker never enables remote code; this is the opt-in
            from rankfunnel.rerank.cross_encoder import CrossEncoderReranker

            out.append(CrossEncoderReranker(spec, device=device, trust_remote_code=True))
            continue
        r = load_reranker(spec, device=device, **dict(reranker_options or {}))
        if r is not None:
            out.append(r)
    return out


def create_app(
    config: ServiceConfig | None = None,
    *,
    pipeline: Any = None,
    rerankers: Sequence[BaseReranker] | None = None,
    index_dir: str | Path | None = None,
    reranker_specs: Sequence[str] = (),
    device: str | None = None,
    embedder: Any = None,
    backend: str = "auto",
    reranker_options: Mapping[str, Any] | None = None,
    traffic: TrafficOptions | None = None,
) -> FastAPI:
    """Build the FastAPI app. Models and the index load once, in the lifespan.

    Pass ready objects (``pipeline``, ``rerankers``) in tests and embedding code, or names
    (``index_dir``, ``reranker_specs``: the fallback chain, primary first) for the CLI.

    Args:
        config: Service configuration (default :class:`ServiceConfig`).
        pipeline: A :class:`~rankfunnel.pipeline.Pipeline` for ``/v1/search`` and document updates.
        rerankers: Ready rerankers (the fallback chain, primary first).
        index_dir: Index directory to open when ``pipeline`` is None.
        reranker_specs: :func:`~rankfunnel.rerank.load_reranker` specs to load when ``rerankers`` is None.
        device: Device for loaded models.
        embedder: Embedder for opening ``index_dir`` (default: the one the index was built with).
        backend: ``auto``, ``faiss`` or ``milvus`` (``index_dir`` is then a Milvus URI or Lite file).
        reranker_options: more :func:`~rankfunnel.rerank.load_reranker` options for ``reranker_specs``
            (``offline``, ``route``, ``api_key``).
        traffic: shadow mode and A/B split (:class:`~rankfunnel.service.traffic.TrafficOptions`).

    Examples:
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> app = create_app(ServiceConfig(), rerankers=[FakeReranker()])
        >>> app.title
        'rankfunnel'
    """
    cfg = config or ServiceConfig()
    metrics = ServiceMetrics()
    lifespan = _lifespan(
        cfg, metrics, pipeline=pipeline, rerankers=rerankers, index_dir=index_dir, reranker_specs=reranker_specs,
        device=device, embedder=embedder, backend=backend, reranker_options=reranker_options, traffic=traffic,
    )
    extra: dict[str, Any] = {}
    if (
        "max_body_size" in inspect.signature(FastAPI.__init__).parameters
    ):  # FastAPI >= 0.16x: 413 before parsing
        extra["max_body_size"] = cfg.limits.max_body_bytes
    app = FastAPI(
        title="rankfunnel",
        version=_version(),
        lifespan=lifespan,
        description="Two-stage search and reranking (rankfunnel, Cohere v2, ZeroEntropy and TEI shapes).",
        docs_url=None,  # /docs comes from mount_ui, with bundled assets instead of a CDN
        redoc_url=None,
        **extra,
    )
    app.state.config = cfg
    app.state.traffic = traffic
    app.state.metrics = metrics
    _install_error_handlers(app)

    from rankfunnel.service.routes import router

    app.include_router(router)
    mount_ui(app)
    app.add_middleware(
        _MetricsAndAuth,
        metrics=metrics,
        keys=cfg.api_keys,
        max_inflight=cfg.max_inflight,
        priority=cfg.priority,
        max_body_bytes=cfg.limits.max_body_bytes,
    )
    return app


def _lifespan(
    cfg: ServiceConfig,
    metrics: ServiceMetrics,
    *,
    pipeline: Any,
    rerankers: Sequence[BaseReranker] | None,
    index_dir: str | Path | None,
    reranker_specs: Sequence[str],
    device: str | None,
    embedder: Any,
    backend: str,
    reranker_options: Mapping[str, Any] | None,
    traffic: TrafficOptions | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: load the chain and the index once, start the engine (warm-up), stop it at exit."""

    async def load_engine() -> RerankEngine:
        chain = (
            list(rerankers)
            if rerankers is not None
            else await asyncio.to_thread(
                load_chain,
                list(reranker_specs),
                device=device,
                trust_remote_code=cfg.trust_remote_code,
                reranker_options=reranker_options,
            )
        )
        if rerankers is None and index_dir is not None and backend != "milvus":
            from rankfunnel.rerank.resolve import apply_stored_calibration

            for r in chain:  # the fit `rankfunnel calibrate` stored, as `rankfunnel search` uses it
                apply_stored_calibration(r, index_dir)
        engine = RerankEngine(chain, cfg, pipeline=pipeline, metrics=metrics)
        if pipeline is None and index_dir is not None:
            from rankfunnel.pipeline import Pipeline

            engine.pipeline = await engine.in_collection_thread(
                Pipeline.from_dir,
                index_dir,
                reranker="none",
                embedder=embedder,
                device=device,
                backend=backend,
            )
        return engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await load_engine()
        app.state.engine = engine
        await engine.start(warmup=cfg.warmup)  # /readyz says ready once the warm-up batch has been scored
        if traffic is not None:
            await attach_traffic(
                engine, traffic, metrics, device=device, trust_remote_code=cfg.trust_remote_code,
                reranker_options=reranker_options,
            )
        log.info(
            "rankfunnel service started (warming up): rerankers=%s index=%s",
            [r.name for r in engine.rerankers],
            index_dir if pipeline is None else "given",
        )
        try:
            yield
        finally:
            await detach_traffic(engine)
            await engine.stop()

    return lifespan


async def _on_rankfunnel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RankfunnelError)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own errors (a body it cannot parse, an unknown path or method): same shape as ours
    assert isinstance(exc, StarletteHTTPException)
    kind = {400: "MalformedBody", 404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return JSONResponse({"detail": str(exc.detail), "error": kind}, status_code=exc.status_code, headers=exc.headers)


async def _on_unicode_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnicodeDecodeError)
    return JSONResponse(
        {
            "detail": f"The body is not valid UTF-8 ({exc.reason} at byte {exc.start}); send UTF-8 encoded JSON.",
            "error": "BadEncoding",
        },
        status_code=400,
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {
            "detail": f"Internal error ({type(exc).__name__}); see the server log and report it.",
            "error": "InternalError",
        },
        status_code=500,
    )


def _install_error_handlers(app: FastAPI) -> None:
    """One JSON error shape (``{"detail", "error"}``) for library, validation, HTTP and unexpected errors."""
    app.add_exception_handler(RankfunnelError, _on_rankfunnel_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(UnicodeDecodeError, _on_unicode_error)
    app.add_exception_handler(Exception, _on_unexpected)


def _version() -> str:
    from rankfunnel import __version__

    return __version__
