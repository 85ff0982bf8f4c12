"""rankfunnel: fast, high-precision two-stage search.

Examples:
    >>> from rankfunnel import Document, Pipeline  # doctest: +SKIP
"""

from rankfunnel.errors import RankfunnelError
from rankfunnel.rerank.base import BaseReranker, Calibration
from rankfunnel.types import Document, Hit, SearchResult

__version__ = "0.1.0"

__all__ = [
    "BaseReranker",
    "Calibration",
    "Document",
    "Hit",
    "RankfunnelError",
    "SearchResult",
    "__version__",
]
