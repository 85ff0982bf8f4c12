"""Classes 5, 7 and 1 of issue 14 through the CLI: generated inputs; the exit code is 0 or 2, never 1.

Every input error is one line on stderr naming the fix (exit code 2), never an "unexpected error" line.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import Line, sources, write_source
from typer.testing import CliRunner

from rankfunnel.cli import app
from rankfunnel.cli._errors import BOUNDS, _option_names
from rankfunnel.ingest import sample_data

runner = CliRunner()
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


def run(*args: str):
    return runner.invoke(app, list(args))


def _clean(res, *, allowed=(0, 2)) -> None:
    assert res.exit_code in allowed, res.output
    assert "unexpected error" not in res.output and "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    idx = tmp_path_factory.mktemp("adv-cli") / "idx"
    res = run("index", str(sample_data()), "--index-dir", str(idx), "--embedder", "hashing:16")
    assert res.exit_code == 0, res.output
    return idx


@SETTINGS
@given(lines=sources(max_size=8))
def test_index_command_indexes_the_valid_lines_and_lists_the_rest(lines: list[Line]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, idx = Path(tmp) / "c.jsonl", Path(tmp) / "idx"
        write_source(src, lines)
        res = run("index", str(src), "--index-dir", str(idx), "--embedder", "hashing:8", "--chunk-size", "2", "--json")
        good = [line for line in lines if line.valid]
        bad = [n for n, line in enumerate(lines, start=1) if not line.valid]
        _clean(res, allowed=(0,) if good else (2,))
        rejects = Path(tmp) / "idx.rejects.jsonl"  # the default: beside the index
        if bad:
            assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == bad
            assert "rejected" in res.stderr and str(rejects) in " ".join(res.stderr.split())
        if good:
            assert json.loads(res.stdout)["added"] == len(good)
        strict = run("index", str(src), "--index-dir", str(Path(tmp) / "strict"), "--embedder", "hashing:8",
                     "--strict")
        _clean(strict, allowed=(2,) if bad else (0,))


@SETTINGS
@given(query=st.text(st.characters(categories=["L", "N", "P", "Z", "S", "Cs", "Cc"]), max_size=30))
def test_any_query_is_searched_or_refused_with_exit_2(query: str, small_index: Path) -> None:
    res = run("search", "--index-dir", str(small_index), "--reranker", "none", "--json", "--", query)
    encodable = not any("\ud800" <= c <= "\udfff" for c in query)
    if encodable and query.strip():
        _clean(res, allowed=(0,))
    else:
        _clean(res, allowed=(2,))
        assert ("UTF-8" in res.output) if not encodable else ("empty" in res.output)


def _numeric_options() -> list[tuple[str, str, str, type]]:
    """(command, parameter, flag, type) of every int/float option of the commands of this slice."""
    out = []
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        if name in {"serve"}:
            continue
        import inspect
        import typing

        hints = typing.get_type_hints(cmd.callback, include_extras=True)
        flags = _option_names(cmd.callback)
        for pname in inspect.signature(cmd.callback).parameters:
            hint = hints[pname]
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            kinds = {t for t in (typing.get_args(base) or (base,)) if t in (int, float)}
            if kinds and flags.get(pname, "").startswith("--"):
                out.append((name, pname, flags[pname], kinds.pop()))
    return out


NUMERIC = _numeric_options()
REQUIRED = {  # the least each command needs; the paths do not exist, so nothing heavy ever runs
    "index": ["/nonexistent/c.jsonl", "--index-dir", "/nonexistent/idx"],
    "search": ["q", "--index-dir", "/nonexistent/idx"],
    "rerank": ["--query", "q", "--docs", "/nonexistent/d.txt"],
    "eval": ["/nonexistent/ds"],
    "bench": ["--index-dir", "/nonexistent/idx"],
    "calibrate": ["--dataset", "/nonexistent/ds", "--reranker", "fake"],
    "train": ["--dataset", "/nonexistent/ds", "--out", "/nonexistent/out"],
    "distil": ["--teacher", "fake", "--queries", "/nonexistent/q.txt", "--out", "/nonexistent/out"],
    "shadow-report": ["/nonexistent/shadow.jsonl"],
}


def test_every_numeric_option_is_covered() -> None:
    assert {c for c, *_ in NUMERIC} >= {"index", "search", "eval", "bench", "calibrate", "train", "distil"}
    missing = [(c, p) for c, p, flag, _ in NUMERIC if p not in BOUNDS and flag not in BOUNDS and p != "seed"]
    assert not missing, f"numeric options without a declared range: {missing}"


@settings(max_examples=120, deadline=None)
@given(
    option=st.sampled_from(NUMERIC),
    value=st.one_of(
        st.integers(-3, 3), st.sampled_from([-1e9, 0.0, 0.5, 1.0, math.nan, math.inf, -math.inf]), st.floats()
    ),
)
def test_numeric_option_values_exit_0_or_2_with_the_option_named(option, value) -> None:
    command, pname, flag, kind = option
    text = str(int(value)) if kind is int and isinstance(value, int) else repr(float(value))
    if kind is int and not isinstance(value, int):
        text = str(value)  # not an integer: a usage error
    res = run(command, *REQUIRED[command], flag, text)
    _clean(res, allowed=(2,))  # the fake paths make every run end in an input error
    bounds = BOUNDS.get(flag, BOUNDS.get(pname))
    if bounds is not None and isinstance(value, int | float) and (kind is float or isinstance(value, int)):
        low, low_ok, high, high_ok = bounds
        v = float(value)
        out_of_range = not math.isfinite(v) or v < low or (v == low and not low_ok) or (
            high is not None and (v > high or (v == high and not high_ok))
        )
        if out_of_range:
            assert flag in res.output, res.output


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    corpus=sources(max_size=6),
    queries=st.binary(max_size=120),
    qrels=st.one_of(st.binary(max_size=80), st.just(b"q1\td0-\t1\n")),
)
def test_eval_on_a_generated_dataset_exits_0_or_2(corpus: list[Line], queries: bytes, qrels: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "ds"
        (ds / "qrels").mkdir(parents=True)
        write_source(ds / "corpus.jsonl", corpus)
        (ds / "queries.jsonl").write_bytes(queries)
        (ds / "qrels" / "test.tsv").write_bytes(qrels)
        res = run("eval", str(ds), "--embedder", "hashing-8", "--cache-dir", str(Path(tmp) / "cache"),
                  "--out", str(Path(tmp) / "out"), "--quiet", "--resamples", "10")
        _clean(res)


@SETTINGS
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".txt"]))
def test_rerank_docs_file_of_any_bytes_exits_0_or_2(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / f"d{suffix}"
        docs.write_bytes(content)
        _clean(run("rerank", "--query", "q", "--docs", str(docs), "--reranker", "fake", "--json"))


def test_truncated_gzip_says_what_was_committed(tmp_path: Path) -> None:
    full = gzip.compress(sample_data().read_bytes())
    src = tmp_path / "c.jsonl.gz"
    src.write_bytes(full[: len(full) // 2])
    res = run("index", str(src), "--index-dir", str(tmp_path / "idx"), "--embedder", "hashing:8", "--chunk-size", "5")
    _clean(res, allowed=(2,))
    assert "truncated" in res.output and "committed" in res.output and "rerun" in res.output


def test_a_path_that_is_not_an_index_is_refused_before_a_model_loads(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    res = run("index", str(sample_data()), "--index-dir", str(tmp_path), "--embedder", "no/such-model")
    _clean(res, allowed=(2,))
    assert "holds other files but no index" in res.output


def _cli(*args: bytes | str) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from rankfunnel.cli import main; sys.argv[0] = 'rankfunnel'; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, timeout=120)


def test_undecodable_argv_and_usage_errors_are_one_line(small_index: Path) -> None:
    bad = _cli("search", b"caf\xe9", "--index-dir", str(small_index), "--reranker", "none")
    assert bad.returncode == 2 and b"QUERY" in bad.stderr and b"UTF-8" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    usage = _cli("search", "q", "--index-dir", str(small_index), "--top-k", "many")
    assert usage.returncode == 2 and b"--top-k" in usage.stderr
    assert len(usage.stderr.strip().splitlines()) == 1, usage.stderr
    debug = subprocess.run(
        [sys.executable, "-c", "import sys; from rankfunnel.cli import main; main()", "search", "q", "--index-dir",
         "/nonexistent"],
        capture_output=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RANKFUNNEL_DEBUG": "1"},
        timeout=120,
    )
    assert debug.returncode == 2 and b"Traceback" in debug.stderr
