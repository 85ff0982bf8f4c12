"""Class 6 of issue 14: opening an index never deletes a live writer's temporary files.

Several processes create / open the same directory at once and each adds documents; each must finish without
"Could not write index files", and the index must hold every document afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WRITER = r"""
import sys
from rankfunnel.collection import LocalCollection
from rankfunnel.embed import HashingEmbedder
from rankfunnel.types import Document
n = int(sys.argv[2])
col = LocalCollection.create(sys.argv[1], HashingEmbedder(8), exist_ok=True)
for round_ in range(5):
    col.add([Document(id=f"p{n}-{round_}-{i}", text=f"writer {n} round {round_} doc {i}") for i in range(20)])
col.close()
"""


def test_racing_creates_keep_every_writers_files(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(6)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "Could not write" not in err, err
    from rankfunnel.collection import LocalCollection

    col = LocalCollection.open(target)
    assert len(col) == 6 * 5 * 20
    assert len(col.search("writer 3 round 4", k=600)) == 600
    assert not list(target.glob(".*.tmp-*"))
    col.close()
