"""HTTP routes: small translations between wire shapes and :class:`~rankfunnel.service.engine.RerankEngine`.

The direct rerank endpoints (Cohere, ZeroEntropy, TEI) have no field to say "not reranked", so when every
reranker of the chain fails they answer 503 + Retry-After (the caller keeps its own order); ``/v1/search``
fails open (stage-1 order, ``reranked: false``, a reason) unless the server is configured to fail closed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from rankfunnel._optional import require
from rankfunnel.errors import InvalidInputError, RankfunnelError, RerankerUnavailableError
from rankfunnel.service.batcher import CHARS_PER_TOKEN, estimate_tokens
from rankfunnel.service.engine import RerankEngine, Scored
from rankfunnel.service.limits import (
    check_chars,
    check_documents,
    check_json_size,
    check_new_documents,
    check_query,
    check_top,
)
from rankfunnel.service.priority import HEADER as PRIORITY_HEADER
from rankfunnel.service.priority import request_class
from rankfunnel.service.schemas import (
    CohereDocument,
    CohereRerankRequest,
    CohereRerankResponse,
    DeleteResponse,
    DocumentsRequest,
    DocumentsResponse,
    ErrorResponse,
    SearchRequest,
    SearchResponse,
    TEIRank,
    TEIRerankRequest,
    ZeroEntropyRerankRequest,
    ZeroEntropyRerankResponse,
    ZeroEntropyResult,
)
from rankfunnel.service.traffic import VARIANT_HEADER, pick_variant
from rankfunnel.types import Document

#: Error answers every route may give (all with an :class:`ErrorResponse` body), documented in the OpenAPI
#: schema so that clients and schema-driven tests know them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Malformed JSON or a body that is not UTF-8."),
        (401, "Missing or wrong API key."),
        (404, "No such document."),
        (413, "A field, a document or the body is larger than a configured limit (the message names it)."),
        (422, "An invalid field (the message names it), e.g. text that UTF-8 cannot encode."),
        (429, "Overloaded: retry after the Retry-After header's seconds."),
        (501, "This server was started without what the endpoint needs (an index or a reranker)."),
        (503, "Starting, or reranking failed and the server is configured to fail closed."),
    )
}
router = APIRouter(responses=ERROR_RESPONSES)


def engine_of(request: Request) -> RerankEngine:
    engine: RerankEngine | None = getattr(request.app.state, "engine", None)
    if engine is None or not engine.ready:
        raise RerankerUnavailableError(
            "The service is still starting (models loading); retry in a few seconds."
        )
    return engine


# -- health --
@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _priority_class(request: Request, *, cohere_priority: int | None = None, latency: str | None = None) -> str:
    """The request's priority class (body field, else ``X-Priority``), recorded for the per-class metrics."""
    cls = request_class(cohere_priority=cohere_priority, latency=latency, header=request.headers.get(PRIORITY_HEADER))
    request.state.priority = cls  # read by the metrics middleware (service/app.py)
    return cls


