"""Errors raised by rankfunnel.

Every error derives from :class:`RankfunnelError`, and every message says how to fix the problem::

    RankfunnelError
    ├── InvalidInputError (also ValueError)       bad arguments or data: empty query, top_k < 1, duplicate ids
    ├── DocumentNotFoundError (also KeyError)     an id that the store does not hold
    ├── IndexMismatchError                        an index directory built with another embedder / dimension
    ├── IndexCorruptError                         files of an index directory cannot be read
    ├── ModelNotFoundError                        a model name that resolves to no local path, package or hub id
    ├── RerankerUnavailableError                  the reranker could not be loaded or failed while scoring
    ├── OptionalDependencyError (also ImportError) an optional extra is not installed
    └── OverloadedError                           a bounded queue is full (the service answers 429)
"""

from __future__ import annotations


class RankfunnelError(Exception):
    """Base class of every error rankfunnel raises on purpose."""


class InvalidInputError(RankfunnelError, ValueError):
    """The caller passed input that cannot be processed; the message names the fix."""


class DocumentNotFoundError(RankfunnelError, KeyError):
    """An id is not in the document store."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "document not found"


class IndexMismatchError(RankfunnelError):
    """An index directory was built with a different embedder or vector dimension."""


class IndexCorruptError(RankfunnelError):
    """Files of an index directory are missing or unreadable."""


class ModelNotFoundError(RankfunnelError):
    """A model name could not be resolved to a local path, an offline package or the hub."""


class RerankerUnavailableError(RankfunnelError):
    """The reranker could not be loaded or failed while scoring."""


class OptionalDependencyError(RankfunnelError, ImportError):
    """An optional dependency is missing; the message gives the install command."""


class OverloadedError(RankfunnelError):
    """A bounded queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
