"""Load test of `rankfunnel serve` on loopback (`make loadtest`): bounded in count and time, stops by itself.

For each model (the fake reranker, and a real local MiniLM-L6 cross-encoder built offline):

1. batching: 32 concurrent clients, each one query + 50 documents, against one offline batched
   ``predict`` over the same pairs (same model, same torch threads); also checks the scores agree.
2. capacity: closed-loop throughput (requests/s) with ``--capacity-clients`` clients.
3. load levels: open-loop Poisson arrivals at 1x, 2x and 4x the measured capacity for ``--duration`` s each;
   throughput, p50/p95/p99 of accepted requests, and 429 counts. By default the server of this step runs
   with DEFAULT settings (only ``--cache-size 0`` so that repeated pairs are scored, not looked up): the
   promise checked is that accepted requests' p95 stays within the default deadline at 4x and the excess
   gets 429 + Retry-After. ``--tuned`` instead bounds the queue by hand (``--max-queue-wait-ms``,
   ``--max-inflight``). Real models get longer levels (``--real-duration``): a request takes seconds on a CPU.

``--priority-mix high:0.2,normal:0.3,low:0.5`` sends each request of step 3 with a Cohere ``priority``
(0 high, 1 normal, 2 low) drawn from the mix and reports, per load level, each class's p95 and 429s, and
``high_p95_ratio_vs_alone`` = high's p95 at the highest level over its p95 when the same high requests are sent
alone (its "unloaded" p95: the high requests of that level's schedule at the same times, nothing else; with
``--priority-repeats N`` pooled over N alternating pairs of runs), and ``high_p95_ratio`` = over its p95 at the lowest
level (e.g. ``--levels 0.3 2``). The issue asks for at most 1.2 at 2x capacity, with the low class absorbing
the 429s.

The server runs in a subprocess (``rankfunnel serve`` on 127.0.0.1, a free port) so that the load generator
does not share its interpreter. Results: a table on stdout and JSON in ``out/loadtest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loadclient import REQUEST_TIMEOUT_S, RawClient, _post_raw

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _texts(n_queries: int, n_docs: int, doc_chars: int) -> tuple[list[str], list[str]]:
    """Queries and documents from SciFact when present (truncated to ``doc_chars``), else synthetic text."""
    if (SCIFACT / "corpus.jsonl").is_file():
        docs, queries = [], []
        with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                docs.append(f"{row.get('title', '')}\n{row['text']}"[:doc_chars])
                if len(docs) >= n_docs:
                    break
        with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                queries.append(json.loads(line)["text"])
                if len(queries) >= n_queries:
                    break
        return queries, docs
    rng = random.Random(0)
    words = ["cell", "gene", "protein", "cancer", "risk", "patient", "study", "effect", "dose", "trial"]
    queries = [" ".join(rng.choices(words, k=8)) for _ in range(n_queries)]
    docs = [" ".join(rng.choices(words, k=doc_chars // 6))[:doc_chars] for _ in range(n_docs)]
    return queries, docs


class Server:
    """`rankfunnel serve` in a subprocess on a free loopback port; always stopped on exit."""

    def __init__(
        self,
        spec: str,
        args: argparse.Namespace,
        *,
        queue_wait_ms: float | None,
        log: Path,
        defaults: bool = False,
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-c",
            "from rankfunnel.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--reranker",
            spec,
            "--device",
            "cpu",
            "--cache-size",
            "0",
            "--log-level",
            "warning",
        ]
        cmd += list(args.serve_arg or [])  # extra `serve` options given on purpose (e.g. --preempt-ms 10)
        if not defaults:  # hand-set knobs; the default-settings server gets none of them
            cmd += ["--max-wait-ms", str(args.max_wait_ms), "--max-inflight", str(args.max_inflight)]
            cmd += ["--max-queue-pairs", "100000", "--deadline-ms", "120000"]
            cmd += ["--max-queue-wait-ms", str(queue_wait_ms) if queue_wait_ms is not None else "off"]
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(args.threads),
            MKL_NUM_THREADS=str(args.threads),
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
        )
        self.log = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not become ready in 180 s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _post(client: httpx.AsyncClient, query: str, docs: list[str]) -> tuple[int, float, Any]:
    t0 = time.perf_counter()
    try:
        r = await client.post("/v2/rerank", json={"query": query, "documents": docs})
    except httpx.HTTPError:
        return 599, time.perf_counter() - t0, None
    return r.status_code, time.perf_counter() - t0, r.json() if r.status_code == 200 else None


def _client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        timeout=REQUEST_TIMEOUT_S,
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
    )


async def batching(
    base: str, spec: str, queries: list[str], docs: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """32 clients x (1 query + 50 documents) served, against one offline batched predict on the same pairs."""
    import torch

    from rankfunnel.rerank import load_reranker

    torch.set_num_threads(args.threads)  # the server gets OMP_NUM_THREADS=args.threads

    n, k = args.clients, args.docs
    reqs = [(queries[i % len(queries)], [docs[(i * k + j) % len(docs)] for j in range(k)]) for i in range(n)]
    pairs = [(q, d) for q, ds in reqs for d in ds]
    model = load_reranker(spec, device="cpu")
    assert model is not None
    model.predict(pairs[:64])  # warm-up
    offline: list[float] = []
    served: list[float] = []
    max_diff = 0.0
    async with _client(base) as client:
        await _post(client, *reqs[0])  # warm-up
        for _ in range(args.repeats):  # interleaved, so both sides see the same background load
            t0 = time.perf_counter()
            ref = model.predict(pairs)
            offline.append(len(pairs) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            out = await asyncio.gather(*[_post(client, q, ds) for q, ds in reqs])
            served.append(len(pairs) / (time.perf_counter() - t0))
            assert all(s == 200 for s, _, _ in out), [s for s, _, _ in out]
            for i, (_, _, body) in enumerate(out):
                got = {r["index"]: r["relevance_score"] for r in body["results"]}
                want = model.normalise(np.asarray(ref[i * k : (i + 1) * k]))
                max_diff = max(max_diff, max(abs(got[j] - float(want[j])) for j in range(k)))
    # Rounds are interleaved, so the paired ratio of one round cancels most of the background-load drift;
    # the headline is the median paired ratio (best-vs-best is kept too).
    paired = [srv / off for srv, off in zip(served, offline, strict=True)]
    return {
        "pairs": len(pairs),
        "offline_pairs_per_s": float(np.median(offline)),
        "served_pairs_per_s": float(np.median(served)),
        "ratio": float(np.median(paired)),
        "paired_ratios": paired,
        "best_ratio": max(served) / max(offline),
        "max_score_diff": max_diff,
        "offline_runs": offline,
        "served_runs": served,
    }


async def capacity(
    base: str, queries: list[str], docs: list[str], args: argparse.Namespace, seconds: float
) -> float:
    """Closed-loop requests/s with ``capacity_clients`` clients for ``seconds``."""
    done = 0
    stop_at = time.perf_counter() + seconds
    rng = random.Random(1)
    bodies = [
        json.dumps({"query": rng.choice(queries), "documents": rng.sample(docs, args.docs)}).encode()
        for _ in range(64)
    ]

    async def worker(client: RawClient) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            status, _, _ = await _post_raw(client, rng.choice(bodies))
            done += status == 200

    client = await RawClient(base, max(args.capacity_clients, 1)).connect()
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(args.capacity_clients)])
        return done / (time.perf_counter() - t0)
    finally:
        await client.aclose()


CLASS_PRIORITY = {"high": 0, "normal": 1, "low": 2}


def parse_mix(text: str) -> dict[str, float]:
    """``high:0.2,normal:0.3,low:0.5`` -> class weights (normalised to sum 1)."""
    mix: dict[str, float] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        name, _, weight = part.partition(":")
        if name not in CLASS_PRIORITY:
            raise SystemExit(f"--priority-mix: unknown class {name!r}; use high, normal, low (e.g. high:0.2,low:0.8)")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise SystemExit(f"--priority-mix: weight of {name!r} must be a number, got {weight!r}") from None
    total = sum(mix.values())
    if not mix or total <= 0 or any(w < 0 for w in mix.values()):
        raise SystemExit("--priority-mix needs non-negative weights with a positive sum, e.g. high:0.2,low:0.8")
    return {k: v / total for k, v in mix.items()}


def _class_stats(out: list[tuple[int, float, float]], classes: list[str]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for cls in dict.fromkeys(classes):
        rows = [o for o, c in zip(out, classes, strict=True) if c == cls]
        ok = [lat for s, lat, _ in rows if s == 200]
        stats[cls] = {
            "requests": len(rows),
            "ok": len(ok),
            "rejected_429": sum(s == 429 for s, _, _ in rows),
            "p50_ms": float(np.percentile(ok, 50) * 1e3) if ok else float("nan"),
            "p95_ms": float(np.percentile(ok, 95) * 1e3) if ok else float("nan"),
            "latencies_ms": [round(lat * 1e3, 2) for lat in ok],  # for pooling repeats (--priority-repeats)
        }
    return stats


def pooled_ratio(alone: list[list[float]], loaded: list[list[float]], seed: int = 0) -> dict[str, Any]:
    """p95 of the pooled loaded latencies over p95 of the pooled alone ones, with a bootstrap 95% interval.

    Each pool is resampled with replacement (2,000 times) and the ratio of the two p95s taken; the interval is
    the 2.5th-97.5th percentile of those ratios. Also the median of the per-repeat ratios.
    """
    a = np.concatenate([np.asarray(x, dtype=float) for x in alone])
    b = np.concatenate([np.asarray(x, dtype=float) for x in loaded])
    rng = np.random.default_rng(seed)
    boots = [
        np.percentile(rng.choice(b, b.size), 95) / np.percentile(rng.choice(a, a.size), 95) for _ in range(2000)
    ]
    per = [np.percentile(y, 95) / np.percentile(x, 95) for x, y in zip(alone, loaded, strict=True) if x and y]
    return {
        "repeats": len(alone),
        "alone_n": int(a.size),
        "loaded_n": int(b.size),
        "alone_p50_ms": float(np.percentile(a, 50)),
        "alone_p95_ms": float(np.percentile(a, 95)),
        "loaded_p50_ms": float(np.percentile(b, 50)),
        "loaded_p95_ms": float(np.percentile(b, 95)),
        "ratio": float(np.percentile(b, 95) / np.percentile(a, 95)),
        "ratio_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "per_repeat": [float(x) for x in per],
        "median_of_repeats": float(np.median(per)) if per else float("nan"),
    }


async def level(
    base: str,
    rate: float,
    queries: list[str],
    docs: list[str],
    args: argparse.Namespace,
    duration: float,
    mix: dict[str, float] | None = None,
    seed: int = 2,
    only: str | None = None,
) -> dict[str, Any]:
    """Open-loop Poisson arrivals at ``rate`` requests/s for ``duration`` s (at most ``max_requests``).

    ``mix`` (class -> share; default ``--priority-mix``) sends each request with a Cohere ``priority``.
    ``only``: send only that class's requests of the same schedule (same seed: the same requests at the same
    times), e.g. the high class alone, so that a comparison with the full mix is paired request by request.
    """
    rng = random.Random(seed)
    n = max(1, min(args.max_requests, int(rate * duration)))
    if mix is None and args.priority_mix:
        mix = parse_mix(args.priority_mix)
    classes = rng.choices(list(mix), weights=list(mix.values()), k=n) if mix else ["all"] * n
    bodies = []
    for cls in classes:
        req: dict[str, Any] = {"query": rng.choice(queries), "documents": rng.sample(docs, args.docs)}
        if mix:
            req["priority"] = CLASS_PRIORITY[cls]
        bodies.append(json.dumps(req).encode())
    offsets = list(itertools.accumulate(rng.expovariate(rate) for _ in bodies))
    keep = [i for i, cls in enumerate(classes) if only is None or cls == only]
    classes = [classes[i] for i in keep]
    n = len(keep)
    client = await RawClient(base, args.connections).connect()
    try:
        tasks = []
        t0 = time.perf_counter()
        for i in keep:
            delay = t0 + offsets[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post_raw(client, bodies[i])))
        sent_s = time.perf_counter() - t0
        out = await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    finally:
        await client.aclose()
    ok = [lat for s, lat, _ in out if s == 200]
    ok_server = [srv for s, _, srv in out if s == 200]
    pct = np.percentile(ok, [50, 95, 99]) * 1e3 if ok else [float("nan")] * 3
    spct = np.nanpercentile(ok_server, [50, 95]) * 1e3 if ok_server else [float("nan")] * 2
    return {
        "target_rps": rate,
        "offered_rps": n / sent_s if sent_s > 0 else float("inf"),
        "requests": n,
        "ok": len(ok),
        "rejected_429": sum(s == 429 for s, _, _ in out),
        "other_errors": sum(s not in (200, 429) for s, _, _ in out),
        "other_statuses": {str(k): v for k, v in Counter(s for s, _, _ in out if s not in (200, 429)).items()},
        "throughput_rps": len(ok) / wall,
        "p50_ms": float(pct[0]),
        "p95_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "server_p50_ms": float(spct[0]),
        "server_p95_ms": float(spct[1]),
        **({"classes": _class_stats(out, classes)} if mix else {}),
    }


def run_model(name: str, args: argparse.Namespace, queries: list[str], docs: list[str]) -> dict[str, Any]:
    if name == "fake":
        spec = "fake"
    elif name == "minilm":
        from rankfunnel.testing import build_minilm_cross_encoder

        spec = str(build_minilm_cross_encoder(ROOT / ".cache" / "minilm-ce"))
    else:
        spec = name
    res: dict[str, Any] = {"spec": spec}
    logs = ROOT / "out"
    real = name != "fake"
    duration = args.real_duration if real else args.duration
    # Server 1 (queue bounded only by size): the batching comparison and the closed-loop capacity.
    with Server(spec, args, queue_wait_ms=None, log=logs / f"loadtest-{name}-batching.log") as srv:
        if not args.skip_batching:
            res["batching"] = asyncio.run(batching(srv.base, spec, queries, docs, args))
            print(f"[{name}] batching: {json.dumps(res['batching'], default=float)}", flush=True)
        if args.only_batching:
            return res
        cap = asyncio.run(
            capacity(
                srv.base, queries, docs, args, args.real_capacity_seconds if real else args.capacity_seconds
            )
        )
    res["capacity_rps"] = cap
    print(f"[{name}] capacity: {cap:.2f} requests/s", flush=True)
    # Server 2: default settings (the promise), or --tuned: queue bounded by hand to 4 request service times.
    wait_ms = args.max_queue_wait_ms or max(1000.0, 4000.0 / cap)
    res["settings"] = "tuned" if args.tuned else "default"
    res["max_queue_wait_ms"] = wait_ms if args.tuned else "auto"
    res["deadline_ms"] = 120_000.0 if args.tuned else _default_deadline_ms()
    res["levels"] = []
    with Server(
        spec, args, queue_wait_ms=wait_ms, log=logs / f"loadtest-{name}.log", defaults=not args.tuned
    ) as srv:
        mix = parse_mix(args.priority_mix) if args.priority_mix else None
        top = max(args.levels)
        paired = bool(mix and mix.get("high"))
        # with a priority mix: the highest level is run `--priority-repeats` times, each right after the same
        # high traffic sent alone (its "unloaded" p95), alternating, so that drift of a shared machine hits both
        repeats = max(1, args.priority_repeats) if paired else 1
        for mult in [m for m in args.levels if m != top] if paired else []:
            res["levels"].append(_level_row(srv.base, cap, mult, queries, docs, args, duration, res, name))
        alone_ms: list[list[float]] = []
        loaded_ms: list[list[float]] = []
        for r in range(repeats):
            if paired:
                assert mix is not None
                label = f"high alone ({top:g}x x {mix['high']:g})" + (f" #{r + 1}" if repeats > 1 else "")
                row = _level_row(  # the high requests of the loaded run below, at the same times, alone
                    srv.base, cap, top, queries, docs, args, duration, res, name, seed=2 + r, only="high", label=label
                )
                res.setdefault("high_alone", row)
                if r:
                    res.setdefault("repeat_rows", []).append(row)
                alone_ms.append(row["classes"]["high"]["latencies_ms"])
            for mult in [top] if paired else args.levels:
                row = _level_row(srv.base, cap, mult, queries, docs, args, duration, res, name, seed=2 + r,
                                 label=f"{mult:g}x" + (f" #{r + 1}" if r else ""))
                if r == 0:
                    res["levels"].append(row)
                else:
                    res.setdefault("repeat_rows", []).append(row)
                if paired:
                    loaded_ms.append(row["classes"]["high"]["latencies_ms"] if "high" in row["classes"] else [])
    if mix and res["levels"]:
        hi = res["levels"][-1]["classes"].get("high")
        lo = res["levels"][0]["classes"].get("high") if len(res["levels"]) > 1 else None
        alone = res.get("high_alone", {}).get("classes", {}).get("high")
        if hi and hi["ok"] and lo and lo["ok"]:
            res["high_p95_ratio"] = hi["p95_ms"] / lo["p95_ms"]
        if hi and hi["ok"] and alone and alone["ok"]:
            res["high_p95_ratio_vs_alone"] = hi["p95_ms"] / alone["p95_ms"]
        if repeats > 1 and all(alone_ms) and all(loaded_ms):
            res["high_p95_pooled"] = pooled_ratio(alone_ms, loaded_ms)
    return res


def _brief(row: dict[str, Any]) -> str:
    """The row as JSON without the raw latencies."""
    classes = {c: {k: v for k, v in st.items() if k != "latencies_ms"} for c, st in row.get("classes", {}).items()}
    return json.dumps({**row, **({"classes": classes} if classes else {})})


def _level_row(
    base: str,
    cap: float,
    mult: float,
    queries: list[str],
    docs: list[str],
    args: argparse.Namespace,
    duration: float,
    res: dict[str, Any],
    name: str,
    seed: int = 2,
    only: str | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """One load level at ``mult`` x capacity (``only``: that class's requests of its schedule), labelled."""
    row = asyncio.run(level(base, cap * mult, queries, docs, args, duration, seed=seed, only=only))
    row["load"] = label or f"{mult:g}x"
    row["p95_within_deadline"] = bool(row["p95_ms"] <= res["deadline_ms"]) if row["ok"] else None
    print(f"[{name}] {_brief(row)}", flush=True)
    return row


def _default_deadline_ms() -> float:
    from rankfunnel.service import ServiceConfig

    return float(ServiceConfig().deadline_ms)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", default="fake,minilm", help="Comma-separated: fake, minilm, or a reranker spec."
    )
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--docs", type=int, default=50, help="Documents per request.")
    p.add_argument("--doc-chars", type=int, default=128, help="Characters per document (SciFact, truncated).")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (server and offline baseline); 1 is fastest on a busy machine.",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--capacity-clients", type=int, default=8)
    p.add_argument("--capacity-seconds", type=float, default=8.0)
    p.add_argument("--duration", type=float, default=10.0, help="Seconds of arrivals per load level.")
    p.add_argument("--max-requests", type=int, default=2000, help="Requests per load level at most.")
    p.add_argument("--levels", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    p.add_argument("--max-wait-ms", type=float, default=3.0)
    p.add_argument(
        "--max-queue-wait-ms",
        type=float,
        default=None,
        help="With --tuned: the server's queue drain-time bound (default: 4 request service times, >= 1 s).",
    )
    p.add_argument("--real-duration", type=float, default=30.0, help="--duration for real models.")
    p.add_argument("--real-capacity-seconds", type=float, default=20.0)
    p.add_argument("--max-inflight", type=int, default=32)
    p.add_argument(
        "--connections",
        type=int,
        default=256,
        help="Keep-alive connections of the load generator: enough that the server, not this pool, sees the "
        "overload (with fewer, the excess queues in the generator, where no server can refuse it).",
    )
    p.add_argument(
        "--tuned",
        action="store_true",
        help="Load levels against a hand-tuned server (--max-queue-wait-ms, --max-inflight) instead of defaults.",
    )
    p.add_argument(
        "--priority-mix",
        default=None,
        help="Send step 3's requests with a Cohere priority drawn from this mix (high:0.2,normal:0.3,low:0.5) "
        "and report per-class p95 and 429s.",
    )
    p.add_argument(
        "--priority-repeats",
        type=int,
        default=1,
        help="With --priority-mix: run the highest level this many times, each right after the high traffic alone "
        "(alternating), and report the pooled p95 ratio with a bootstrap 95%% interval.",
    )
    p.add_argument(
        "--serve-arg", action="append", default=[],
        help="An extra `rankfunnel serve` argument for both servers (repeatable; e.g. --serve-arg=--preempt-ms "
        "--serve-arg=10); the report's command line shows them.",
    )
    p.add_argument("--skip-batching", action="store_true")
    p.add_argument("--only-batching", action="store_true", help="Only the batching comparison.")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "loadtest.json")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (ROOT / "out").mkdir(exist_ok=True)
    queries, docs = _texts(64, max(args.docs * 4, 400), args.doc_chars)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "models": {},
    }
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        report["models"][name] = run_model(name, args, queries, docs)
    report["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")
    _print(report)
    return report


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"rankfunnel loadtest (load avg {report['load_before'][0]:.1f} -> "
        f"{report['load_after'][0]:.1f}, {report['cpus']} CPUs)"
    )
    for col in (
        "model",
        "settings",
        "load",
        "target rps",
        "offered rps",
        "ok",
        "429",
        "err",
        "thr rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "server p95 ms",
        "p95 <= deadline",
    ):
        t.add_column(col)
    for name, res in report["models"].items():
        for row in res.get("levels", []):
            t.add_row(
                name,
                res.get("settings", ""),
                row["load"],
                f"{row['target_rps']:.1f}",
                f"{row['offered_rps']:.1f}",
                str(row["ok"]),
                str(row["rejected_429"]),
                str(row["other_errors"]),
                f"{row['throughput_rps']:.1f}",
                f"{row['p50_ms']:.0f}",
                f"{row['p95_ms']:.0f}",
                f"{row['p99_ms']:.0f}",
                f"{row['server_p95_ms']:.0f}",
                {True: "yes", False: "NO", None: "-"}[row.get("p95_within_deadline")],
            )
    Console().print(t)
    for name, res in report["models"].items():
        for row in res.get("levels", []):
            for cls, st in row.get("classes", {}).items():
                print(f"{name} {row['load']} {cls}: {st['ok']}/{st['requests']} ok, {st['rejected_429']} x 429, "
                      f"p50 {st['p50_ms']:.0f} ms, p95 {st['p95_ms']:.0f} ms")
        alone = res.get("high_alone", {}).get("classes", {}).get("high")
        if alone:
            print(f"{name} {res['high_alone']['load']}: {alone['ok']}/{alone['requests']} ok, "
                  f"{alone['rejected_429']} x 429, p50 {alone['p50_ms']:.0f} ms, p95 {alone['p95_ms']:.0f} ms")
        if "high_p95_ratio" in res:
            print(f"{name}: high-priority p95 at the highest level / at the lowest = {res['high_p95_ratio']:.2f}")
        if "high_p95_ratio_vs_alone" in res:
            print(f"{name}: high-priority p95 at the highest level / with high traffic alone = "
                  f"{res['high_p95_ratio_vs_alone']:.2f} (target <= 1.2)")
        for row in res.get("repeat_rows", []):
            st = row.get("classes", {}).get("high")
            if st:
                print(f"{name} {row['load']} high: {st['ok']}/{st['requests']} ok, {st['rejected_429']} x 429, "
                      f"p50 {st['p50_ms']:.0f} ms, p95 {st['p95_ms']:.0f} ms; other statuses "
                      f"{row.get('other_statuses', {})}")
        pool = res.get("high_p95_pooled")
        if pool:
            lo, hi = pool["ratio_ci95"]
            print(f"{name}: pooled over {pool['repeats']} alternating repeats ({pool['alone_n']} / {pool['loaded_n']} "
                  f"high requests): p95 alone {pool['alone_p95_ms']:.0f} ms, at the highest level "
                  f"{pool['loaded_p95_ms']:.0f} ms, ratio {pool['ratio']:.2f} [95% {lo:.2f}-{hi:.2f}], per repeat "
                  + ", ".join(f"{x:.2f}" for x in pool["per_repeat"])
                  + f" (median {pool['median_of_repeats']:.2f}; target <= 1.2)")
    for name, res in report["models"].items():
        b = res.get("batching")
        if b:
            print(
                f"{name}: median served {b['served_pairs_per_s']:.1f} pairs/s vs offline "
                f"{b['offline_pairs_per_s']:.1f} pairs/s; median paired ratio {b['ratio']:.2f}x "
                f"({b['pairs']} pairs; "
                f"max score diff {b['max_score_diff']:.2g})"
            )


if __name__ == "__main__":
    main()
