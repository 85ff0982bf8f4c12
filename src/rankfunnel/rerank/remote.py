"""A reranker that calls an HTTP rerank API: a GPU reranker pool behind a load balancer, or a hosted API.

Three request shapes (``api``):

- ``cohere``: ``POST /v2/rerank`` ``{model, query, documents}`` -> ``{results: [{index, relevance_score}]}``;
  served by Cohere, vLLM (``/v1/rerank``, ``/v2/rerank``), infinity and ``rankfunnel serve``.
- ``tei``: Hugging Face text-embeddings-inference ``POST /rerank`` ``{query, texts, raw_scores, truncate}``
  -> ``[{index, score}]``.
- ``zeroentropy``: ``POST https://api.zeroentropy.dev/v1/models/rerank`` ``{model, query, documents}`` ->
  ``{results: [{index, relevance_score}]}``, with a bearer API key (the CLI reads ``ZEROENTROPY_API_KEY``;
  the library never reads the environment).

Scores: the three APIs return 0-1 relevance by default. :meth:`RemoteReranker.predict` returns their
logit, ``log(p / (1 - p))``, so that the default identity :class:`Calibration` gives the server's 0-1 score
back unchanged and ``rankfunnel calibrate`` can still fit a temperature. With ``raw_scores=True`` (TEI only)
the server's raw logits come back as they are; pass the model's calibration (``temperature=5`` for zerank).

Robustness: one pooled :class:`httpx.Client` (keep-alive connections, shared by worker threads); retries
with exponential backoff and jitter on 429/5xx and connection errors, honouring ``Retry-After``; every
attempt's timeout fits inside the caller's deadline; document lists are split to the server's limit
(and a 413, or TEI's "maximum allowed batch size", lowers the limit and retries). Every failure becomes a
:class:`~rankfunnel.errors.RerankerUnavailableError` with a plain message, which the pipeline turns into
stage-1 results with ``reranked=False``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rankfunnel._optional import require
from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank.base import BaseReranker, Calibration

log = logging.getLogger(__name__)

APIS = ("cohere", "tei", "zeroentropy")
ZEROENTROPY_URL = "https://api.zeroentropy.dev/v1/models/rerank"
_PATHS = {"cohere": "/v2/rerank", "tei": "/rerank", "zeroentropy": "/v1/models/rerank"}
# Documents per request unless told otherwise: Cohere documents 1,000; TEI's default max_client_batch_size is
# 32; rankfunnel serve's max_documents is 1,000. A 413 (or TEI's batch-size error) lowers it at run time.
_DEFAULT_MAX_DOCS = {"cohere": 1000, "tei": 32, "zeroentropy": 1000}
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_LIMIT_PATTERNS = (re.compile(r"maximum allowed batch size (\d+)"), re.compile(r"max_documents is (\d+)"),
                   re.compile(r"(?:at most|maximum of|limit of|up to) (\d+) documents"))
_EPS = 1e-7


def resolve_endpoint(url: str, api: str = "auto") -> tuple[str, str]:
    """``(api, full endpoint URL)`` from a base URL or an endpoint URL.

    Examples:
        >>> resolve_endpoint("http://gpu-pool:8000")
        ('cohere', 'http://gpu-pool:8000/v2/rerank')
        >>> resolve_endpoint("http://tei:8080", "tei")
        ('tei', 'http://tei:8080/rerank')
        >>> resolve_endpoint("https://api.zeroentropy.dev")
        ('zeroentropy', 'https://api.zeroentropy.dev/v1/models/rerank')
    """
    if api not in ("auto", *APIS):
        raise InvalidInputError(f"api must be 'auto' or one of {APIS}, got {api!r}.")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInputError(f"Remote reranker URL {url!r} is not an http(s) URL; e.g. http://host:8000/v2/rerank.")
    path = parsed.path.rstrip("/")
    if api == "auto":
        if path.endswith("/models/rerank") or parsed.hostname == "api.zeroentropy.dev":
            api = "zeroentropy"
        elif path.endswith(("/v1/rerank", "/v2/rerank")) or not path:
            api = "cohere"
        elif path.endswith("/rerank"):
            api = "tei"  # vLLM's bare /rerank also exists: point at its /v2/rerank (Cohere shape) instead
        else:
            raise InvalidInputError(
                f"Cannot tell the rerank API of {url!r}: pass api='cohere', 'tei' or 'zeroentropy', or a URL "
                "ending in /v2/rerank, /rerank or /v1/models/rerank.")
    if not path.endswith("rerank"):
        path = path + _PATHS[api]
    return api, parsed._replace(path=path).geturl()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or "").strip()[:300]
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


class RemoteReranker(BaseReranker):
    """Scores (query, document) pairs with a remote rerank API.

    Args:
        url: a base URL (``http://gpu-pool:8000``) or an endpoint URL (``.../v2/rerank``, ``.../rerank``,
            ``.../v1/models/rerank``).
        api: ``auto`` (from the URL), ``cohere``, ``tei`` or ``zeroentropy``.
        model: the model field sent to Cohere-shaped and ZeroEntropy APIs (ZeroEntropy default ``zerank-2``).
        api_key: sent as ``Authorization: Bearer`` (the CLI's ``--reranker-api-key``,
            ``RANKFUNNEL_RERANKER_API_KEY``, or ``ZEROENTROPY_API_KEY`` for the ZeroEntropy API).
        timeout: seconds per HTTP attempt (capped by the deadline).
        total_timeout: default deadline in seconds for one :meth:`predict` call (None: no overall deadline).
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors.
        backoff, max_backoff: exponential backoff base and cap in seconds (with jitter), unless the server
            sends ``Retry-After``.
        max_documents: documents per request (default: 1000; 32 for TEI); learned downwards from 413s.
        concurrency: requests in flight at once for one ``predict`` (queries and chunks run in parallel).
        max_connections: size of the keep-alive connection pool.
        raw_scores: TEI only: ask for raw logits instead of 0-1 scores.
        truncate: TEI only: let the server truncate long inputs (default False: a too-long input is an error,
            never a silent cut).
        max_tokens_per_doc: Cohere only: the server-side truncation length, when you accept truncation.
        calibration: maps raw scores to 0-1 (default identity on the logit of a 0-1 server score).
        headers: extra HTTP headers.
        transport: an httpx transport (tests use :class:`httpx.MockTransport`).

    Examples:
        >>> rr = RemoteReranker("http://localhost:8000", total_timeout=2.0)  # doctest: +SKIP
        >>> rr.rank("capital of France", ["Paris is the capital.", "Berlin"], top_n=1)  # doctest: +SKIP
        [(0, 2.1, 0.89)]
    """

    def __init__(self, url: str, *, api: str = "auto", model: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, total_timeout: float | None = None, max_retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 10.0, max_documents: int | None = None,
                 concurrency: int = 4, max_connections: int = 16, raw_scores: bool = False,
                 truncate: bool = False, max_tokens_per_doc: int | None = None,
                 calibration: Calibration | None = None, headers: Mapping[str, str] | None = None,
                 transport: Any = None) -> None:
        httpx = require("httpx", "server")
        self.api, self.url = resolve_endpoint(url, api)
        if self.api == "zeroentropy" and not api_key:
            raise RerankerUnavailableError(
                "The ZeroEntropy API needs an API key: pass --reranker-api-key KEY (or set "
                "RANKFUNNEL_RERANKER_API_KEY or ZEROENTROPY_API_KEY) on the command line, or api_key=... "
                "in Python.")
        for label, value in (("timeout", timeout), ("concurrency", concurrency),
                             ("max_connections", max_connections)):
            if not value > 0:
                raise InvalidInputError(f"{label} must be > 0, got {value}.")
        if max_retries < 0 or backoff < 0 or (max_documents is not None and max_documents < 1):
            raise InvalidInputError("max_retries and backoff must be >= 0, max_documents >= 1.")
        if raw_scores and self.api != "tei":
            raise InvalidInputError(
                "raw_scores=True is a TEI option; Cohere-shaped and ZeroEntropy APIs return 0-1 scores.")
        self.model = model or ("zerank-2" if self.api == "zeroentropy" else None)
        self.name = f"remote:{self.model or self.url}"
        self.timeout, self.total_timeout = float(timeout), total_timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.max_documents = max_documents or _DEFAULT_MAX_DOCS[self.api]
        self.concurrency = concurrency
        self.raw_scores, self.truncate, self.max_tokens_per_doc = raw_scores, truncate, max_tokens_per_doc
        if calibration is not None:
            self.calibration = calibration
        hdrs = {"User-Agent": "rankfunnel", **dict(headers or {})}
        if api_key:
            hdrs["Authorization"] = f"Bearer {api_key}"
        self._httpx = httpx
        self._client = httpx.Client(headers=hdrs, transport=transport, timeout=self.timeout,
                                    limits=httpx.Limits(max_connections=max_connections,
                                                        max_keepalive_connections=max_connections))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteReranker({self.url!r}, api={self.api!r}, model={self.model!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteReranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring ----------------------------------------------------------------------------------------
    def predict(self, pairs: Sequence[tuple[str, str]], *, timeout: float | None = None) -> np.ndarray:
        """Raw scores for ``pairs`` (grouped by query, one request per query and chunk).

        Args:
            pairs: (query, document) pairs, possibly of several queries.
            timeout: the caller's remaining budget in seconds for this call (default ``total_timeout``);
                each HTTP attempt and backoff fits inside it.

        Raises:
            RerankerUnavailableError: the server failed, refused, or the deadline passed.
        """
        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        budget = timeout if timeout is not None else self.total_timeout
        deadline = time.monotonic() + budget if budget is not None else None
        groups: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(pairs):
            groups.setdefault(q, []).append(i)
        jobs = [(q, idx[s:s + self.max_documents]) for q, idx in groups.items()
                for s in range(0, len(idx), self.max_documents)]

        def run(job: tuple[str, list[int]]) -> None:
            q, idx = job
            out[idx] = self._score_chunk(q, [pairs[i][1] for i in idx], deadline)

        if len(jobs) == 1 or self.concurrency == 1:
            for job in jobs:
                run(job)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
                for f in [pool.submit(run, j) for j in jobs]:
                    f.result()  # re-raises the first failure
        return out

    def _score_chunk(self, query: str, docs: list[str], deadline: float | None) -> np.ndarray:
        if len(docs) > self.max_documents:  # the limit was lowered by another thread meanwhile
            return np.concatenate([self._score_chunk(query, docs[s:s + self.max_documents], deadline)
                                   for s in range(0, len(docs), self.max_documents)])
        attempt = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise RerankerUnavailableError(
                    f"Remote reranker {self.url} did not answer within the deadline ({attempt} attempts). "
                    "Raise the timeout or add reranker capacity.")
            per_try = self.timeout if remaining is None else min(self.timeout, remaining)
            try:
                resp = self._client.post(self.url, json=self._body(query, docs), timeout=per_try)
            except self._httpx.TimeoutException:
                problem, wait = f"timed out after {per_try:.1f}s", None
            except self._httpx.TransportError as exc:
                problem, wait = f"could not be reached ({type(exc).__name__}: {exc})", None
            else:
                if resp.status_code == 200:
                    return self._parse(resp, len(docs))
                if resp.status_code == 413 or (resp.status_code == 422 and "batch size" in resp.text):
                    return self._split_after_limit(query, docs, resp, deadline)
                if resp.status_code not in _RETRY_STATUS:
                    raise RerankerUnavailableError(self._refusal(resp))
                problem, wait = f"answered {resp.status_code} ({_detail(resp)})", _retry_after(
                    resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise RerankerUnavailableError(f"Remote reranker {self.url} {problem}; gave up after "
                                               f"{attempt + 1} attempts. Check the server or add capacity.")
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(0.5, 1.5)
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise RerankerUnavailableError(f"Remote reranker {self.url} {problem}; the next retry (in "
                                               f"{wait:.1f}s) would pass the deadline.")
            log.info("remote reranker %s %s; retry %d in %.2fs", self.url, problem, attempt + 1, wait)
            time.sleep(wait)
            attempt += 1

    def _split_after_limit(self, query: str, docs: list[str], resp: Any, deadline: float | None
                           ) -> np.ndarray:
        detail = _detail(resp)
        limit = next((int(m.group(1)) for p in _LIMIT_PATTERNS if (m := p.search(detail))), len(docs) // 2)
        if len(docs) <= 1 or limit < 1 or limit >= len(docs):
            raise RerankerUnavailableError(
                f"Remote reranker {self.url} refused the request as too large "
                f"({resp.status_code}: {detail}). "
                "Shorten or chunk long documents.")
        with self._lock:
            self.max_documents = min(self.max_documents, limit)
        log.info("remote reranker %s limits requests to %d documents; splitting", self.url, limit)
        return np.concatenate([self._score_chunk(query, docs[s:s + limit], deadline)
                               for s in range(0, len(docs), limit)])

    def _refusal(self, resp: Any) -> str:
        code, detail = resp.status_code, _detail(resp)
        hint = {401: "Check the API key (ZEROENTROPY_API_KEY for ZeroEntropy, --api-key otherwise).",
                403: "Check the API key and its permissions.",
                404: "Check the URL path: /v2/rerank (Cohere shape: vLLM, infinity, rankfunnel serve), "
                     "/rerank (TEI) or /v1/models/rerank (ZeroEntropy), or pass api=...",
                }.get(code, "Check the request limits of the server (document count and length).")
        return f"Remote reranker {self.url} refused the request ({code}: {detail}). {hint}"

    def _body(self, query: str, docs: list[str]) -> dict[str, Any]:
        if self.api == "tei":
            return {"query": query, "texts": docs, "raw_scores": self.raw_scores, "truncate": self.truncate,
                    "return_text": False}
        body: dict[str, Any] = {"query": query, "documents": docs}
        if self.model:
            body["model"] = self.model
        if self.api == "cohere" and self.max_tokens_per_doc:
            body["max_tokens_per_doc"] = self.max_tokens_per_doc
        return body

    def _parse(self, resp: Any, n: int) -> np.ndarray:
        try:
            data = resp.json()
            rows = data if self.api == "tei" else data["results"]
            key = "score" if self.api == "tei" else "relevance_score"
            scores = np.full(n, np.nan, dtype=np.float64)
            for row in rows:
                scores[int(row["index"])] = float(row[key])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise RerankerUnavailableError(
                f"Remote reranker {self.url} sent a response that is not the {self.api} rerank shape "
                f"({type(exc).__name__}: {exc}). Check api=...") from exc
        if np.isnan(scores).any():
            missing = np.flatnonzero(np.isnan(scores))[:5].tolist()
            raise RerankerUnavailableError(
                f"Remote reranker {self.url} returned no score for documents {missing}; it may apply "
                "top_n or drop documents. Check the server settings.")
        if self.raw_scores:
            return scores.astype(np.float32)
        p = np.clip(scores, _EPS, 1 - _EPS)
        return np.log(p / (1 - p)).astype(np.float32)
