"""Priority classes without HTTP: the batcher's scheduling alone, at 2x capacity, against the same high traffic alone.

`bench/loadtest.py --priority-mix` measures the whole service on loopback; on a small machine the load
generator, the HTTP handling and the model share the cores, so the urgent class's latency also carries CPU
contention that no scheduling can remove. This script takes that out: requests go straight into one
:class:`~rankfunnel.service.batcher.MicroBatcher` (the service's settings: ``max_queue_wait_ms="auto"``,
queue shares high 1 / normal 1 / low 0.5, the 10 s deadline, ``preempt_ms``, ``promote_after_ms``), in the
same process, with Poisson arrivals. Two models:

- ``sleep``: a model that sleeps ``--overhead-ms + --per-pair-ms * pairs`` per call (defaults measured for the
  MiniLM-L6 cross-encoder on one CPU thread: 8 ms + 6 ms/pair) and uses no CPU, so the numbers are the
  scheduling policy's alone;
- ``minilm``: the real MiniLM-L6 cross-encoder shape (random head, `rankfunnel.testing`), one torch thread.

Capacity is measured closed-loop (``--clients`` concurrent requests) as in the load test. Then, ``--repeats``
times, alternating: the high requests of the ``--level`` x capacity schedule sent alone (the same requests at
the same times: its "unloaded" p95), and the full mix of that schedule. Prints per-repeat and pooled p95
ratios (bootstrap 95% interval).

Run::

    .venv/bin/python bench/priority_sim.py --model sleep --repeats 5 --duration 60
    .venv/bin/python bench/priority_sim.py --model sleep --repeats 5 --duration 60 --preempt-ms 0  # no slices
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadtest import CLASS_PRIORITY, _texts, parse_mix, pooled_ratio  # noqa: E402


class SleepModel:
    """Sleeps like a model that costs ``overhead + per_pair * n`` per call; no CPU."""

    name = "sleep"

    def __init__(self, overhead_s: float, per_pair_s: float) -> None:
        self.overhead_s, self.per_pair_s = overhead_s, per_pair_s

    def predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        time.sleep(self.overhead_s + self.per_pair_s * len(pairs))
        return np.zeros(len(pairs), dtype=np.float32)


def make_model(args: argparse.Namespace) -> Any:
    if args.model == "sleep":
        return SleepModel(args.overhead_ms / 1e3, args.per_pair_ms / 1e3)
    import torch

    from rankfunnel.rerank import load_reranker
    from rankfunnel.testing import build_minilm_cross_encoder

    torch.set_num_threads(1)
    return load_reranker(str(build_minilm_cross_encoder(ROOT / ".cache" / "minilm-ce")), device="cpu")


def make_batcher(model: Any, args: argparse.Namespace) -> Any:
    """The service's batcher (`rankfunnel serve` defaults) with this run's --preempt-ms / --promote-after-ms."""
    from rankfunnel.service import ServiceConfig
    from rankfunnel.service.engine import batcher_for

    cfg = ServiceConfig(preempt_ms=args.preempt_ms or None, promote_after_ms=args.promote_after_ms or None)
    return batcher_for(model, cfg)


async def one(b: Any, pairs: list[tuple[str, str]], priority: int, deadline_s: float) -> tuple[str, float]:
    from rankfunnel.errors import OverloadedError

    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(b.predict(pairs, timeout_s=deadline_s, priority=priority), deadline_s)
    except OverloadedError:
        return "429", time.perf_counter() - t0
    except TimeoutError:
        return "deadline", time.perf_counter() - t0
    return "ok", time.perf_counter() - t0


async def capacity(b: Any, reqs: list[list[tuple[str, str]]], clients: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds
    rng = random.Random(1)

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            status, _ = await one(b, rng.choice(reqs), 1, 10.0)
            done += status == "ok"

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(clients)])
    return done / (time.perf_counter() - t0)


async def level(b: Any, reqs: list[list[tuple[str, str]]], rate: float, mix: dict[str, float], duration: float,
                seed: int, only: str | None = None) -> dict[str, Any]:
    """Poisson arrivals of the ``mix`` at ``rate``; ``only``: the same schedule, that class's requests alone."""
    rng = random.Random(seed)
    n = max(1, int(rate * duration))
    classes = rng.choices(list(mix), weights=list(mix.values()), k=n)
    schedule = [(t, cls, rng.choice(reqs)) for t, cls in zip(
        itertools.accumulate(rng.expovariate(rate) for _ in classes), classes, strict=True)]
    schedule = [x for x in schedule if only is None or x[1] == only]
    classes = [cls for _, cls, _ in schedule]
    tasks = []
    start = time.perf_counter()
    for t, cls, pairs in schedule:
        delay = start + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(b, pairs, CLASS_PRIORITY[cls], 10.0)))
    out = await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    stats: dict[str, Any] = {"rate": rate, "goodput_rps": sum(s == "ok" for s, _ in out) / wall, "classes": {}}
    for cls in dict.fromkeys(classes):
        rows = [o for o, c in zip(out, classes, strict=True) if c == cls]
        ok = [lat * 1e3 for s, lat in rows if s == "ok"]
        stats["classes"][cls] = {
            "requests": len(rows), "ok": len(ok), "429": sum(s == "429" for s, _ in rows),
            "deadline": sum(s == "deadline" for s, _ in rows),
            "p50_ms": float(np.percentile(ok, 50)) if ok else float("nan"),
            "p95_ms": float(np.percentile(ok, 95)) if ok else float("nan"),
            "latencies_ms": ok,
        }
    return stats


