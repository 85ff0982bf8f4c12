"""The new limits and the derived defaults are reachable from `rankfunnel serve` (uvicorn stubbed)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rankfunnel.cli import app


@pytest.fixture
def seen(monkeypatch):
    import uvicorn

    got: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: got.update(app=application, **kw))
    return got


def test_serve_flags_reach_the_config(seen):
    args = ["serve", "--reranker", "fake", "--max-id-chars", "64", "--max-title-chars", "100"]
    args += ["--max-metadata-bytes", "999", "--max-queue-wait-ms", "off", "--max-inflight", "12"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = seen["app"].state.config
    assert (cfg.limits.max_id_chars, cfg.limits.max_title_chars, cfg.limits.max_metadata_bytes) == (64, 100, 999)
    assert cfg.max_queue_wait_ms is None and cfg.max_inflight == 12


def test_serve_defaults_are_derived(seen):
    result = CliRunner().invoke(app, ["serve", "--reranker", "fake"])
    assert result.exit_code == 0, result.output
    cfg = seen["app"].state.config
    assert cfg.max_queue_wait_ms == "auto" and cfg.max_inflight == "auto" and cfg.warmup is True


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--max-id-chars", "0", "max_id_chars"),
        ("--max-title-chars", "-5", "max_title_chars"),
        ("--max-metadata-bytes", "0", "max_metadata_bytes"),
        ("--max-queue-wait-ms", "soon", "--max-queue-wait-ms"),
        ("--max-queue-wait-ms", "-1", "max_queue_wait_ms"),
        ("--max-inflight", "many", "--max-inflight"),
        ("--max-inflight", "0", "max_inflight"),
    ],
)
def test_serve_rejects_bad_limits_with_exit_2(seen, flag: str, value: str, named: str):
    result = CliRunner().invoke(app, ["serve", "--reranker", "fake", flag, value])
    assert result.exit_code == 2, result.output
    assert named in result.output
