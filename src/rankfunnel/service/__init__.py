"""The HTTP service: FastAPI app (``app``/``routes``) over a FastAPI-free core.

The core (``config``, ``batcher``, ``cache``, ``engine``, ``limits``, ``metrics``) imports no FastAPI, so the
CLI and the benchmarks share it; :func:`create_app` is imported lazily.

Examples:
    >>> from rankfunnel.service import ServiceConfig
    >>> ServiceConfig().max_wait_ms
    3.0
"""

from __future__ import annotations

from typing import Any

from rankfunnel.service.config import Limits, ServiceConfig

__all__ = ["Limits", "ServiceConfig", "create_app"]


def __getattr__(name: str) -> Any:  # lazy: FastAPI is an optional extra
    if name == "create_app":
        from rankfunnel.service.app import create_app

        return create_app
    raise AttributeError(name)
