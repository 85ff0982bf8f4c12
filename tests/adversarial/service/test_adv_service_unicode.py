"""Class 1 (service): generated hostile text in every request field never gets a 5xx or a reset stream.

Text that UTF-8 cannot encode (a lone surrogate sent as a JSON escape) gets 422 naming the field; anything
else gets 2xx or a 4xx with a JSON error. Covers /v1/search (blocking and two-phase SSE), /v1/documents and
every rerank shape (/v2/rerank, /v1/rerank, /v1/models/rerank, /rerank).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from adv_strategies import has_surrogate, hostile_metadata, hostile_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from svc_helpers import make_pipeline

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig, create_app

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(ServiceConfig(cache_size=0), rerankers=[FakeReranker()], pipeline=make_pipeline())
    with TestClient(app, raise_server_exceptions=False) as c:
        end = time.monotonic() + 10
        while c.get("/readyz").status_code != 200 and time.monotonic() < end:
            time.sleep(0.01)
        yield c


def _post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    # json.dumps escapes lone surrogates as \udXXX: exactly what a hostile client sends
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def _check(resp: Any, body: dict[str, Any]) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line[6:] for line in resp.text.splitlines() if line.startswith("data: ")]
        assert events, "an SSE answer without events"
        for data in events:
            json.loads(data)  # every event is complete, valid JSON
        assert "event: reranked" in resp.text or "event: error" in resp.text, "the stream was cut short"
    else:
        payload = resp.json()
        if resp.status_code >= 400:
            assert isinstance(payload["detail"], str) and payload["detail"]
    bad = [k for k, v in body.items() if has_surrogate(v)]
    if bad:
        assert resp.status_code == 422, (resp.status_code, resp.text[:300])
        for field in bad:
            assert field in resp.json()["detail"], (field, resp.json()["detail"])
            assert "not valid Unicode" in resp.json()["detail"]


@SETTINGS
@given(
    query=hostile_text,
    filter=st.one_of(st.none(), hostile_metadata),
    mode=st.sampled_from(["blocking", "two-phase"]),
    rerank=st.sampled_from([True, False, "auto"]),
    return_text=st.booleans(),
)
def test_search_fields(client: TestClient, query: str, filter: Any, mode: str, rerank: Any, return_text: bool):
    body = {"query": query, "mode": mode, "rerank": rerank, "return_text": return_text, "top_k": 5}
    if filter is not None:
        body["filter"] = filter
    _check(_post(client, "/v1/search", body), body)


document = st.fixed_dictionaries(
    {"id": hostile_text.filter(bool), "text": hostile_text},
    optional={"title": hostile_text, "metadata": hostile_metadata},
)


@SETTINGS
@given(docs=st.lists(document, max_size=4), upsert=st.booleans())
def test_documents_fields(client: TestClient, docs: list[dict[str, Any]], upsert: bool):
    body = {"documents": docs, "upsert": upsert}
    resp = _post(client, "/v1/documents", body)
    _check(resp, body)
    if has_surrogate(docs):  # the field path inside the documents is named too
        bad_doc = next(d for d in docs if has_surrogate(d))
        bad_field = next(k for k, v in bad_doc.items() if has_surrogate(v))
        assert bad_field in resp.json()["detail"]


rerank_doc = st.one_of(hostile_text, st.fixed_dictionaries({"text": hostile_text}))


@SETTINGS
@given(
    path=st.sampled_from(["/v2/rerank", "/v1/rerank", "/v1/models/rerank", "/rerank"]),
    query=hostile_text,
    docs=st.lists(rerank_doc, min_size=0, max_size=5),
    model=st.one_of(st.none(), hostile_text),
    top_n=st.one_of(st.none(), st.integers(-2, 8)),
)
def test_rerank_fields(client: TestClient, path: str, query: str, docs: list[Any], model: Any, top_n: Any):
    if path == "/rerank":
        body: dict[str, Any] = {"query": query, "texts": [d if isinstance(d, str) else d["text"] for d in docs]}
    elif path == "/v1/models/rerank":
        body = {"query": query, "documents": [d if isinstance(d, str) else d["text"] for d in docs]}
    else:
        body = {"query": query, "documents": docs}
    if model is not None and path != "/rerank":
        body["model"] = model
    if top_n is not None and path != "/rerank":
        body["top_n"] = top_n
    _check(_post(client, path, body), body)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/search", {"query": "discount \ud800"}, "query"),
        ("/v1/search", {"query": "discount \ud800", "mode": "two-phase"}, "query"),
        ("/v1/documents", {"documents": [{"id": "a\udfff", "text": "x"}]}, "documents[0].id"),
        ("/v1/documents", {"documents": [{"id": "a", "text": "x", "title": "\ud800"}]}, "documents[0].title"),
        ("/v1/documents", {"documents": [{"id": "a", "text": "x", "metadata": {"\ud800": 1}}]}, "metadata"),
        ("/v2/rerank", {"query": "q", "documents": ["ok", {"text": "bad \ud800"}]}, "documents[1].text"),
        ("/v1/models/rerank", {"query": "q", "documents": ["ok", "\udc00"]}, "documents[1]"),
        ("/rerank", {"query": "q", "texts": ["\ud800"]}, "texts[0]"),
    ],
)
def test_the_reported_examples_name_the_field(client: TestClient, path: str, body: dict[str, Any], field: str):
    resp = _post(client, path, body)
    assert resp.status_code == 422, resp.text
    assert field in resp.json()["detail"], resp.json()["detail"]
