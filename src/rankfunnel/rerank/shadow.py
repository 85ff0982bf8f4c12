"""Shadow mode: a second reranker scores a sample of requests *after* the primary answer, off its path.

A :class:`Shadow` is handed each answered request (:meth:`Shadow.offer`): the query, its stage-1 candidates
and the primary's final hits. A sampled fraction (``rate``, decided by a hash of the query so that a query is
always or never shadowed) goes into a bounded queue; one background thread, the shadow's own, reranks it
with the shadow's own :class:`~rankfunnel.rerank.stage2.Stage2` (so it never takes the primary's model
worker) and writes one JSON line per request. ``offer`` never blocks: when the queue is full the request is
dropped and counted (``stats()["dropped"]``). :meth:`Shadow.close` flushes the queue and stops the thread.

Each record (see :func:`compare_rankings`) holds a query hash (never the query text), an optional
caller-supplied ``query_id`` (e.g. from an evaluation, to match qrels), the primary and shadow top-n ids,
``overlap`` (|shared| / n), ``kendall_tau`` over the union of both top-n (a document missing from one list
ranks n+1 there), ``score_shift`` (mean shadow score of its top-n minus mean primary score of its top-n) and
the shadow's latency. The file is size-bounded and rotated by :class:`logging.handlers.RotatingFileHandler`
(``max_bytes``, ``backups``). ``rankfunnel shadow-report FILE`` summarises it.

Examples:
    >>> shadow = Shadow(FakeReranker(), rate=0.1, log_path="shadow.jsonl")  # doctest: +SKIP
    >>> pipe = Pipeline(col, primary, shadow=shadow)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import logging.handlers
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankfunnel.errors import InvalidInputError
from rankfunnel.types import Hit

log = logging.getLogger(__name__)

DEFAULT_RATE = 0.1
DEFAULT_QUEUE = 64
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


def query_hash(query: str) -> str:
    """A stable, non-reversible id of a query (sha256, first 16 hex digits)."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


def sampled(key: str, rate: float) -> bool:
    """Whether ``key`` falls in the sampled fraction ``rate`` (deterministic: by hash, not by chance)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    h = int.from_bytes(hashlib.sha256(("shadow:" + key).encode("utf-8")).digest()[:8], "big")
    return h / 2.0**64 < rate


def compare_rankings(
    primary: Sequence[str], shadow: Sequence[str], primary_scores: Sequence[float] = (),
    shadow_scores: Sequence[float] = (),
) -> dict[str, Any]:
    """How much a shadow top-n differs from the primary's: overlap, Kendall tau over the union, score shift.

    Examples:
        >>> r = compare_rankings(["a", "b", "c"], ["a", "c", "b"])
        >>> r["overlap"], round(r["kendall_tau"], 3), r["changed"]
        (1.0, 0.333, True)
        >>> compare_rankings(["a", "b"], ["a", "b"])["kendall_tau"]
        1.0
    """
    from scipy.stats import kendalltau

    n = max(len(primary), len(shadow))
    union = list(dict.fromkeys([*primary, *shadow]))
    p_rank = {d: i for i, d in enumerate(primary)}
    s_rank = {d: i for i, d in enumerate(shadow)}
    tau: float | None = None
    if len(union) >= 2:
        t = kendalltau([p_rank.get(d, n) for d in union], [s_rank.get(d, n) for d in union]).statistic
        tau = None if t is None or math.isnan(t) else float(t)
    shift = None
    if primary_scores and shadow_scores:
        shift = float(sum(shadow_scores) / len(shadow_scores) - sum(primary_scores) / len(primary_scores))
    return {
        "overlap": (len(set(primary) & set(shadow)) / n) if n else 1.0,
        "kendall_tau": tau,
        "score_shift": shift,
        "changed": list(primary) != list(shadow),
    }


class JsonlRotatingWriter:
    """Append JSON lines to a file kept under ``max_bytes`` with ``backups`` rotated copies (FILE.1, FILE.2...).

    Uses :class:`logging.handlers.RotatingFileHandler` (well-kept, thread-safe rotation) with a bare
    ``%(message)s`` format rather than a hand-written rotation.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS):
        if max_bytes < 1 or backups < 0:
            raise InvalidInputError(f"max_bytes must be >= 1 and backups >= 0, got {max_bytes}, {backups}.")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=float)
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


@dataclass(slots=True)
class _Job:
    query: str
    query_id: str | None
    candidates: list[Hit]
    primary: list[Hit]
    extra: dict[str, Any]


