"""Pipeline fixtures: a small corpus in a real LocalCollection with the deterministic HashingEmbedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankfunnel.types import Document

DOCS = [
    Document(
        id="fin-1",
        title="Discount approval",
        text="A discount above 10% needs manager approval.",
        metadata={"domain": "finance"},
    ),
    Document(
        id="fin-2",
        title="Floor price",
        text="No sale below the floor price without a pricing exception.",
        metadata={"domain": "finance"},
    ),
    Document(
        id="fin-3",
        title="Volume tiers",
        text="Volume discount tiers apply automatically to large orders.",
        metadata={"domain": "finance"},
    ),
    Document(
        id="code-1",
        title="IndexError",
        text="list index out of range happens when an index is too large.",
        metadata={"domain": "code"},
    ),
    Document(
        id="code-2",
        title="Off by one",
        text="Looping with range(len(items) + 1) runs past the end.",
        metadata={"domain": "code"},
    ),
    Document(
        id="code-3",
        title="KeyError",
        text="A missing dictionary key raises KeyError.",
        metadata={"domain": "code"},
    ),
    Document(
        id="legal-1",
        title="Termination",
        text="Either party may terminate after a material breach.",
        metadata={"domain": "legal"},
    ),
    Document(
        id="legal-2",
        title="Oral agreements",
        text="An oral agreement can be binding in many cases.",
        metadata={"domain": "legal"},
    ),
    Document(
        id="gen-1",
        title="Boiling point",
        text="Water boils at a lower temperature at high altitude.",
        metadata={"domain": "general"},
    ),
    Document(
        id="gen-2",
        title="Tides",
        text="Tides are caused mainly by the gravity of the moon.",
        metadata={"domain": "general"},
    ),
]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index directory holding DOCS, built once per module with HashingEmbedder(dim=32)."""
    from rankfunnel.collection import open_collection
    from rankfunnel.embed import HashingEmbedder

    path = tmp_path_factory.mktemp("pipeline-index") / "idx"
    col = open_collection(str(path), embedder=HashingEmbedder(dim=32), create=True)
    col.add(DOCS)
    return path


@pytest.fixture
def collection(small_index: Path):
    from rankfunnel.collection import open_collection

    return open_collection(str(small_index))
