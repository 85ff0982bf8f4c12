"""CLI commands through typer's CliRunner: --json shapes, resume, fail-open search, error exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankfunnel.cli import app
from rankfunnel.ingest import sample_data

runner = CliRunner()
HIT_KEYS = {"id", "rank", "stage1_rank", "stage1_score", "rerank_score", "score"}


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def run_json(*args: str, env: dict[str, str] | None = None):
    res = run(*args, "--json", env=env)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    idx = tmp_path_factory.mktemp("cli") / "idx"
    out = run_json(
        "index", str(sample_data()), "--index-dir", str(idx), "--embedder", "hashing:64", "--chunk-size", "32"
    )
    assert out["added"] == out["read"] == out["documents"] == 80 and out["skipped"] == 0
    return idx


def test_index_again_resumes_and_skips(sample_index: Path) -> None:
    out = run_json("index", str(sample_data()), "--index-dir", str(sample_index), "--embedder", "hashing:64")
    assert (out["added"], out["skipped"], out["documents"]) == (0, 80, 80)


def test_search_json_shape(sample_index: Path) -> None:
    out = run_json(
        "search",
        "who approves a discount above 20%",
        "--index-dir",
        str(sample_index),
        "--reranker",
        "fake",
        "--retriever",
        "hybrid",
        "--top-k",
        "20",
        "--top-n",
        "5",
    )
    assert set(out) >= {"query", "reranked", "reason", "hits", "timings_ms"}
    assert out["reranked"] is True and out["reason"] is None and len(out["hits"]) == 5
    assert all(set(h) >= HIT_KEYS for h in out["hits"])
    assert [h["rank"] for h in out["hits"]] == [1, 2, 3, 4, 5]
    raws = [h["rerank_score"] for h in out["hits"]]
    assert raws == sorted(raws, reverse=True)
    assert set(out["timings_ms"]) >= {"stage1_ms", "rerank_ms", "total_ms"}


def test_search_filter_env_and_no_reranker(sample_index: Path) -> None:
    out = run_json(
        "search",
        "list index out of range",
        "--reranker",
        "none",
        "--filter",
        "domain=code",
        "--top-n",
        "20",
        "--with-text",
        env={"RANKFUNNEL_INDEX_DIR": str(sample_index)},
    )
    assert out["reranked"] is False and "switched off" in out["reason"]
    assert len(out["hits"]) == 20 and {h["metadata"]["domain"] for h in out["hits"]} == {"code"}
    assert all(h["rerank_score"] is None and h["rank"] == h["stage1_rank"] for h in out["hits"])


def test_search_with_unloadable_reranker_fails_open(sample_index: Path, tmp_path: Path) -> None:
    out = run_json(
        "search",
        "floor price",
        "--index-dir",
        str(sample_index),
        "--reranker",
        str(tmp_path / "missing-model"),
        "--top-n",
        "3",
    )
    assert out["reranked"] is False and "could not be loaded" in out["reason"] and len(out["hits"]) == 3


def test_search_pretty_table(sample_index: Path) -> None:
    res = run(
        "search",
        "boiling point of water in the mountains",
        "--index-dir",
        str(sample_index),
        "--reranker",
        "fake",
        "--top-n",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert "s1 rank" in res.stdout and "raw" in res.stdout and "gen-" in res.stdout


def test_rerank_jsonl_and_plain_lines(tmp_path: Path) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"id": "a", "text": "blue boat"}\n"red car on a road"\n{"id": "c", "text": "red"}\n')
    out = run_json("rerank", "--query", "red car", "--docs", str(jsonl), "--reranker", "fake")
    assert [r["id"] for r in out["results"]] == ["1", "c", "a"]
    assert [r["rank"] for r in out["results"]] == [1, 2, 3]
    plain = tmp_path / "docs.txt"
    plain.write_text("blue boat\n\nred car\n")
    out = run_json("rerank", "-q", "red car", "-d", str(plain), "--reranker", "fake", "--top-n", "1")
    assert [(r["index"], r["rerank_score"]) for r in out["results"]] == [(1, 10.0)]


def test_info_json() -> None:
    out = run_json("info")
    assert set(out) >= {"devices", "versions", "models", "warnings", "reranker"}
    assert out["devices"]["chosen"] in {"cpu", "cuda", "mps"}
    assert out["versions"]["faiss"] != "not installed"
    assert Path(out["models"]["embedder"]["path"]).is_dir()  # all-MiniLM-L6-v2 from its offline package


def _assert_clean_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, sample_index: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "a", "text": "caf\xe9"}\n')
    _assert_clean_error(
        run("index", str(bad), "--index-dir", str(tmp_path / "i"), "--embedder", "hashing"), "not valid UTF-8"
    )
    _assert_clean_error(run("search", "q", "--index-dir", str(tmp_path / "nope")), "does not exist")
    _assert_clean_error(run("search", "  ", "--index-dir", str(sample_index), "--reranker", "none"), "empty")
    _assert_clean_error(
        run("search", "q", "--index-dir", str(sample_index), "--filter", "domain"), "key=value"
    )
    _assert_clean_error(
        run("search", "q", "--index-dir", str(sample_index), "--top-k", "0", "--reranker", "none"), "--top-k"
    )
    _assert_clean_error(
        runner.invoke(app, ["search", "q"], env={"RANKFUNNEL_INDEX_DIR": None}), "No index given"
    )
    docs = tmp_path / "d.txt"
    docs.write_text("x\n")
    _assert_clean_error(run("rerank", "-q", "x", "-d", str(docs), "--reranker", "none"), "needs a reranker")
    _assert_clean_error(
        run("rerank", "-q", "x", "-d", str(tmp_path / "missing.txt"), "--reranker", "fake"), "no such file"
    )


def test_unexpected_errors_exit_1_without_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import rankfunnel.ingest

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rankfunnel.ingest, "index_source", boom)
    monkeypatch.delenv("RANKFUNNEL_DEBUG", raising=False)
    res = run("index", str(sample_data()), "--index-dir", str(tmp_path / "i"), "--embedder", "hashing")
    assert res.exit_code == 1 and "RuntimeError: disk on fire" in res.output and "Traceback" not in res.output


def test_hub_is_needed_only_for_hub_ids_not_on_disk(tmp_path: Path) -> None:
    from rankfunnel.rerank.resolve import needs_hub

    assert needs_hub("cross-encoder/ms-marco-MiniLM-L6-v2") and needs_hub("fake:50,org/model:10")
    assert not needs_hub(str(tmp_path))  # an existing local folder
    assert not needs_hub("fake") and not needs_hub(None) and not needs_hub("remote:http://h:1/v2/rerank")


def test_index_folder_with_hnsw_and_upsert(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Refund policy\nRefunds within 30 days.\n", encoding="utf-8")
    (docs / "b.txt").write_text("Shipping\nWe ship worldwide.\n", encoding="utf-8")
    idx = str(tmp_path / "idx")
    out = run_json("index", str(docs), "--index-dir", idx, "--embedder", "hashing", "--index-type", "hnsw")
    assert out["added"] == 2
    from rankfunnel.collection import open_collection

    assert open_collection(idx).info()["index"]["index_type"] == "hnsw"
    (docs / "a.md").write_text("# Refund policy\nRefunds within 60 days.\n", encoding="utf-8")
    out = run_json("index", str(docs), "--index-dir", idx, "--upsert")  # embedder read from the index
    assert (out["added"], out["skipped"], out["documents"]) == (2, 0, 2)
    hit = run_json("search", "refund", "--index-dir", idx, "--reranker", "none", "--with-text")["hits"][0]
    assert hit["id"] == "a.md" and hit["title"] == "Refund policy" and "60 days" in hit["text"]


@pytest.mark.parametrize("command", ["search", "rerank", "eval", "bench", "calibrate", "serve", "distil"])
def test_every_reranking_command_documents_the_remote_key_and_route(command: str) -> None:
    res = run(command, "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for needle in ("--reranker-api-key", "RANKFUNNEL_RERANKER_API_KEY", "--cpu-route", "RANKFUNNEL_CPU_ROUTE"):
        assert needle in text, (command, needle)


def test_remote_key_comes_from_its_option_or_environment(tmp_path: Path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("red car\nblue boat\n")
    url = "remote:https://api.zeroentropy.dev/v1/models/rerank"
    res = run("rerank", "-q", "red", "-d", str(docs), "--reranker", url, env={"ZEROENTROPY_API_KEY": ""})
    assert res.exit_code == 2 and "--reranker-api-key" in res.output and "--api-key " not in res.output
    from rankfunnel.cli._reranker import api_key_for

    assert api_key_for(url, "given") == "given"
    import os

    os.environ["ZEROENTROPY_API_KEY"] = "ze-key"
    try:
        assert api_key_for(url, None) == "ze-key"
        assert api_key_for("remote:http://127.0.0.1:9/v2/rerank", None) is None  # never sent to another API
    finally:
        del os.environ["ZEROENTROPY_API_KEY"]


def test_info_shows_the_reranker_the_flags_and_environment_resolve_to(monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_json("info", env={"RANKFUNNEL_RERANKER": "fake"})
    assert out["reranker"]["requested"] == "fake" and out["reranker"]["resolved"] == "fake"
    from rankfunnel.rerank import resolve

    monkeypatch.setattr(resolve, "model_on_disk", lambda name: False)
    out = run_json("info", "--reranker", "auto", "--offline", "--device", "cpu")
    assert out["reranker"]["resolved"] is None and "make reranker" in out["reranker"]["reason"]
    res = run("info", "--reranker", "auto", "--offline", "--device", "cpu", env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "reranker: reranker='auto' found no trained reranker" in " ".join(res.output.split())


def test_cli_warnings_are_one_line_without_library_file_names() -> None:
    import warnings

    from rankfunnel.cli import _cli, _one_line_warning

    assert _one_line_warning(UserWarning("model X is non-commercial"), UserWarning, "/x/rerank/a.py", 70) == (
        "warning: model X is non-commercial\n"
    )
    saved = warnings.formatwarning
    try:
        _cli(None)  # type: ignore[arg-type]
        text = warnings.formatwarning("careful", UserWarning, "/lib/rankfunnel/rerank/__init__.py", 70, "code")
        assert text == "warning: careful\n"
    finally:
        warnings.formatwarning = saved


def test_bench_errors_name_the_option_that_was_given(sample_index: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    res = run("bench", "--index-dir", str(sample_index), "--queries-file", str(missing), "--quiet")
    _assert_clean_error(res, "--queries-file")


def test_search_applies_a_depth_policy(sample_index: Path, tmp_path: Path) -> None:
    """`search --depth-policy`: the policy's depth is what gets reranked; the rest keep stage-1 order."""
    from rankfunnel.rerank.depth import DepthPolicy

    top2 = DepthPolicy("gap", (float("inf"),), (2, 20)).save(tmp_path / "top2.json")  # never reached: depth 20
    always2 = DepthPolicy("gap", (-1e9,), (2, 20)).save(tmp_path / "always2.json")  # every query: rerank the top 2
    args = ["search", "who approves a discount above 20%", "--index-dir", str(sample_index), "--reranker", "fake",
            "--top-k", "20", "--top-n", "10"]
    full = run_json(*args, "--depth-policy", str(top2))
    cut = run_json(*args, "--depth-policy", str(always2))
    assert full["reranked"] and cut["reranked"]
    assert sum(h["rerank_score"] is not None for h in full["hits"]) == 10
    assert [h["rerank_score"] is not None for h in cut["hits"]] == [True, True] + [False] * 8
    assert [h["stage1_rank"] for h in cut["hits"][2:]] == sorted(h["stage1_rank"] for h in cut["hits"][2:])
