"""Helpers of the integration tests: the sample query and documents, ranking checks, the side-venv runner."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
API_KEY = "integration-test-key-0123"
QUERY = "cancer treatment for patients"
DOCS = [
    "a study of gene expression in mouse cells",
    "cancer treatment effect on patients and risk",
    "the court read the contract clause on pricing",
    "python list index out of range error",
    "patients with cancer in a treatment study",
]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    model_path: Path


def expected_ranking(reranker, query: str, docs: Sequence[str]) -> list[tuple[int, float]]:
    """``(index, normalised score)`` best first, as the server should answer."""
    return [(i, norm) for i, _raw, norm in reranker.rank(query, list(docs))]


def assert_same_ranking(got: Sequence[tuple[int, float]], expected: Sequence[tuple[int, float]],
                        top_n: int | None = None) -> None:
    """Same indices with the same scores (float tolerance); order must follow the scores."""
    want = list(expected)[: top_n if top_n is not None else len(expected)]
    assert len(got) == len(want), (got, want)
    by_index = dict(expected)
    for idx, score in got:
        assert score == pytest.approx(by_index[idx], abs=1e-4), (idx, score, by_index[idx])
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)
    # the returned set is the expected top set, up to ties at the cut-off
    assert sorted(np.round(scores, 4)) == sorted(np.round([s for _, s in want], 4))


def side_python() -> Path:
    """The side venv's Python for the clients that pin an older ``cohere`` (skip when it was not built)."""
    value = os.environ.get("RANKFUNNEL_COHERE5_PYTHON")
    if value:
        path = Path(value)
        assert path.is_file(), f"RANKFUNNEL_COHERE5_PYTHON={value} does not exist; run `make integration`."
        return path
    default = HERE.parents[1] / ".venv-clients" / "bin" / "python"
    if not default.is_file():
        pytest.skip("the cohere<6 side venv is missing: `make integration` builds it (.venv-clients)")
    return default


def run_side_client(name: str, server: Server, payload: dict) -> dict:
    """Run ``clients/<name>.py`` in the side venv with ``payload`` on stdin; return its JSON output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(RF_BASE_URL=server.base_url, RF_API_KEY=server.api_key)
    proc = subprocess.run([str(side_python()), str(HERE / "clients" / f"{name}.py")], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
