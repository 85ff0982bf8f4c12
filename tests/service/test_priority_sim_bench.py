"""bench/priority_sim.py (the scheduler without HTTP) runs end to end, and its paired design holds: the alone
run sends exactly the high requests of the mixed schedule."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))


def test_alone_run_is_the_high_part_of_the_same_schedule() -> None:
    import priority_sim

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[tuple[int, tuple[str, str]]] = []

        async def predict(self, pairs, *, timeout_s=None, priority=1):
            self.sent.append((priority, pairs[0]))
            return None

    reqs = [[(f"q{i}", "d")] for i in range(20)]
    mix = {"high": 0.3, "normal": 0.3, "low": 0.4}
    full, alone = Recorder(), Recorder()
    asyncio.run(priority_sim.level(full, reqs, 200.0, mix, 0.2, seed=5))
    asyncio.run(priority_sim.level(alone, reqs, 200.0, mix, 0.2, seed=5, only="high"))
    assert alone.sent and all(p == 0 for p, _ in alone.sent)
    assert alone.sent == [x for x in full.sent if x[0] == 0]


def test_script_reports_a_pooled_ratio(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "priority_sim.py"), "--model", "sleep", "--repeats", "2",
         "--duration", "2", "--capacity-seconds", "1", "--overhead-ms", "2", "--per-pair-ms", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    pool = report["pooled"]
    lo, hi = pool["ratio_ci95"]
    assert pool["repeats"] == 2 and pool["ratio"] > 0 and 0 < lo <= hi
    assert "pooled over 2 repeats" in proc.stdout