class Shadow:
    """Score a sampled fraction of requests with a second reranker after the primary answer; log the comparison.

    Args:
        reranker: the shadow reranker (or cascade); it should not be the primary's object (it gets its own
            worker thread, and a model must not run two calls at once).
        rate: fraction of requests shadowed (0 to 1), by a hash of the query (or of ``query_id``).
        log_path: the JSONL file; None keeps only the counters and :attr:`records` (tests).
        top_n: how many top ids are compared and logged.
        max_queue: bound of the shadow queue; an offer to a full queue is dropped and counted.
        max_bytes, backups: size bound and rotated copies of the log.
        on_record: called with each record (the service aggregates them into metrics).
        keep: keep the last ``keep`` records in memory (:attr:`records`).
    """

    def __init__(
        self,
        reranker: Any,
        rate: float = DEFAULT_RATE,
        log_path: str | Path | None = None,
        *,
        top_n: int = 10,
        max_queue: int = DEFAULT_QUEUE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        keep: int = 1000,
        name: str | None = None,
    ) -> None:
        from rankfunnel.rerank.stage2 import Stage2

        if not (isinstance(rate, (int, float)) and 0.0 <= float(rate) <= 1.0):
            raise InvalidInputError(f"shadow rate must be a number from 0 to 1, got {rate!r}.")
        if top_n < 1 or max_queue < 1:
            raise InvalidInputError(f"shadow top_n and max_queue must be >= 1, got {top_n}, {max_queue}.")
        if reranker is None:
            raise InvalidInputError("a shadow needs a reranker; got None.")
        self.rate = float(rate)
        self.top_n = top_n
        self.stage2 = Stage2(reranker, fail_open=True)
        self.name = name or Stage2.name_of(reranker)
        self.writer = JsonlRotatingWriter(log_path, max_bytes=max_bytes, backups=backups) if log_path else None
        self.on_record = on_record
        self.records: list[dict[str, Any]] = []
        self._keep = keep
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._counts = {"offered": 0, "sampled": 0, "dropped": 0, "recorded": 0, "failed": 0}
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the primary's side: never blocks --------------------------------------------------------------
    def offer(
        self,
        query: str,
        candidates: Sequence[Hit],
        primary_hits: Sequence[Hit],
        *,
        query_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Queue one answered request for shadowing if it is sampled; True when queued (never blocks)."""
        with self._lock:
            self._counts["offered"] += 1
            if self._closed or not sampled(query_id if query_id is not None else query, self.rate):
                return False
            self._counts["sampled"] += 1
            self._start()
        try:
            self._queue.put_nowait(_Job(query, query_id, list(candidates), list(primary_hits), dict(extra or {})))
        except queue.Full:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return True

    def stats(self) -> dict[str, int]:
        """Counters: offered, sampled, dropped (queue full), recorded, failed (shadow errors), queued."""
        with self._lock:
            return {**self._counts, "queued": self._queue.qsize()}

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="rankfunnel-shadow", daemon=True)
            self._thread.start()

    # -- the shadow's side: its own thread -------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                rec = self.score(job)
                with self._lock:
                    self._counts["recorded"] += 1
                    self.records.append(rec)
                    del self.records[: -self._keep]
                if self.writer is not None:
                    self.writer.write(rec)
                if self.on_record is not None:
                    self.on_record(rec)
            except Exception as exc:  # a failing shadow must never surface anywhere but its counter and log
                with self._lock:
                    self._counts["failed"] += 1
                log.warning("shadow %s failed: %s", self.name, exc)
            finally:
                self._queue.task_done()

    def score(self, job: _Job) -> dict[str, Any]:
        """Rerank one job with the shadow and build its record."""
        t0 = time.perf_counter()
        res = self.stage2.run([job.query], [job.candidates], self.top_n)[0]
        latency_ms = (time.perf_counter() - t0) * 1e3
        if not res.reranked:
            raise RuntimeError(res.reason or "the shadow did not rerank")
        prim = job.primary[: self.top_n]
        shad = list(res.hits[: self.top_n])
        rec: dict[str, Any] = {
            "ts": time.time(),
            "query_hash": query_hash(job.query),
            "query_id": job.query_id,
            "shadow": res.model,
            "n": self.top_n,
            "primary_ids": [h.id for h in prim],
            "shadow_ids": [h.id for h in shad],
            **compare_rankings(
                [h.id for h in prim], [h.id for h in shad], [h.score for h in prim], [h.score for h in shad]
            ),
            "shadow_ms": latency_ms,
            **job.extra,
        }
        return rec

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued request is recorded; False when ``timeout_s`` ran out first."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Stop taking offers, record what is queued (up to ``timeout_s``), stop the thread, close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            if not self.flush(timeout_s):  # out of time: what is still queued is counted as dropped, and said
                left = 0
                with contextlib.suppress(queue.Empty):
                    while True:
                        if self._queue.get_nowait() is not None:
                            left += 1
                        self._queue.task_done()
                with self._lock:
                    self._counts["dropped"] += left
                if left:
                    log.warning("shadow %s: %d queued requests were not scored before shutdown (timeout %.1f s); "
                                "counted as dropped", self.name, left, timeout_s or 0.0)
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1.0)
            self._thread.join(timeout=max(1.0, timeout_s or 0.0))
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> Shadow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_shadow_spec(text: str) -> tuple[str, float]:
    """``SPEC[:RATE]`` -> (spec, rate); RATE is a trailing ``:<number>`` from 0 to 1 (default 0.1).

    A trailing ``:<number>`` outside 0..1 (a port, ``remote:http://h:8000``) stays part of the spec.

    Examples:
        >>> parse_shadow_spec("fake:0.5"), parse_shadow_spec("fake")
        (('fake', 0.5), ('fake', 0.1))
        >>> parse_shadow_spec("remote:http://h:8000")
        ('remote:http://h:8000', 0.1)
    """
    spec, sep, tail = text.rpartition(":")
    if sep and spec:
        try:
            rate = float(tail)
        except ValueError:
            rate = -1.0
        if 0.0 <= rate <= 1.0:  # anything else after the last ':' is part of the spec (a port, a path)
            return spec.strip(), rate
    if not text.strip():
        raise InvalidInputError("a shadow spec is empty; give SPEC[:RATE], e.g. fake:0.1.")
    return text.strip(), DEFAULT_RATE
