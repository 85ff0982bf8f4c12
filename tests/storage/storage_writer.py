"""A writer process for the atomicity tests: ``python storage_writer.py DIR MODE N``.

It builds a committed base state (50 documents, BM25 saved), prints READY, then adds N documents. MODE picks
where it stalls so that the parent can SIGKILL it there: ``plain`` (nowhere: the parent kills on a timer),
``in-transaction`` (rows inserted, not committed), ``after-commit`` (committed, Faiss not yet written),
``manifest`` (Faiss written, manifest not yet swapped in).
The stalls are monkeypatches in this process only; the library has no test hooks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from storage_helpers import corpus  # noqa: E402

from rankfunnel.collection import (
    local_files,  # noqa: E402
    open_collection,  # noqa: E402
)
from rankfunnel.embed import HashingEmbedder  # noqa: E402
from rankfunnel.index import faiss as faiss_mod  # noqa: E402
from rankfunnel.store import DocStore  # noqa: E402


def stall(marker: str):
    def _stall(*args, **kwargs):
        print(marker, flush=True)
        time.sleep(60)
    return _stall


def main() -> None:
    path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    col = open_collection(path, embedder=HashingEmbedder(16), create=True)
    col.add(corpus(50, prefix="base"))
    col.search("apple", retriever="bm25")
    print("READY", flush=True)
    if mode == "in-transaction":
        DocStore.bump_generation = stall("STALL")  # type: ignore[method-assign]
    elif mode == "after-commit":
        faiss_mod.FaissIndex.save = stall("STALL")  # type: ignore[method-assign]
    elif mode == "manifest":
        local_files.write_json_atomic = stall("STALL")
    col.add(corpus(n, prefix="new"))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