@router.get("/readyz", tags=["ops"])
async def readyz(request: Request) -> JSONResponse:
    """Readiness: models loaded, workers running and one warm-up batch scored by every model (503 otherwise)."""
    engine: RerankEngine | None = getattr(request.app.state, "engine", None)
    if engine is None or not engine.ready:
        return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})
    if not engine.warm:
        body = {"status": "warming up", "reason": engine.warmup_error or "scoring the warm-up batch"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    cold = {n: sub.warmup_error or "scoring the warm-up batch" for n, sub in engine.variant_engines.items()
            if not sub.warm}  # an A/B variant takes traffic too: it must be warm before the service is ready
    if cold:
        why = f"A/B variant(s) {sorted(cold)} not warm yet"
        return JSONResponse(
            {"status": "warming up", "reason": why, "variants": cold}, status_code=503, headers={"Retry-After": "1"}
        )
    return JSONResponse(
        {
            "status": "ready",
            "rerankers": [str(r.name) for r in engine.rerankers],
            "variants": {n: [str(r.name) for r in sub.rerankers] for n, sub in engine.variant_engines.items()},
            "index": engine.pipeline is not None,
            "queue_pairs": sum(b.queue_pairs for b in engine.batchers),
            "circuit_breakers": engine.breaker_states(),
        }
    )


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    m = request.app.state.metrics
    engine: RerankEngine | None = getattr(request.app.state, "engine", None)
    if engine is not None:
        for b in engine.batchers:
            m.queue_pairs.labels(model=b.name).set(b.queue_pairs)
            m.promoted.labels(model=b.name).set(b.promoted)
        m.breakers(engine.breaker_states())
    body, ctype = m.render()
    return Response(body, media_type=ctype)


# -- search --
def _sse(event: str, data: dict[str, Any]) -> bytes:
    # ASCII escapes: any stored text (even a lone surrogate) becomes valid JSON instead of a reset stream
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    tags=["search"],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def search(req: SearchRequest, request: Request) -> Any:
    """Two-stage search. ``mode: "two-phase"`` streams SSE events ``stage1`` then ``reranked``."""
    engine = engine_of(request)
    deadline = engine.deadline(req.timeout_ms)  # covers stage 1 and stage 2
    check_query(req.query, engine.config.limits)
    check_top(req.top_k, req.top_n, engine.config.limits)
    check_json_size(req.filter, engine.config.limits, field="filter")
    cls = _priority_class(request)
    s1 = await engine.stage1(
        req.query, top_k=req.top_k, top_n=req.top_n, retriever=req.retriever, filter=req.filter
    )
    variant = pick_variant(engine, request, req.query)
    vheaders = {VARIANT_HEADER: variant} if variant else {}
    if req.mode == "blocking":
        res = await engine.stage2_variant(
            s1, variant=variant, rerank=req.rerank, deadline=deadline, priority=cls
        )
        body = {**_with_variant(res.to_dict(with_text=req.return_text), variant), "priority": cls}
        return JSONResponse(body, headers=vheaders)

    async def events() -> AsyncIterator[bytes]:
        first = engine.stage1_result(s1, "two-phase: stage-1 results; the reranked list follows")
        yield _sse("stage1", {**first.to_dict(with_text=req.return_text), "priority": cls})
        try:
            final = await engine.stage2_variant(
                s1, variant=variant, rerank=req.rerank, deadline=deadline, priority=cls
            )
        except RankfunnelError as exc:
            yield _sse("error", {"detail": str(exc), "error": type(exc).__name__})
            return
        yield _sse("reranked", {**_with_variant(final.to_dict(with_text=req.return_text), variant), "priority": cls})

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **vheaders},
    )


def _with_variant(body: dict[str, Any], variant: str | None) -> dict[str, Any]:
    if variant is not None:
        body["variant"] = variant
    return body


# -- documents --
@router.post("/v1/documents", response_model=DocumentsResponse, tags=["documents"])
async def add_documents(req: DocumentsRequest, request: Request) -> DocumentsResponse:
    """Add a batch of documents (``upsert: true`` replaces existing ids)."""
    engine = engine_of(request)
    check_new_documents(req.documents, engine.config.limits)
    pipe = _pipeline(engine)
    docs = [Document(id=d.id, text=d.text, title=d.title, metadata=d.metadata) for d in req.documents]
    added = await engine.in_collection_thread(
        pipe.collection.add, docs, upsert=req.upsert, show_progress=False
    )
    total = await engine.in_collection_thread(len, pipe.collection)
    return DocumentsResponse(added=int(added), total=int(total))


@router.delete("/v1/documents/{doc_id}", response_model=DeleteResponse, tags=["documents"])
async def delete_document(doc_id: str, request: Request) -> DeleteResponse:
    """Delete one document by id (404 when absent)."""
    from rankfunnel.errors import DocumentNotFoundError

    engine = engine_of(request)
    pipe = _pipeline(engine)
    n = await engine.in_collection_thread(pipe.collection.delete, [doc_id])
    if not n:
        raise DocumentNotFoundError(f"No document with id {doc_id!r}; list ids with `rankfunnel info`.")
    total = await engine.in_collection_thread(len, pipe.collection)
    return DeleteResponse(deleted=doc_id, total=int(total))


def _pipeline(engine: RerankEngine) -> Any:
    if engine.pipeline is None:
        from rankfunnel.service.engine import NotConfiguredError

        raise NotConfiguredError(
            "This server has no index; start it with --index-dir DIR to manage documents."
        )
    return engine.pipeline


