"""Service test helpers: a running, warmed-up app (lifespan on) behind httpx.ASGITransport, and a small corpus."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from rankfunnel.types import Document, Hit

CORPUS = [
    Document(id="py-1", text="IndexError list index out of range in python code"),
    Document(id="py-2", text="python list comprehension and range of a list"),
    Document(id="py-3", text="python error handling with exception and raise"),
    Document(id="law-1", text="contract clause court law exception rule"),
    Document(id="law-2", text="the court read the contract clause on pricing"),
    Document(id="bio-1", text="protein gene expression in cancer cells"),
    Document(id="bio-2", text="gene study of mouse cells and human patients"),
    Document(id="bio-3", text="cancer treatment effect on patients risk", metadata={"lang": "en"}),
    Document(id="fin-1", text="discount threshold needs manager approval price"),
    Document(id="fin-2", text="pricing rule exception for discount approval"),
    Document(id="mix-1", text="a list of results of the analysis of methods"),
    Document(id="mix-2", text="high level data analysis increase and decrease"),
]

_TOKEN = re.compile(r"\w+")


class MemoryCollection:
    """Stand-in Collection (stage 1 = token overlap with a deterministic tie-break), used in these tests."""

    def __init__(self, docs: Iterable[Document] = CORPUS) -> None:
        self.docs: dict[str, Document] = {d.id: d for d in docs}

    def add(
        self, docs: Iterable[Document], *, upsert: bool = False, show_progress: bool | None = None
    ) -> int:
        n = 0
        for d in docs:
            self.docs[d.id] = d
            n += 1
        return n

    def delete(self, ids: Sequence[str]) -> int:
        return sum(self.docs.pop(i, None) is not None for i in ids)

    def get(self, ids: Sequence[str]) -> list[Document]:
        return [self.docs[i] for i in ids if i in self.docs]

    def search(self, query: str, *, k: int = 100, retriever: str = "dense", filter: Any = None) -> list[Hit]:
        q = set(_TOKEN.findall(query.lower()))
        scored = []
        for pos, d in enumerate(self.docs.values()):
            overlap = len(q & set(_TOKEN.findall(d.content.lower())))
            scored.append((overlap / max(len(q), 1) + 0.001 * (len(self.docs) - pos), d))
        scored.sort(key=lambda t: -t[0])
        return [
            Hit(id=d.id, rank=r + 1, score=s, stage1_rank=r + 1, stage1_score=s, document=d)
            for r, (s, d) in enumerate(scored[:k])
        ]

    def search_many(self, queries: Sequence[str], **kw: Any) -> list[list[Hit]]:
        return [self.search(q, **kw) for q in queries]

    def __len__(self) -> int:
        return len(self.docs)


def make_pipeline(collection: Any = None) -> Any:
    from rankfunnel.pipeline import Pipeline

    return Pipeline(collection if collection is not None else MemoryCollection(), None)


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, behind an in-process httpx client."""
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        for _ in range(2000):  # like a load balancer, wait for readiness (or a first failed warm-up attempt)
            if engine.warm or engine.warmup_error:
                break
            await asyncio.sleep(0.005)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # like a real server
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            yield client


@asynccontextmanager
async def served(
    config: Any = None, *, rerankers: Sequence[Any] = (), pipeline: Any = None, index: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    from rankfunnel.service import ServiceConfig, create_app

    if pipeline is None and index:
        pipeline = make_pipeline()
    app = create_app(config or ServiceConfig(), rerankers=list(rerankers), pipeline=pipeline)
    async with running(app) as client:
        yield client