async def run(args: argparse.Namespace) -> dict[str, Any]:
    mix = parse_mix(args.mix)
    queries, docs = _texts(64, max(args.docs * 4, 400), args.doc_chars)
    rng = random.Random(0)
    reqs = [[(q, d) for d in rng.sample(docs, args.docs)] for q in rng.choices(queries, k=64)]
    model = make_model(args)
    report: dict[str, Any] = {"repeats": []}
    async with make_batcher(model, args) as b:
        await b.predict(reqs[0])  # warm-up (and a first throughput measurement)
        cap = await capacity(b, reqs, args.clients, args.capacity_seconds)
        report["capacity_rps"] = cap
        print(f"capacity {cap:.2f} requests/s ({args.model}, {args.docs} pairs each)", flush=True)
        alone_ms, loaded_ms = [], []
        for r in range(args.repeats):
            # the high requests of the mixed run below, at the same times, sent alone: a paired comparison
            alone = await level(b, reqs, cap * args.level, mix, args.duration, 2 + r, only="high")
            await asyncio.sleep(1.0)  # let the queue drain between runs
            mixed = await level(b, reqs, cap * args.level, mix, args.duration, 2 + r)
            await asyncio.sleep(1.0)
            alone_ms.append(alone["classes"]["high"]["latencies_ms"])
            loaded_ms.append(mixed["classes"]["high"]["latencies_ms"])
            report["repeats"].append({"alone": alone, "mixed": mixed})
            h, a = mixed["classes"]["high"], alone["classes"]["high"]
            others = ", ".join(f"{c} {s['ok']}/{s['requests']} ok {s['429']} x 429 {s['deadline']} late "
                               f"p50 {s['p50_ms']:.0f}" for c, s in mixed["classes"].items() if c != "high")
            print(f"#{r + 1}: high alone p50/p95 {a['p50_ms']:.0f}/{a['p95_ms']:.0f} ms; at {args.level:g}x "
                  f"{h['p50_ms']:.0f}/{h['p95_ms']:.0f} ms ({h['429']} x 429, {h['deadline']} late); {others}; "
                  f"goodput {mixed['goodput_rps']:.1f} rps", flush=True)
        report["promoted"] = b.promoted
    pool = pooled_ratio(alone_ms, loaded_ms)
    report["pooled"] = pool
    lo, hi = pool["ratio_ci95"]
    print(f"pooled over {pool['repeats']} repeats: high p95 alone {pool['alone_p95_ms']:.0f} ms, at "
          f"{args.level:g}x {pool['loaded_p95_ms']:.0f} ms: ratio {pool['ratio']:.2f} [95% {lo:.2f}-{hi:.2f}]; "
          f"per repeat {', '.join(f'{x:.2f}' for x in pool['per_repeat'])}; {report['promoted']} promoted (ageing)")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["sleep", "minilm"], default="sleep")
    p.add_argument("--overhead-ms", type=float, default=8.0, help="sleep model: cost of a call")
    p.add_argument("--per-pair-ms", type=float, default=6.0, help="sleep model: cost per pair")
    p.add_argument("--docs", type=int, default=20, help="pairs per request")
    p.add_argument("--doc-chars", type=int, default=128)
    p.add_argument("--mix", default="high:0.2,normal:0.3,low:0.5")
    p.add_argument("--level", type=float, default=2.0, help="load as a multiple of the measured capacity")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients for the capacity")
    p.add_argument("--capacity-seconds", type=float, default=15.0)
    p.add_argument("--preempt-ms", type=float, default=50.0, help="0: no slices")
    p.add_argument("--promote-after-ms", type=float, default=5000.0, help="0: no ageing")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "priority_sim.json")
    args = p.parse_args(argv)
    if "high" not in parse_mix(args.mix):
        print("error: --mix needs a high class", file=sys.stderr)
        return 2
    out = args.out
    report = asyncio.run(run(args))
    out.parent.mkdir(parents=True, exist_ok=True)
    report["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out.write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
