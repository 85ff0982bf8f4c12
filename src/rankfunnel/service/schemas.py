"""Pydantic request/response models: rankfunnel's own shapes plus the Cohere v2, ZeroEntropy and TEI ones.

Requests are strict (a number where a string belongs is a 422, not a silent conversion) and ignore unknown
fields, so clients written for those APIs keep working.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# -- rankfunnel: search and documents --
class SearchRequest(_Strict):
    query: str = Field(description="The search query.")
    top_k: int = Field(100, description="Stage-1 candidates to rerank.")
    top_n: int = Field(10, description="Hits to return.")
    retriever: Literal["dense", "bm25", "hybrid"] | None = Field(None, description="Default: the server's.")
    filter: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"lang": "en"}.')
    rerank: bool | Literal["auto"] = Field(
        True, description='true, false, or "auto" (skip stage 2 when stage 1 is already confident).'
    )
    mode: Literal["blocking", "two-phase"] = Field(
        "blocking", description='"two-phase" streams Server-Sent Events: stage1, then reranked.'
    )
    timeout_ms: float | None = Field(None, gt=0, description="Rerank deadline; capped by the server's.")
    return_text: bool = Field(False, description="Include title, text and metadata of each hit.")


class HitOut(BaseModel):
    id: str
    rank: int
    stage1_rank: int
    stage1_score: float
    rerank_score: float | None
    score: float
    title: str | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    query: str
    retriever: str
    reranker: str | None
    reranked: bool
    reason: str | None
    hits: list[HitOut]
    timings_ms: dict[str, float]


class DocumentIn(_Strict):
    id: str = Field(min_length=1)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsRequest(_Strict):
    documents: list[DocumentIn]
    upsert: bool = Field(False, description="Replace documents whose id exists instead of failing.")


class DocumentsResponse(BaseModel):
    added: int
    total: int


class DeleteResponse(BaseModel):
    deleted: str
    total: int


# -- Cohere v2 --
class CohereDocument(_Strict):
    text: str


class CohereRerankRequest(_Strict):
    model: str | None = None
    query: str
    documents: list[str | CohereDocument]
    top_n: int | None = None
    max_tokens_per_doc: int | None = Field(None, gt=0)
    return_documents: bool = False
    timeout_ms: float | None = Field(None, gt=0)


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: CohereDocument | None = None


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: dict[str, Any]


# -- ZeroEntropy --
class ZeroEntropyRerankRequest(_Strict):
    model: str | None = None
    query: str
    documents: list[str]
    top_n: int | None = None
    latency: Literal["fast", "slow"] | None = None


class ZeroEntropyResult(BaseModel):
    index: int
    relevance_score: float


class ZeroEntropyRerankResponse(BaseModel):
    results: list[ZeroEntropyResult]
    e2e_latency: float
    inference_latency: float
    total_bytes: int
    total_tokens: int


# -- Hugging Face TEI --
class TEIRerankRequest(_Strict):
    query: str
    texts: list[str]
    truncate: bool = False
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    raw_scores: bool = False
    return_text: bool = False


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class ErrorResponse(BaseModel):
    detail: str
    error: str
