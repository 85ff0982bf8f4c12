"""RemoteReranker against httpx.MockTransport, a slow loopback server, and rankfunnel's own service."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from rankfunnel.errors import InvalidInputError, RerankerUnavailableError
from rankfunnel.rerank.base import Calibration
from rankfunnel.rerank.remote import RemoteReranker, resolve_endpoint


def relevance(query: str, doc: str) -> float:
    """A deterministic 0-1 'model': word overlap."""
    q, d = set(query.lower().split()), set(doc.lower().split())
    return round(0.05 + 0.9 * len(q & d) / max(len(q), 1), 6)


class Server:
    """A scripted mock API: records requests; ``script`` yields responses before the real answer."""

    def __init__(
        self, api: str = "cohere", script: list[httpx.Response] | None = None, limit: int | None = None
    ):
        self.api, self.script, self.limit = api, list(script or []), limit
        self.requests: list[dict] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.headers.append(request.headers)
        if self.script:
            return self.script.pop(0)
        docs = body["texts"] if self.api == "tei" else body["documents"]
        if self.limit and len(docs) > self.limit:
            if self.api == "tei":
                return httpx.Response(
                    422,
                    json={
                        "error": f"batch size {len(docs)} > maximum allowed batch size {self.limit}",
                        "error_type": "Validation",
                    },
                )
            return httpx.Response(
                413, json={"detail": f"{len(docs)} documents; the limit max_documents is {self.limit}."}
            )
        scores = [relevance(body["query"], d) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: -scores[i])
        if self.api == "tei":
            key = "score"
            if body.get("raw_scores"):
                scores = [float(np.log(s / (1 - s))) * 5 for s in scores]
            return httpx.Response(200, json=[{"index": i, key: scores[i]} for i in order])
        return httpx.Response(
            200, json={"id": "x", "results": [{"index": i, "relevance_score": scores[i]} for i in order]}
        )


DOCS = [
    "the red car is fast",
    "a blue boat",
    "red wine",
    "car parts for sale",
    "nothing here",
    "red car red car",
    "boats and cars",
]


def make(server: Server, url: str = "http://pool:8000", **kw) -> RemoteReranker:
    kw.setdefault("backoff", 0.0)
    return RemoteReranker(url, transport=httpx.MockTransport(server), **kw)


def test_resolve_endpoint():
    assert resolve_endpoint("http://h:8000/") == ("cohere", "http://h:8000/v2/rerank")
    assert resolve_endpoint("http://h/v1/rerank") == ("cohere", "http://h/v1/rerank")
    assert resolve_endpoint("http://tei:80/rerank") == ("tei", "http://tei:80/rerank")
    assert resolve_endpoint("http://h/base", "tei") == ("tei", "http://h/base/rerank")
    assert resolve_endpoint("https://api.zeroentropy.dev/v1/models/rerank")[0] == "zeroentropy"
    for bad in ("ftp://x", "pool:8000", "http://h/score"):
        with pytest.raises(InvalidInputError):
            resolve_endpoint(bad)


@pytest.mark.parametrize("api", ["cohere", "tei", "zeroentropy"])
def test_scores_round_trip_in_input_order(api):
    server = Server(api)
    rr = make(server, api=api, api_key="k" if api == "zeroentropy" else None)
    pairs = [("red car", d) for d in DOCS] + [("blue boat", d) for d in DOCS[:3]]
    raw = rr.predict(pairs)
    expected = np.array([relevance(q, d) for q, d in pairs])
    np.testing.assert_allclose(rr.normalise(raw), expected, atol=1e-6)  # server's 0-1 score comes back as is
    assert len(server.requests) == 2  # one request per query
    ranked = rr.rank("red car", DOCS, top_n=3)
    assert [i for i, _, _ in ranked] == sorted(
        range(len(DOCS)), key=lambda i: -relevance("red car", DOCS[i])
    )[:3]
    if api == "zeroentropy":
        assert server.requests[0]["model"] == "zerank-2"
        assert server.headers[0]["authorization"] == "Bearer k"
    if api == "tei":
        assert server.requests[0]["truncate"] is False  # never silently truncated unless asked


def test_tei_raw_scores_and_calibration():
    rr = make(Server("tei"), api="tei", raw_scores=True, calibration=Calibration(temperature=5.0))
    raw = rr.score("red car", DOCS)
    expected = np.array([relevance("red car", d) for d in DOCS])
    np.testing.assert_allclose(rr.normalise(raw), expected, atol=1e-5)


def test_zeroentropy_needs_a_key():
    with pytest.raises(RerankerUnavailableError, match="ZEROENTROPY_API_KEY"):
        RemoteReranker("https://api.zeroentropy.dev")


def test_splits_to_max_documents_concurrently():
    server = Server()
    rr = make(server, max_documents=3, concurrency=3)
    raw = rr.score("red car", DOCS)
    assert [len(r["documents"]) for r in server.requests] == [3, 3, 1] or sorted(
        len(r["documents"]) for r in server.requests
    ) == [1, 3, 3]
    np.testing.assert_allclose(rr.normalise(raw), [relevance("red car", d) for d in DOCS], atol=1e-6)


@pytest.mark.parametrize("api", ["cohere", "tei"])
def test_learns_the_server_limit_from_413_or_tei_422(api):
    server = Server(api, limit=2)
    rr = make(server, api=api, max_documents=100)
    raw = rr.score("red car", DOCS)
    np.testing.assert_allclose(rr.normalise(raw), [relevance("red car", d) for d in DOCS], atol=1e-6)
    assert rr.max_documents == 2
    n = len(server.requests)
    rr.score("red car", DOCS)
    assert len(server.requests) - n == 4  # later calls split up front: ceil(7 / 2)


def test_retries_429_and_503_honouring_retry_after():
    script = [
        httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "busy"}),
        httpx.Response(503, json={"detail": "warming up"}),
    ]
    server = Server(script=script)
    rr = make(server, max_retries=3)
    assert rr.score("red car", DOCS[:2]).shape == (2,)
    assert len(server.requests) == 3


def test_gives_up_after_max_retries_with_a_plain_message():
    server = Server(script=[httpx.Response(502, text="bad gateway")] * 5)
    rr = make(server, max_retries=2)
    with pytest.raises(RerankerUnavailableError, match=r"502.*gave up after 3 attempts"):
        rr.score("q", ["d"])
    assert len(server.requests) == 3


def test_retry_after_beyond_the_deadline_fails_fast():
    server = Server(script=[httpx.Response(429, headers={"Retry-After": "30"})])
    rr = make(server, total_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(RerankerUnavailableError, match="would pass the deadline"):
        rr.score("q", ["d"])
    assert time.monotonic() - t0 < 0.5 and len(server.requests) == 1


def test_connection_errors_are_retried_then_reported():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    rr = RemoteReranker("http://pool:8000", transport=httpx.MockTransport(handler), max_retries=1, backoff=0)
    with pytest.raises(RerankerUnavailableError, match="could not be reached"):
        rr.score("q", ["d"])
    assert len(calls) == 2


@pytest.mark.parametrize(("status", "hint"), [(401, "API key"), (404, "URL path"), (400, "limits")])
def test_client_errors_are_not_retried(status, hint):
    server = Server(script=[httpx.Response(status, json={"detail": "nope"})])
    with pytest.raises(RerankerUnavailableError, match=hint):
        make(server).score("q", ["d"])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "payload",
    [{"results": [{"index": 0}]}, {"data": []}, {"results": [{"index": 0, "relevance_score": 0.5}]}],
)
def test_malformed_or_incomplete_responses(payload):
    server = Server(script=[httpx.Response(200, json=payload)])
    with pytest.raises(RerankerUnavailableError):
        make(server).score("q", ["a", "b"])


def _slow_server(delay: float) -> tuple[ThreadingHTTPServer, str]:
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            body = json.dumps({"results": [{"index": 0, "relevance_score": 0.9}]}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_real_socket_timeout_fits_the_callers_deadline():
    httpd, url = _slow_server(delay=1.5)
    try:
        rr = RemoteReranker(url, timeout=30, max_retries=5, backoff=0.05)
        t0 = time.monotonic()
        with pytest.raises(RerankerUnavailableError):
            rr.predict([("q", "d")], timeout=0.4)
        assert time.monotonic() - t0 < 1.2  # neither the 30 s per-try timeout nor the server's 1.5 s
        assert rr.predict([("q", "d")], timeout=5.0)[0] == pytest.approx(np.log(0.9 / 0.1), rel=1e-5)
        rr.close()
    finally:
        httpd.shutdown()


def test_against_rankfunnel_service_on_loopback():
    pytest.importorskip("uvicorn", reason="the service needs the server extra (pip install rankfunnel[server])")
    pytest.importorskip("fastapi", reason="the service needs the server extra (pip install rankfunnel[server])")
    import uvicorn

    from rankfunnel import service  # in-package: must import, never skip
    from rankfunnel.rerank.fake import FakeReranker

    local = FakeReranker()
    app = service.create_app(service.ServiceConfig(), rerankers=[FakeReranker()])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        docs = ["a red car", "a boat", "red cars are fast", "unrelated text"]
        for api, path in (("cohere", "/v2/rerank"), ("zeroentropy", "/v1/models/rerank"), ("tei", "/rerank")):
            with RemoteReranker(
                f"http://127.0.0.1:{port}{path}", api=api, api_key="x", max_documents=3
            ) as rr:
                got = rr.normalise(rr.score("red car", docs))
            want = local.normalise(local.score("red car", docs))
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=api)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_load_reranker_builds_a_remote_reranker():
    from rankfunnel.rerank import load_reranker

    rr = load_reranker("remote:http://pool:8000/v2/rerank")
    assert isinstance(rr, RemoteReranker) and rr.api == "cohere" and rr.url == "http://pool:8000/v2/rerank"
    rr.close()