# -- direct rerank (Cohere v1 and v2, ZeroEntropy, TEI) --
def _check_model(engine: RerankEngine, model: str | None) -> None:
    if model is not None:
        lim = engine.config.limits
        check_chars(model, lim.max_id_chars, field="model", limit_name="max_id_chars", flag="--max-id-chars")


async def _rerank(
    engine: RerankEngine, query: str, docs: Sequence[str], top_n: int | None, timeout_ms: float | None = None,
    *, request: Request, response: Response, route: str, priority: str = "normal",
) -> tuple[Scored, np.ndarray]:
    """Score through the request's A/B variant (named in the response's header) and offer it to the shadow."""
    check_query(query, engine.config.limits)
    check_documents(docs, engine.config.limits)
    if top_n is not None:
        check_top(1, top_n, engine.config.limits)
    variant = pick_variant(engine, request, query)
    if variant is not None:
        response.headers[VARIANT_HEADER] = variant
    scored = await engine.score_variant(
        query, docs, variant=variant, route=route, timeout_ms=timeout_ms, priority=priority
    )
    if scored.raw is None:
        raise RerankerUnavailableError(f"{scored.reason}. Retry later; keep your own order meanwhile.")
    order = np.argsort(-scored.raw, kind="stable")
    return scored, order[:top_n] if top_n is not None else order


def _truncate(text: str, max_chars: int, left: bool = False) -> str:
    return text if len(text) <= max_chars else (text[-max_chars:] if left else text[:max_chars])


def _cohere_document(doc: CohereDocument) -> dict[str, Any]:
    """The fields of an object document as the caller sent them (``text`` only when it was given)."""
    fields = doc.model_dump()
    if "text" not in doc.model_fields_set:
        fields.pop("text", None)
    return fields


def _cohere_text(doc: str | CohereDocument, pos: int, rank_fields: Sequence[str] | None) -> str:
    """The text Cohere reranks: a string as is; an object's ``text``, or its ``rank_fields`` as YAML lines.

    Cohere documents that structured documents are best sent as YAML, and LangChain's ``CohereRerank`` renders
    ``rank_fields`` with ``yaml.dump(..., sort_keys=False)``; PyYAML is used here too (``title: ...`` lines in
    ``rank_fields`` order), with unicode kept and no line folding.
    """
    if isinstance(doc, str):
        return doc
    fields = _cohere_document(doc)
    if not rank_fields:
        if not isinstance(fields.get("text"), str):
            raise InvalidInputError(
                f"documents[{pos}] is an object without a string 'text' field; add one or pass rank_fields."
            )
        return str(fields["text"])
    chosen = {f: fields[f] for f in rank_fields if f in fields}
    if not chosen:
        raise InvalidInputError(
            f"documents[{pos}] has none of the rank_fields {list(rank_fields)}; "
            f"its fields are {sorted(fields)}."
        )
    yaml = require("yaml", "server", package="pyyaml")
    return str(yaml.safe_dump(chosen, sort_keys=False, allow_unicode=True, width=1 << 30)).rstrip("\n")


