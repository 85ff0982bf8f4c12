"""A/B split between rerankers: sticky, weighted assignment of a request key to a named variant.

A key (a user id header, else the query) is hashed (sha256) to a point in [0, 1) and mapped onto the
cumulative weights, so the same key always gets the same variant while the weights hold, and over many keys
each variant gets about its share.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rankfunnel.errors import InvalidInputError

#: The variant spec meaning "the server's own --reranker chain" (``--variant control=primary:90``).
PRIMARY = "primary"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    spec: str
    weight: float


def parse_variant(text: str) -> Variant:
    """``NAME=SPEC:WEIGHT`` -> :class:`Variant` (``SPEC`` may hold ``:``; ``primary`` is the server's chain).

    Examples:
        >>> parse_variant("new=fake:10")
        Variant(name='new', spec='fake', weight=10.0)
        >>> parse_variant("r=remote:http://h:8000:5").spec
        'remote:http://h:8000'
    """
    name, eq, rest = text.partition("=")
    spec, colon, weight = rest.rpartition(":")
    hint = "give NAME=SPEC:WEIGHT, e.g. --variant control=primary:90 --variant new=fake:10"
    if not eq or not colon or not spec.strip():
        raise InvalidInputError(f"--variant {text!r}: {hint}.")
    if not _NAME.match(name.strip()):
        raise InvalidInputError(f"--variant {text!r}: NAME must be 1-64 letters, digits, '_', '.' or '-'; {hint}.")
    try:
        w = float(weight)
    except ValueError:
        raise InvalidInputError(f"--variant {text!r}: WEIGHT {weight!r} is not a number; {hint}.") from None
    if not math.isfinite(w) or w <= 0:
        raise InvalidInputError(f"--variant {text!r}: WEIGHT must be a finite number > 0; {hint}.")
    return Variant(name.strip(), spec.strip(), w)


class VariantSplit:
    """Sticky weighted assignment of keys to variant names.

    Examples:
        >>> split = VariantSplit({"a": 1, "b": 3})
        >>> split.pick("user-42") == split.pick("user-42")
        True
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights:
            raise InvalidInputError("an A/B split needs at least one variant.")
        total = 0.0
        self._bounds: list[tuple[float, str]] = []
        for name, w in weights.items():
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
                raise InvalidInputError(f"variant {name!r}: weight must be a finite number > 0, got {w!r}.")
            total += float(w)
            self._bounds.append((total, name))
        self.total = total
        self.names = [n for _, n in self._bounds]

    def pick(self, key: str) -> str:
        """The variant of ``key`` (deterministic)."""
        h = int.from_bytes(hashlib.sha256(("variant:" + key).encode("utf-8", "surrogatepass")).digest()[:8], "big")
        point = h / 2.0**64 * self.total
        for bound, name in self._bounds:
            if point < bound:
                return name
        return self._bounds[-1][1]
