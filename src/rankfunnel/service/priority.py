"""Priority classes: which requests the service serves first, and what each class gets under load.

A request's class comes from, in order: Cohere's ``priority`` field (an integer, 0 = most urgent, as
Cohere's own convention: 0 -> ``high``, 1 -> ``normal``, 2 and more -> ``low``), ZeroEntropy's ``latency``
(``"fast"`` -> ``high``, ``"slow"`` -> ``low``), the ``X-Priority`` header (``high``, ``normal``, ``low``),
else ``normal``. Each class maps to one :class:`ClassPolicy` in :class:`PriorityConfig` (the service's
``ServiceConfig.priority``; ``serve --priority CLASS=SPEC`` or ``--priority-config FILE``):

- ``queue_share``: the fraction of ``max_queue_pairs`` that requests of this class may find queued before
  they are refused (429 + Retry-After); by default ``low`` is refused at half the queue, so under overload
  the lowest class absorbs the 429s first;
- ``depth``: ``/v1/search`` reranks at most this many stage-1 candidates (the rest follow in stage-1 order);
- ``stage1_only``: ``/v1/search`` answers stage 1 without reranking; ``idle_only``: only when the primary
  reranker's queue is not empty (rerank when idle).

The batcher serves the classes most urgent first (FIFO within a class), whatever their policy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError

#: Classes, most urgent first (their index is the batcher's priority).
CLASSES: tuple[str, ...] = ("high", "normal", "low")
DEFAULT_CLASS = "normal"
HEADER = "X-Priority"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassPolicy:
    """What one priority class gets (see the module docstring)."""

    queue_share: float = 1.0
    depth: int | None = None
    stage1_only: bool = False
    idle_only: bool = False

    def __post_init__(self) -> None:
        q = self.queue_share
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q) or not 0 < q <= 1:
            raise InvalidInputError(f"queue_share must be a fraction in (0, 1], got {q!r}.")
        d = self.depth
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise InvalidInputError(f"depth must be an integer >= 1, got {d!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"queue_share": self.queue_share, "depth": self.depth, "stage1_only": self.stage1_only,
                "idle_only": self.idle_only}


def _default_policies() -> dict[str, ClassPolicy]:
    return {"high": ClassPolicy(), "normal": ClassPolicy(), "low": ClassPolicy(queue_share=0.5)}


@dataclass(frozen=True, slots=True)
class PriorityConfig:
    """One policy per class (``high``, ``normal``, ``low``); classes not given keep their default.

    Examples:
        >>> cfg = PriorityConfig.parse(["low=stage1", "high=depth:100"])
        >>> cfg.policies["low"].stage1_only, cfg.policies["high"].depth, cfg.policies["low"].queue_share
        (True, 100, 0.5)
    """

    policies: Mapping[str, ClassPolicy] = field(default_factory=_default_policies)

    def __post_init__(self) -> None:
        unknown = set(self.policies) - set(CLASSES)
        if unknown:
            raise InvalidInputError(f"unknown priority class(es) {sorted(unknown)}; use {list(CLASSES)}.")
        merged = {**_default_policies(), **self.policies}
        object.__setattr__(self, "policies", merged)

    def queue_shares(self) -> tuple[float, ...]:
        """Per batcher priority (index = position in :data:`CLASSES`)."""
        return tuple(self.policies[c].queue_share for c in CLASSES)

    def to_dict(self) -> dict[str, Any]:
        return {c: self.policies[c].to_dict() for c in CLASSES}

    @classmethod
    def from_dict(cls, data: Any) -> PriorityConfig:
        if not isinstance(data, Mapping):
            raise InvalidInputError('a priority config is a JSON object like {"low": {"queue_share": 0.5}}.')
        policies = {}
        defaults = _default_policies()
        for name, spec in data.items():
            if not isinstance(spec, Mapping):
                raise InvalidInputError(f"priority class {name!r}: expected an object of policy fields.")
            try:
                base = defaults.get(str(name), ClassPolicy())  # fields not given keep the class's default
                policies[str(name)] = replace(base, **spec)
            except TypeError as exc:
                raise InvalidInputError(
                    f"priority class {name!r}: {exc}; fields are queue_share, depth, stage1_only, idle_only."
                ) from exc
        return cls(policies)

    @classmethod
    def load(cls, path: str | Path) -> PriorityConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"cannot read priority config {path} ({exc}); it must be a JSON file.") from exc
        return cls.from_dict(data)

    @classmethod
    def parse(cls, specs: list[str], base: PriorityConfig | None = None) -> PriorityConfig:
        """``CLASS=ITEM,ITEM`` flags; items: ``depth:N``, ``share:F``, ``stage1``, ``idle``."""
        policies = dict((base or cls()).policies)
        for spec in specs:
            name, sep, rest = spec.partition("=")
            name = name.strip().lower()
            if not sep or name not in CLASSES:
                raise InvalidInputError(
                    f"--priority {spec!r}: expected CLASS=ITEMS with CLASS one of {list(CLASSES)}, "
                    "e.g. low=share:0.5,stage1 or high=depth:100."
                )
            kw: dict[str, Any] = {}
            for item in filter(None, (x.strip() for x in rest.split(","))):
                key, _, value = item.partition(":")
                try:
                    if key == "depth":
                        kw["depth"] = int(value)
                    elif key == "share":
                        kw["queue_share"] = float(value)
                    elif key == "stage1" and not value:
                        kw["stage1_only"] = True
                    elif key == "idle" and not value:
                        kw["idle_only"] = True
                    else:
                        raise ValueError(item)
                except ValueError:
                    raise InvalidInputError(
                        f"--priority {spec!r}: bad item {item!r}; use depth:N, share:F (0-1], stage1 or idle."
                    ) from None
            policies[name] = replace(policies[name], **kw)  # items not given keep the class's setting
        return cls(policies)


def request_class(
    *, cohere_priority: int | None = None, latency: str | None = None, header: str | None = None
) -> str:
    """The class of a request (see the module docstring); a bad header value is an error naming the fix.

    Examples:
        >>> request_class(cohere_priority=0), request_class(latency="slow"), request_class(header="LOW")
        ('high', 'low', 'low')
        >>> request_class()
        'normal'
    """
    if cohere_priority is not None:
        return CLASSES[min(max(int(cohere_priority), 0), len(CLASSES) - 1)]
    if latency is not None:
        return "high" if latency == "fast" else "low"
    if header is not None:
        value = header.strip().lower()
        if value not in CLASSES:
            raise InvalidInputError(f"{HEADER} must be one of {list(CLASSES)}, got {header!r}.")
        return value
    return DEFAULT_CLASS


def rank_of(name: str) -> int:
    """The batcher priority of a class (0 = most urgent)."""
    return CLASSES.index(name)
