"""A minimal in-memory collection for ingestion properties that need no vectors."""

from __future__ import annotations

from rankfunnel.types import Document


class MemoryCollection:
    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}

    def add(self, docs, *, upsert: bool = False, show_progress=None) -> int:  # noqa: ANN001
        docs = list(docs)
        for d in docs:
            assert upsert or d.id not in self.docs, f"ingestion handed an already stored id {d.id!r}"
            self.docs[d.id] = d
        return len(docs)

    def ids(self) -> list[str]:
        return list(self.docs)

    def __len__(self) -> int:
        return len(self.docs)
