"""One end-to-end run with uvicorn on a real loopback socket (random free port)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn
from svc_helpers import make_pipeline

from rankfunnel.rerank.fake import FakeReranker
from rankfunnel.service import ServiceConfig, create_app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_on_loopback():
    app = create_app(ServiceConfig(), rerankers=[FakeReranker()], pipeline=make_pipeline())
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.get("/readyz").json()["status"] == "ready"
            r = c.post("/v2/rerank", json={"query": "red car", "documents": ["a boat", "a red car"]})
            assert r.status_code == 200 and r.json()["results"][0]["index"] == 1
            with c.stream("POST", "/v1/search", json={"query": "gene cells", "mode": "two-phase"}) as s:
                events = [line for line in s.iter_lines() if line.startswith("event:")]
            assert events == ["event: stage1", "event: reranked"]
            bad = c.post("/v2/rerank", content=b"\xff\xfe", headers={"content-type": "application/json"})
            assert bad.status_code == 400
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()
