"""Atomic writes: a writer killed at any point leaves exactly the old or exactly the new documents."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storage_helpers import corpus

from rankfunnel.collection import LocalCollection
from rankfunnel.embed import HashingEmbedder

WRITER = Path(__file__).with_name("storage_writer.py")
BASE = {f"base{i}" for i in range(50)}
N_NEW = 3000
NEW = BASE | {f"new{i}" for i in range(N_NEW)}


def _start(path: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(WRITER), str(path), mode, str(N_NEW)]
    # stderr goes to a file, so that a chatty child never blocks on a full pipe
    with open(path.with_name(path.name + ".stderr"), "w") as err:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = Path(proc.args[2] + ".stderr").read_text()[-3000:]
            raise AssertionError(f"writer exited before {marker}: {err}")
        if line.strip() == marker:
            return
    raise AssertionError(f"no {marker} within {timeout}s")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _check_consistent(path: Path) -> set[str]:
    col = LocalCollection.open(path, HashingEmbedder(16))
    ids = set(col.ids())
    assert ids in (BASE, NEW), f"partial state: {len(ids)} documents"
    assert col.info()["vectors"] == len(ids)
    dense = col.search("apple orchard harvest", k=len(ids) + 5)
    assert {h.id for h in dense} == ids
    lexical = col.search("orchard", k=10_000, retriever="bm25")
    number = {i: int(i.removeprefix("base").removeprefix("new")) for i in ids}
    assert {h.id for h in lexical} == {i for i in ids if number[i] % 5 == 0}
    assert col.search("apple", k=5, retriever="hybrid")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["faiss_generation"] == manifest["generation"] == col.info()["generation"]
    assert not list(path.glob(".*.tmp-*"))  # crashed writers' temp files are cleaned up
    col.add([corpus(1, prefix="after")[0]])  # and the directory takes writes again
    col.close()
    return ids


def test_killed_writer_at_each_stage_and_on_timers(tmp_path):
    stalls = {"in-transaction": BASE, "after-commit": NEW, "manifest": NEW}
    timers = [0.05, 0.3]  # lands anywhere in embedding, the transaction or the file swaps
    procs = {}
    for mode in stalls:
        procs[mode] = _start(tmp_path / mode, mode)
    for t in timers:
        procs[f"plain-{t}"] = _start(tmp_path / f"plain-{t}", "plain")
    try:
        for mode in stalls:
            _wait_for(procs[mode], "READY")
            _wait_for(procs[mode], "STALL")
            _kill(procs[mode])
        for t in timers:
            proc = procs[f"plain-{t}"]
            _wait_for(proc, "READY")
            time.sleep(t)
            _kill(proc)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                _kill(proc)
    for mode, expected in stalls.items():
        assert _check_consistent(tmp_path / mode) == expected, mode
    for t in timers:
        _check_consistent(tmp_path / f"plain-{t}")


def _committed(tmp_path: Path) -> Path:
    path = tmp_path / "idx"
    col = LocalCollection.create(path, HashingEmbedder(16))
    col.add(corpus(40))
    col.search("apple", retriever="bm25")
    col.close()
    return path


@pytest.mark.parametrize("damage", ["stale-faiss", "missing-faiss", "garbage-faiss", "missing-manifest",
                                    "stale-bm25", "garbage-bm25", "foreign-faiss"])
def test_derived_files_are_rebuilt_from_the_store(tmp_path, damage):
    path = _committed(tmp_path)
    ref = LocalCollection.open(path)
    want = {r: [(h.id, h.score) for h in ref.search("python list error", k=10, retriever=r)]
            for r in ("dense", "bm25", "hybrid")}
    ref.close()
    snapshot = tmp_path / "snap"
    if damage in ("stale-faiss", "stale-bm25"):  # keep gen-1 files, commit gen 2, put gen-1 files back
        shutil.copytree(path, snapshot)
        col = LocalCollection.open(path)
        col.delete(["d1"])
        col.search("apple", retriever="bm25")
        col.close()
        if damage == "stale-faiss":
            shutil.copy(snapshot / "vectors.faiss", path / "vectors.faiss")
        else:
            shutil.rmtree(path / "bm25")
            shutil.copytree(snapshot / "bm25", path / "bm25")
    elif damage == "missing-faiss":
        (path / "vectors.faiss").unlink()
    elif damage == "garbage-faiss":
        (path / "vectors.faiss").write_bytes(b"\0garbage" * 50)
    elif damage == "missing-manifest":
        (path / "manifest.json").unlink()
    elif damage == "garbage-bm25":
        (path / "bm25" / "keys.npy").write_bytes(b"junk")
    elif damage == "foreign-faiss":
        other = LocalCollection.create(tmp_path / "other", HashingEmbedder(16))
        other.add(corpus(5, prefix="zz"))
        other.close()
        shutil.copy(tmp_path / "other" / "vectors.faiss", path / "vectors.faiss")
    col = LocalCollection.open(path)
    query = "river bridge engineering" if damage.startswith("stale") else "python list error"
    got = {r: [(h.id, h.score) for h in col.search(query, k=10, retriever=r)]
           for r in ("dense", "bm25", "hybrid")}
    if damage.startswith("stale"):
        assert len(col) == 39 and all(i != "d1" for run in got.values() for i, _ in run)
        assert len(got["bm25"]) == 7  # d6, d11, ... d36 are still found
        assert col.info()["vectors"] == 39
    else:
        assert got == want
