"""One ``rankfunnel serve`` subprocess on 127.0.0.1 (free port, API key, tiny local BERT cross-encoder) per session.

Every test module here sets ``pytestmark = pytest.mark.integration`` (run with ``make integration``); the
official client packages come from the ``rankfunnel[integration]`` extra, and the clients that need
``cohere<6``/``<7`` run in a side venv named by ``RANKFUNNEL_COHERE5_PYTHON`` (see ``requirements-cohere5.txt``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itest_helpers import API_KEY, Server, free_port

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


@pytest.fixture(scope="session")
def server(tiny_bert_ce_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``rankfunnel serve --reranker TINY_MODEL`` as a subprocess, ready, with an API key."""
    port = free_port()
    script = Path(sys.executable).with_name("rankfunnel")
    launcher = [str(script)] if script.is_file() else [sys.executable, "-c", "from rankfunnel.cli import main; main()"]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "RANKFUNNEL_API_KEYS": API_KEY}
    cmd = [*launcher, "serve", "--reranker", str(tiny_bert_ce_path), "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--max-wait-ms", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rankfunnel serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rankfunnel serve not ready after 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield Server(base_url=base, api_key=API_KEY, model_path=tiny_bert_ce_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def tiny_reranker(tiny_bert_ce_path: Path):
    """The same tiny model loaded in this process the way the server loads it (the expected scores)."""
    from rankfunnel.rerank import load_reranker

    model = load_reranker(str(tiny_bert_ce_path))
    assert model is not None
    return model


