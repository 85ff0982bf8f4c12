"""Issue 14 class 3: a hung or rate-limiting remote reranker never keeps work past a request's deadline.

A stub reranker server on 127.0.0.1 (free port) sleeps or answers 429 with ``Retry-After: 30``; the service
(with a :class:`RemoteReranker`) must fail every request open within its deadline, open its circuit breaker
(visible in /readyz and /metrics), and rerank again promptly once the stub recovers.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from svc_helpers import served

from rankfunnel.rerank.remote import RemoteReranker
from rankfunnel.service import ServiceConfig

DEADLINE_MS = 300


class Stub:
    """Modes: ``ok`` (Cohere-shaped answer), ``sleep`` (hang for 5 s), ``429`` (Retry-After: 30)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests += 1
                mode = stub.mode
                if mode == "sleep":
                    time.sleep(5)
                if mode == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "30")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                results = [
                    {"index": i, "relevance_score": 0.9 if "cells" in d else 0.1}
                    for i, d in enumerate(body["documents"])
                ]
                data = json.dumps({"results": results}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timed out) while we slept
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v2/rerank"


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    thread = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.mark.parametrize("mode", ["sleep", "429"])
def test_hung_remote_fails_open_within_deadline_and_recovers_promptly(stub: Stub, mode: str) -> None:
    remote = RemoteReranker(stub.url, api="cohere", timeout=30.0, max_retries=5, backoff=0.05)
    cfg = ServiceConfig(deadline_ms=DEADLINE_MS, breaker_failures=2, breaker_cooldown_s=0.3)
    n = iter(range(10_000))

    def query() -> dict[str, object]:  # a new query each time: no score-cache hit can hide the remote
        return {"query": f"gene cells {next(n)}", "top_k": 6, "top_n": 3}

    async def body() -> dict[str, object]:
        async with served(cfg, rerankers=[remote]) as c:
            assert (await c.post("/v1/search", json=query())).json()["reranked"] is True
            stub.mode = mode
            took, answers = [], []
            for _ in range(4):
                t0 = time.monotonic()
                r = await c.post("/v1/search", json=query())
                took.append(time.monotonic() - t0)
                answers.append(r.json())
            ready = (await c.get("/readyz")).json()
            metrics = (await c.get("/metrics")).text
            requests_while_down = stub.requests
            stub.mode = "ok"
            t_up = time.monotonic()
            recovered = None
            while time.monotonic() - t_up < 5:
                got = (await c.post("/v1/search", json=query())).json()
                if got["reranked"]:
                    recovered = time.monotonic() - t_up
                    break
                await asyncio.sleep(0.02)
            return {
                "took": took, "answers": answers, "ready": ready, "metrics": metrics,
                "recovered": recovered, "requests_while_down": requests_while_down,
            }

    out = asyncio.run(body())
    took, answers = out["took"], out["answers"]
    assert all(a["reranked"] is False and a["reason"] for a in answers)  # type: ignore[index]
    # every request failed open within its deadline (plus scheduling slack), never after a 30 s Retry-After
    assert max(took) < DEADLINE_MS / 1e3 + 0.35, took  # type: ignore[type-var]
    # the breaker opened after 2 failures: later requests do not reach the dead remote
    assert any("circuit breaker is open" in a["reason"] for a in answers)  # type: ignore[index]
    assert out["ready"]["circuit_breakers"][remote.name]["state"] in {"open", "half_open"}  # type: ignore[index]
    assert f'rankfunnel_circuit_breaker_state{{model="{remote.name}"}} 2.0' in out["metrics"]  # type: ignore[operator]
    # reranking comes back promptly once the remote is up (a cool-down of 0.3 s, then one probe)
    assert out["recovered"] is not None and out["recovered"] < 2.0, out["recovered"]
