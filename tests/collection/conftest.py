"""Fixtures of the Collection contract suite: one factory per backend (memory, faiss, Milvus Lite, and a real
`milvus-lite server` process on loopback reached over gRPC)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["memory", "faiss", "milvus-lite", "milvus-server"]
_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`milvus-lite server` (the gRPC server of Milvus Lite 3.x) on 127.0.0.1 and a free port."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).with_name("milvus-lite"))
    if not Path(exe).exists():
        pytest.skip("the milvus-lite command is not installed (pip install milvus-lite)")
    data = tmp_path_factory.mktemp("milvus-server")
    port = _free_port()
    log = open(data / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "server", "--data-dir", str(data / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"milvus-lite server exited: {(data / 'server.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("milvus-lite server did not open its port within 60 s")
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_collection(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """``make_collection(embedder, **opts)`` -> a new, empty collection on the parametrised backend."""
    made: list[Any] = []

    def make(embedder: Any, **opts: Any) -> Any:
        if backend == "memory":
            from rankfunnel.collection import MemoryCollection

            col: Any = MemoryCollection(embedder, **opts)
        elif backend == "faiss":
            from rankfunnel.collection import LocalCollection

            col = LocalCollection.create(tmp_path / f"faiss{len(made)}", embedder, **opts)
        else:
            pytest.importorskip("pymilvus")
            pytest.importorskip("milvus_lite")
            from rankfunnel.collection.milvus import MilvusCollection

            if backend == "milvus-lite":
                uri = str(tmp_path / f"lite{len(made)}.db")
            else:
                uri = request.getfixturevalue("milvus_server")
            col = MilvusCollection(
                uri, collection=f"t{os.getpid()}_{next(_names)}", embedder=embedder, create=True, **opts
            )
        made.append(col)
        return col

    yield make
    for col in made:
        # a collection a test already closed (``with col:``) stays on the session's throwaway server
        if backend == "milvus-server" and getattr(col, "_client", None) is not None:
            col.drop()
        else:
            col.close()


class RandomEmbedder:
    """Deterministic, tie-free test embedder: a seeded Gaussian vector per text (no semantics).

    Exact-search parity needs distinct scores, not meaning; this keeps the three-backend suite fast on a
    loaded 2-core machine. The real-model parity check is the ``slow`` test with all-MiniLM-L6-v2.
    """

    name = "test-random-48"
    dim = 48

    def encode(self, texts: Any, *, batch_size: int = 64, show_progress: bool | None = None) -> Any:
        import hashlib

        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture
def random_embedder() -> RandomEmbedder:
    return RandomEmbedder()