async def _rerank_cohere(req: CohereRerankRequest, request: Request, version: str) -> JSONResponse:
    engine = engine_of(request)
    _check_model(engine, req.model)
    for i, d in enumerate(req.documents):  # an object's other fields are echoed back: bound them like metadata
        if isinstance(d, CohereDocument):
            extra = {k: v for k, v in _cohere_document(d).items() if k != "text"}
            check_json_size(extra, engine.config.limits, field=f"documents[{i}] (its fields other than text)")
    texts = [_cohere_text(d, i, req.rank_fields) for i, d in enumerate(req.documents)]
    cls = _priority_class(request, cohere_priority=req.priority)
    warnings: list[str] = []
    if req.max_tokens_per_doc is not None:
        cap = req.max_tokens_per_doc * CHARS_PER_TOKEN
        cut = [i for i, t in enumerate(texts) if len(t) > cap]
        if cut:
            texts = [_truncate(t, cap) for t in texts]
            warnings.append(
                f"documents {cut[:20]} were truncated to about {req.max_tokens_per_doc} tokens "
                f"({cap} characters)"
            )
    if req.max_chunks_per_doc is not None:
        warnings.append("max_chunks_per_doc is ignored: long documents are truncated, not chunked")
    if req.relevant_spans and req.relevant_spans.get("mode") == "enabled":
        warnings.append("relevant_spans is not supported here; no spans are returned")
    headers = Response()
    scored, order = await _rerank(
        engine, req.query, texts, req.top_n, req.timeout_ms, request=request, response=headers, route="cohere",
        priority=cls,
    )
    assert scored.normalised is not None
    results: list[dict[str, Any]] = []
    for i in order:
        row: dict[str, Any] = {"index": int(i), "relevance_score": float(scored.normalised[i])}
        if req.return_documents:
            doc = req.documents[i]
            row["document"] = {"text": doc} if isinstance(doc, str) else _cohere_document(doc)
        results.append(row)
    meta: dict[str, Any] = {
        "api_version": {"version": version},
        "billed_units": {"search_units": 1},
        "model": scored.model,
        "cached_pairs": scored.cached,
        "priority": {"class": cls, "requested": req.priority},
    }
    if req.model and req.model != scored.model:
        warnings.append(f"model {req.model!r} is not served here; scored with {scored.model!r}")
    if scored.reason:
        warnings.append(scored.reason)
    if warnings:
        meta["warnings"] = warnings
    # A JSONResponse (not the response model) so that the echoed documents keep every field, nulls included.
    return JSONResponse(
        {"id": str(uuid.uuid4()), "results": results, "meta": meta},
        headers={k: v for k, v in headers.headers.items() if k.lower() == VARIANT_HEADER.lower()},
    )


@router.post("/v2/rerank", response_model=CohereRerankResponse, tags=["rerank"])
async def rerank_cohere_v2(req: CohereRerankRequest, request: Request) -> JSONResponse:
    """Cohere v2 rerank shape (``cohere.ClientV2``); ``priority`` 0 is served first (``meta.priority``)."""
    return await _rerank_cohere(req, request, "2")


@router.post("/v1/rerank", response_model=CohereRerankResponse, tags=["rerank"])
async def rerank_cohere_v1(req: CohereRerankRequest, request: Request) -> JSONResponse:
    """Cohere v1 rerank shape (``cohere.Client``): object documents, ``rank_fields``, ``return_documents``."""
    return await _rerank_cohere(req, request, "1")


@router.post("/v1/models/rerank", response_model=ZeroEntropyRerankResponse, tags=["rerank"])
async def rerank_zeroentropy(
    req: ZeroEntropyRerankRequest, request: Request, response: Response
) -> ZeroEntropyRerankResponse:
    """ZeroEntropy rerank shape (scores 0-1; token counts are estimates)."""
    t0 = time.perf_counter()
    engine = engine_of(request)
    _check_model(engine, req.model)
    cls = _priority_class(request, latency=req.latency)
    t_score = time.perf_counter()
    scored, order = await _rerank(
        engine, req.query, req.documents, req.top_n, request=request, response=response, route="zeroentropy",
        priority=cls,
    )
    assert scored.normalised is not None
    t_end = time.perf_counter()
    return ZeroEntropyRerankResponse(
        results=[ZeroEntropyResult(index=int(i), relevance_score=float(scored.normalised[i])) for i in order],
        actual_latency_mode="slow" if cls == "low" else "fast",
        e2e_latency=t_end - t0,
        inference_latency=t_end - t_score,
        total_bytes=sum(len(d.encode("utf-8", "surrogatepass")) for d in req.documents) + len(req.query),
        total_tokens=estimate_tokens([(req.query, d) for d in req.documents]),
    )


@router.post("/rerank", response_model=list[TEIRank], tags=["rerank"], response_model_exclude_none=True)
async def rerank_tei(req: TEIRerankRequest, request: Request, response: Response) -> list[TEIRank]:
    """Hugging Face TEI rerank shape: a bare array sorted by score (``raw_scores`` gives raw logits)."""
    engine = engine_of(request)
    texts = req.texts
    if req.truncate:
        cap = engine.config.limits.max_doc_chars
        texts = [_truncate(t, cap, left=req.truncation_direction.lower() == "left") for t in texts]
    cls = _priority_class(request)
    scored, order = await _rerank(
        engine, req.query, texts, None, request=request, response=response, route="tei", priority=cls
    )
    values = scored.raw if req.raw_scores else scored.normalised
    assert values is not None
    return [
        TEIRank(index=int(i), score=float(values[i]), text=texts[i] if req.return_text else None)
        for i in order
    ]
