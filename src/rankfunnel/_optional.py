"""Lazy import of optional dependencies, always raising with the install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from rankfunnel.errors import OptionalDependencyError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`OptionalDependencyError` naming the extra to install.

    Examples:
        >>> np = require("numpy", "core")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised with a missing module in tests
        pkg = package or module.split(".")[0]
        raise OptionalDependencyError(
            f"{module!r} is needed for this feature but is not installed ({exc}). "
            f"Install it with: pip install 'rankfunnel[{extra}]'  (or: pip install {pkg})"
        ) from exc
