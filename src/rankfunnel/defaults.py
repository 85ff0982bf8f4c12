"""One set of defaults shared by :class:`~rankfunnel.pipeline.Pipeline`, every CLI command and the service.

Base layer (imports nothing from the package), so every layer may read it. Change a default here and the
library, ``rankfunnel search``, ``rankfunnel eval``, ``rankfunnel bench`` and ``rankfunnel serve`` all
follow; a plain ``rankfunnel eval DIR`` therefore measures exactly what ``rankfunnel search`` returns.
"""

from __future__ import annotations

#: Stage-1 retriever: ``dense``, ``bm25`` or ``hybrid`` (reciprocal rank fusion of the two).
RETRIEVER = "hybrid"
#: Stage-1 candidates handed to the reranker.
TOP_K = 100
#: Hits returned.
TOP_N = 10
#: Reranker spec: ``auto`` resolves to a model for the device (see ``rankfunnel.pipeline``).
RERANKER = "auto"
#: Per-search rerank switch: ``True`` (always), ``False`` (stage 1 only) or ``"auto"`` (skip when confident).
RERANK: bool | str = True
#: ``rerank="auto"``: skip stage 2 when stage-1 top-1 leads top-2 by at least this much (stage-1 units).
AUTO_MARGIN = 0.1
#: On a reranker failure or timeout answer stage-1 order with a reason (``False``: raise / answer 503).
FAIL_OPEN = True
#: Circuit breaker: consecutive failures that open it, and seconds before a half-open probe.
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 30.0
#: Score cache: in-memory entries and seconds an entry stays valid.
CACHE_SIZE = 100_000
CACHE_TTL_S = 3_600.0
