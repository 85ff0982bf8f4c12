"""Pydantic request/response models: rankfunnel's own shapes plus the Cohere v1/v2, ZeroEntropy and TEI ones.

Requests are strict (a number where a string belongs is a 422, not a silent conversion) and ignore unknown
fields, so clients written for those APIs keep working.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rankfunnel import defaults, validate
from rankfunnel.errors import InvalidInputError


def check_encodable(value: Any, field: str) -> None:
    r"""Raise at the first text in ``value`` that UTF-8 cannot encode (strings, nested lists and dicts, keys too).

    JSON lets a client send lone surrogates (``"\ud800"``); Python decodes them into ``str`` values that fail
    later, when the response is encoded or a tokenizer reads them. The check itself is
    :func:`rankfunnel.validate.check_text` (one copy for the library, the CLI and the service); this only walks
    the request value so that the error names the path (``documents[3].metadata.lang``, ``filter key #0``).

    Raises:
        InvalidInputError: naming the path, the position and the fix.
    """
    if isinstance(value, str):
        validate.check_text(value, field=field, allow_empty=True)
    elif isinstance(value, dict):
        for i, (k, v) in enumerate(value.items()):
            if isinstance(k, str):
                validate.check_text(k, field=f"{field} key #{i}", allow_empty=True)
            check_encodable(v, f"{field}.{str(k)[:40]}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_encodable(v, f"{field}[{i}]")


class _Strict(BaseModel):
    """Strict request model; every string field (nested lists and dicts included) must encode as UTF-8."""

    model_config = ConfigDict(strict=True, extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _encodable(cls, value: Any, info: ValidationInfo) -> Any:
        try:
            check_encodable(value, str(info.field_name))
        except InvalidInputError as exc:  # pydantic reports a ValueError as a 422 at this field
            raise ValueError(str(exc)) from None
        return value


# -- rankfunnel: search and documents --
class SearchRequest(_Strict):
    query: str = Field(description="The search query.")
    top_k: int = Field(defaults.TOP_K, description="Stage-1 candidates to rerank.")
    top_n: int = Field(defaults.TOP_N, description="Hits to return.")
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
    variant: str | None = Field(None, description="The A/B variant that answered (servers started with --variant).")
    priority: str | None = Field(None, description="The priority class applied (X-Priority header).")


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


# -- Cohere v1 and v2 --
class CohereDocument(BaseModel):
    """A document object: ``text`` plus any other fields (kept and echoed back with ``return_documents``)."""

    model_config = ConfigDict(strict=True, extra="allow")
    text: str | None = Field(
        None, description="The text reranked when no rank_fields are given (then it is required)."
    )


class CohereRerankRequest(_Strict):
    """Cohere ``/v1/rerank`` and ``/v2/rerank`` request (one model: each version ignores the other's extras)."""

    model: str | None = Field(None, description="Accepted; the server scores with its own reranker (see meta).")
    query: str
    documents: list[str | CohereDocument] = Field(
        description="Strings, or objects with a text field and any others (echoed back with return_documents)."
    )
    top_n: int | None = Field(None, description="Results to return (default: all).")
    rank_fields: list[str] | None = Field(
        None,
        description="Fields of object documents to rank on, in this order; rendered as YAML lines "
        "'field: value' the way Cohere does (default: the text field).",
    )
    max_tokens_per_doc: int | None = Field(
        None, gt=0, description="Truncate each document to about this many tokens (4 characters a token)."
    )
    max_chunks_per_doc: int | None = Field(
        None, gt=0, description="Cohere v1 field; accepted and ignored (documents are truncated, not chunked)."
    )
    return_documents: bool = Field(False, description="Echo each document (all its fields) in the results.")
    priority: int | None = Field(
        None,
        ge=0,
        description="Cohere v2 field: 0 = most urgent (class high), 1 = normal, 2 or more = low; served most "
        "urgent first, the least urgent refused first under load. meta.priority says which class applied.",
    )
    relevant_spans: dict[str, Any] | None = Field(
        None, description="Cohere v2 field; not supported (no spans are returned; meta.warnings says so)."
    )
    timeout_ms: float | None = Field(None, gt=0, description="rankfunnel extension: rerank deadline.")


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = Field(None, description="With return_documents: the document as sent.")


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: dict[str, Any] = Field(
        description="api_version ({'version': '1'} or '2' by endpoint), billed_units, model, cached_pairs, "
        "warnings."
    )


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
    actual_latency_mode: Literal["fast", "slow"] = Field(
        description='The mode applied: "slow" when the request was served as priority class low (latency '
        '"slow", or X-Priority: low), else "fast".'
    )
    e2e_latency: float = Field(description="Seconds from request parsed to response built.")
    inference_latency: float = Field(description="Seconds spent scoring (batch queue, cache and model).")
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


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error answer: ``detail`` says what is wrong and how to fix it; ``error`` names the kind."""

    detail: str
    error: str
    errors: list[ValidationIssue] | None = Field(None, description="Each invalid field (422 only).")
