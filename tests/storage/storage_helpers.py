"""Small helpers shared by the storage tests (not fixtures, so that subprocess writers can import them)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rankfunnel.types import Document

_X = re.compile(r"@([0-9.]+)")


class DialEmbedder:
    """Dense scores set by hand: a text holding ``@0.8`` has cosine 0.8 with every query."""

    name = "dial-8"
    dim = 8

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
               ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            m = _X.search(t)
            x = float(m.group(1)) if m else 1.0
            out[i, 0], out[i, 1] = x, np.sqrt(max(0.0, 1.0 - x * x))
        return out


def corpus(n: int, prefix: str = "d") -> list[Document]:
    topics = ["apple orchard harvest", "river bridge engineering", "python list index error",
              "contract liability clause", "discount approval manager"]
    return [
        Document(id=f"{prefix}{i}", title=f"title {i}",
                 text=f"{topics[i % 5]} note {i} extra{i % 7}",
                 metadata={"topic": i % 5, "lang": "en" if i % 2 else "fr", "even": i % 2 == 0,
                           "nested": {"k": f"v{i % 3}"}})
        for i in range(n)
    ]


def as_tuples(hits) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]
