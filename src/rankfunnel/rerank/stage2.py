"""Stage 2 as one policy: everything that happens to stage-1 candidates, for every entry point.

:class:`Stage2` owns the reranker (or cascade) and its fallback chain, per-attempt and per-request
deadlines, fail-open / fail-closed, the score cache, selective skipping (``rerank="auto"``), a circuit
breaker per reranker, calibration (the reranker's ``normalise``), top-n and output checks. The
:class:`~rankfunnel.pipeline.Pipeline` (hence ``rankfunnel search`` and ``rankfunnel eval``) and the
service's :class:`~rankfunnel.service.engine.RerankEngine` all call it; the service adds only serving
concerns (cross-request batching, limits, HTTP shapes, metrics).

Models are reached only through a scorer seam: ``score(pairs, timeout_s) -> raw scores``. In the library
the scorer is the reranker itself (:class:`RerankerScorer`); in the service it is the cross-request
``MicroBatcher`` wrapping the same reranker (an :class:`AsyncScorer`).

Design choice: the policy is written once, as a *sans-I/O* generator (:meth:`Stage2._plan`) that yields
:class:`ScoreCall` requests and receives scores (or the scorer's exception) back. :meth:`Stage2.run`
drives it with blocking scorers, :meth:`Stage2.arun` with awaitable ones. This keeps exactly one copy of
the logic, like the recommended "synchronous core in a worker thread", without parking one thread per
in-flight request in the service (up to ``max_inflight`` requests wait on the batcher at once, and the
batcher only batches across requests that are waiting concurrently) and without cross-thread cancellation:
when a request's time runs out, ``asyncio.wait_for`` cancels its queued batcher work directly.

Deadlines are absolute ``time.monotonic()`` seconds, set once per request by the caller (so they cover
queueing and stage 1 too). No scorer call is made with less than nothing left, each call gets at most the
time the request has left (a reranker whose ``predict`` takes ``timeout=`` - the remote one - stops its own
retries there; a local model is run in a worker thread and abandoned at the deadline), and a fallback
gets what the previous attempt left.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from rankfunnel import defaults
from rankfunnel.errors import InvalidInputError, OverloadedError, RerankerUnavailableError
from rankfunnel.rerank.cache import ScoreCache, cache_key
from rankfunnel.types import Hit
from rankfunnel.validate import check_count, check_query

log = logging.getLogger(__name__)

Pair = tuple[str, str]


# -- the scorer seam ---------------------------------------------------------------------------------------
class Scorer(Protocol):
    """Blocking scorer: raw scores for pairs, giving up (``TimeoutError``) after ``timeout_s`` seconds."""

    def score(self, pairs: Sequence[Pair], timeout_s: float | None) -> np.ndarray: ...


class AsyncScorer(Protocol):
    """Awaitable scorer (the service's batcher): same contract as :class:`Scorer`."""

    def score(self, pairs: Sequence[Pair], timeout_s: float | None) -> Awaitable[np.ndarray]: ...


def accepts_timeout(reranker: Any) -> bool:
    """Whether ``reranker.predict`` takes a ``timeout=`` keyword (it then bounds its own retries)."""
    try:
        return "timeout" in inspect.signature(reranker.predict).parameters
    except (TypeError, ValueError):
        return False


class RerankerScorer:
    """The library scorer: the reranker itself.

    Without a timeout ``predict`` runs in the caller's thread. With one, a reranker that takes
    ``timeout=`` (the remote reranker) gets it and stops by itself; any other runs in one worker thread
    (so a model never runs two calls at once) and is abandoned, not killed, when the time is up: Python
    cannot stop a thread, so a hung local model keeps its worker; the next calls then time out too and
    the circuit breaker opens.
    """

    def __init__(self, reranker: Any) -> None:
        self.reranker = reranker
        self._takes_timeout = accepts_timeout(reranker)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def score(self, pairs: Sequence[Pair], timeout_s: float | None) -> np.ndarray:
        if timeout_s is None:
            return np.asarray(self.reranker.predict(pairs))
        if self._takes_timeout:
            return np.asarray(self.reranker.predict(pairs, timeout=timeout_s))
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rankfunnel-stage2")
            fut = self._pool.submit(self.reranker.predict, pairs)
        try:
            return np.asarray(fut.result(timeout=max(timeout_s, 0.0)))
        except TimeoutError:
            fut.cancel()  # drops it if it has not started; a running call cannot be stopped
            raise


# -- circuit breaker ---------------------------------------------------------------------------------------
class CircuitBreaker:
    """Stops calling a reranker that keeps failing; lets one probe through after a cool-down.

    ``closed`` (normal) -> ``open`` after ``failures`` consecutive failures (calls are refused at once) ->
    ``half_open`` once ``cooldown_s`` has passed: one probe call is let through; success closes the breaker,
    failure opens it again for another cool-down. A probe that never reports back (its request was
    cancelled) is replaced by a new one after another cool-down. Thread-safe.

    Hand-written rather than a library (pybreaker, purgatory): those wrap a call, whereas here the call is
    made by two drivers (blocking and async) of one policy, which only need allow / success / failure.

    Examples:
        >>> t = [0.0]
        >>> b = CircuitBreaker("m", failures=2, cooldown_s=5, clock=lambda: t[0])
        >>> b.failure(); b.failure(); b.state, b.allow()
        ('open', False)
        >>> t[0] = 6.0; b.allow(), b.state, b.allow()
        (True, 'half_open', False)
        >>> b.success(); b.state
        'closed'
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = defaults.BREAKER_FAILURES,
        cooldown_s: float = defaults.BREAKER_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise InvalidInputError(f"breaker failures must be an integer >= 1, got {failures!r}.")
        if not (isinstance(cooldown_s, (int, float)) and math.isfinite(cooldown_s) and cooldown_s >= 0):
            raise InvalidInputError(f"breaker cooldown_s must be a finite number >= 0, got {cooldown_s!r}.")
        self.name = name
        self.failures = failures
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._probe_at is not None else "open"

    def retry_in(self) -> float:
        """Seconds until the next probe may run (0 when closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            start = self._probe_at if self._probe_at is not None else self._opened_at
            return max(0.0, start + self.cooldown_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may be made now (in ``half_open``, only the one probe)."""
        with self._lock:
            if self._opened_at is None:
                return True
            now = self._clock()
            if self._probe_at is not None:  # a probe is out; replace it only if it never came back
                if now - self._probe_at < self.cooldown_s:
                    return False
                self._probe_at = now
                return True
            if now - self._opened_at >= self.cooldown_s:
                self._probe_at = now
                return True
            return False

    def release(self) -> None:
        """The allowed call was not made after all (no time left, queue full): free the probe slot."""
        with self._lock:
            if self._probe_at is not None:
                self._probe_at = None

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probe_at = None

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._probe_at is not None or self._consecutive >= self.failures:
                if self._opened_at is None:
                    self.opened_count += 1
                    log.warning(
                        "circuit breaker for reranker %r opened after %d consecutive failures",
                        self.name, self._consecutive,
                    )
                self._opened_at = self._clock()
                self._probe_at = None

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state (for ``/readyz``)."""
        state = self.state
        return {
            "state": state,
            "consecutive_failures": self._consecutive,
            "retry_in_s": round(self.retry_in(), 3),
            "opened": self.opened_count,
        }


# -- skipping policies -------------------------------------------------------------------------------------
class SkipPolicy(Protocol):
    """For ``rerank="auto"``: a reason to skip stage 2 for this query, or None to rerank it."""

    def __call__(self, query: str, candidates: Sequence[Hit]) -> str | None: ...


#: Every reason a skip policy gives starts with this, so callers can tell "skipped by policy" from "failed".
AUTO_SKIP_PREFIX = "rerank=auto:"

@dataclass(frozen=True, slots=True)
class MarginSkip:
    """Skip stage 2 when stage-1 top-1 leads top-2 by at least ``margin`` (in stage-1 score units).

    Examples:
        >>> from rankfunnel.types import Hit
        >>> hits = [Hit(id=i, rank=r, score=s, stage1_rank=r, stage1_score=s)
        ...         for r, (i, s) in enumerate([("a", 0.9), ("b", 0.5)], 1)]
        >>> MarginSkip(0.1)("q", hits) is not None, MarginSkip(0.5)("q", hits) is None
        (True, True)
    """

    margin: float = defaults.AUTO_MARGIN

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise InvalidInputError(f"auto_margin must be a finite number >= 0, got {self.margin!r}.")

    def __call__(self, query: str, candidates: Sequence[Hit]) -> str | None:
        gap = candidates[0].stage1_score - candidates[1].stage1_score if len(candidates) > 1 else math.inf
        if gap >= self.margin:
            return (
                f"{AUTO_SKIP_PREFIX} stage 1 is confident (top-1 leads top-2 by {gap:.4g} >= margin "
                f"{self.margin}); stage 2 skipped"
            )
        return None


# -- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scored:
    """Scores of one query's documents; ``raw`` is None when every reranker failed (``reason`` says why)."""

    raw: np.ndarray | None
    normalised: np.ndarray | None
    model: str | None
    reason: str | None
    cached: int = 0
    pairs_scored: int = 0


@dataclass(frozen=True, slots=True)
class Stage2Result:
    """Stage 2's answer for one query: final hits (``top_n``), whether they are reranked and why not."""

    hits: tuple[Hit, ...]
    reranked: bool
    reason: str | None
    model: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    pairs_scored: int = 0
    cached_pairs: int = 0


@dataclass(frozen=True, slots=True)
class ScoreCall:
    """What the policy asks its driver to do: score ``pairs`` with chain member ``index`` within ``timeout_s``."""

    index: int
    pairs: list[Pair]
    timeout_s: float | None


@dataclass(slots=True)
class _Outcome:
    raw: list[np.ndarray] | None
    norm: list[np.ndarray] | None
    model: str | None
    reason: str | None
    cached: int = 0
    pairs_scored: int = 0


_Plan = Generator[ScoreCall, np.ndarray, _Outcome]


def _norm_id(reranker: Any) -> str:
    cal = getattr(reranker, "calibration", None)
    if cal is not None and hasattr(cal, "temperature"):
        return f"sigmoid(T={cal.temperature},b={cal.bias})"
    return type(reranker).__name__


def stage1_only(hits: Sequence[Hit]) -> list[Hit]:
    """Stage-1 hits as final hits: rank and score are the stage-1 ones, no rerank score."""
    return [replace(h, rank=h.stage1_rank, score=h.stage1_score, rerank_score=None) for h in hits]


def check_scores(values: Any, n: int, name: str, what: str = "scores") -> np.ndarray:
    """A 1-D float array of ``n`` finite values, or :class:`RerankerUnavailableError` naming the problem."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RerankerUnavailableError(f"reranker {name!r} returned unusable {what} ({exc})") from exc
    if arr.ndim != 1 or arr.shape[0] != n:
        raise RerankerUnavailableError(
            f"reranker {name!r} returned {arr.size} {what} of shape {arr.shape} for {n} pairs"
        )
    if not np.all(np.isfinite(arr)):
        raise RerankerUnavailableError(f"reranker {name!r} returned non-finite {what}")
    return arr


def _check_ms(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive number of milliseconds, got {value!r}.")
    return float(value)


class Stage2:
    """Rerank stage-1 candidates with a fallback chain, deadlines, a cache, skipping and circuit breakers.

    Args:
        reranker: The primary reranker (or cascade); None means stage 1 only (``reason`` says why).
        fallbacks: Rerankers tried in order when the previous one fails, times out or is open-circuited.
        cache: A :class:`~rankfunnel.rerank.cache.ScoreCache` of raw scores (None: no caching).
        deadline_ms: Default per-request deadline (a request may ask for less); None: no deadline.
        attempt_timeout_ms: Time one reranker may take before the next of the chain is tried (the last
            one gets all the time left); None: the whole time left.
        fail_open: When every reranker failed, answer stage-1 order with a reason; False raises
            :class:`~rankfunnel.errors.RerankerUnavailableError`.
        skip: Policy for ``rerank="auto"`` (default :class:`MarginSkip` with ``auto_margin``).
        auto_margin: Margin of the default skip policy.
        breaker_failures: Consecutive failures that open a reranker's circuit breaker.
        breaker_cooldown_s: Seconds an open breaker waits before letting one probe through.
        reason: Why there is no reranker (shown in results when ``reranker`` is None).
        on_event: Optional callback with ``"timeout"``, ``"error"``, ``"all_failed"``, ``"auto_skip"`` or
            ``"circuit_open"`` (the service counts them).
        on_cache: Optional callback ``(hits, misses)`` after each cache lookup.
        depth: A :class:`~rankfunnel.rerank.depth.DepthPolicy` for ``rerank="auto"``: per query, skip or
            rerank only the top ``depth`` candidates (the rest follow in stage-1 order); it replaces the
            default skip policy.

    Examples:
        >>> from rankfunnel.rerank.fake import FakeReranker
        >>> from rankfunnel.types import Document, Hit
        >>> hits = [Hit(id=t, rank=r, score=1 / r, stage1_rank=r, stage1_score=1 / r,
        ...             document=Document(id=t, text=t)) for r, t in enumerate(["a boat", "a red car"], 1)]
        >>> res = Stage2(FakeReranker()).run(["red car"], [hits], top_n=1)[0]
        >>> [h.id for h in res.hits], res.reranked
        (['a red car'], True)
    """

    def __init__(
        self,
        reranker: Any = None,
        *,
        fallbacks: Sequence[Any] = (),
        cache: ScoreCache | None = None,
        deadline_ms: float | None = None,
        attempt_timeout_ms: float | None = None,
        fail_open: bool = defaults.FAIL_OPEN,
        skip: SkipPolicy | None = None,
        auto_margin: float = defaults.AUTO_MARGIN,
        breaker_failures: int = defaults.BREAKER_FAILURES,
        breaker_cooldown_s: float = defaults.BREAKER_COOLDOWN_S,
        reason: str | None = None,
        on_event: Callable[[str], None] | None = None,
        on_cache: Callable[[int, int], None] | None = None,
        depth: Any = None,
    ) -> None:
        self.chain: list[Any] = [r for r in (reranker, *fallbacks) if r is not None]
        self.cache = cache
        self.deadline_ms = _check_ms("deadline_ms", deadline_ms)
        self.attempt_timeout_ms = _check_ms("attempt_timeout_ms", attempt_timeout_ms)
        self.fail_open = bool(fail_open)
        self.skip: SkipPolicy = skip if skip is not None else MarginSkip(auto_margin)
        # adaptive depth (rerank/depth.py): for rerank="auto" it is also the skip policy (depth 0 = skip)
        self.depth = depth
        if depth is not None and skip is None:
            self.skip = depth
        self.reason = reason
        self.on_event = on_event
        self.on_cache = on_cache
        self.scorers: list[Scorer] = [RerankerScorer(r) for r in self.chain]
        self.breakers = [
            CircuitBreaker(self.name_of(r), failures=breaker_failures, cooldown_s=breaker_cooldown_s)
            for r in self.chain
        ]

    # -- small helpers -----------------------------------------------------------------------------------
    @staticmethod
    def name_of(reranker: Any) -> str:
        return str(getattr(reranker, "name", type(reranker).__name__))

    @property
    def model_name(self) -> str | None:
        """The primary reranker's name (None without a reranker)."""
        return self.name_of(self.chain[0]) if self.chain else None

    def deadline(self, deadline_ms: float | None = None, *, start: float | None = None) -> float | None:
        """Absolute deadline (``time.monotonic()`` seconds) of a request starting at ``start`` (default now).

        The shorter of ``deadline_ms`` (the request's own) and the configured default; None when neither.
        """
        ms = _check_ms("deadline_ms", deadline_ms)
        if self.deadline_ms is not None:
            ms = self.deadline_ms if ms is None else min(ms, self.deadline_ms)
        if ms is None:
            return None
        return (time.monotonic() if start is None else start) + ms / 1e3

    def breaker_states(self) -> dict[str, dict[str, Any]]:
        """Each reranker's circuit-breaker state (``closed``, ``open`` or ``half_open``)."""
        return {b.name: b.snapshot() for b in self.breakers}

    def _event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)

    # -- the policy (sans I/O) ---------------------------------------------------------------------------
    def _plan(self, groups: Sequence[tuple[str, Sequence[str]]], deadline: float | None) -> _Plan:
        """Score every group's documents down the chain; yields :class:`ScoreCall`, returns the outcome."""
        flat: list[Pair] = [(q, d) for q, docs in groups for d in docs]
        sizes = [len(docs) for _, docs in groups]
        reasons: list[str] = []
        for pos, reranker in enumerate(self.chain):
            name = self.name_of(reranker)
            keys = [cache_key(name, _norm_id(reranker), q, d) for q, d in flat] if self.cache else []
            got = self.cache.get_many(keys) if self.cache else [None] * len(flat)
            miss = [i for i, v in enumerate(got) if v is None]
            if self.on_cache is not None and self.cache is not None and self.cache.enabled:
                self.on_cache(len(flat) - len(miss), len(miss))
            raw = np.array([0.0 if v is None else v for v in got], dtype=np.float64)
            if miss:
                breaker = self.breakers[pos]
                if not breaker.allow():
                    reasons.append(
                        f"reranker {name!r} skipped: its circuit breaker is open after repeated failures "
                        f"(next probe in {breaker.retry_in():.1f} s)"
                    )
                    self._event("circuit_open")
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    breaker.release()
                    reasons.append(f"no time left for reranker {name!r} (request deadline passed)")
                    self._event("timeout")
                    break
                timeout, budget = left, "request deadline"
                attempt = None if self.attempt_timeout_ms is None else self.attempt_timeout_ms / 1e3
                if attempt is not None and pos < len(self.chain) - 1 and (left is None or attempt < left):
                    timeout, budget = attempt, "attempt_timeout_ms"
                try:
                    got_scores = yield ScoreCall(pos, [flat[i] for i in miss], timeout)
                    part = check_scores(got_scores, len(miss), name)
                except OverloadedError:  # a full queue is not the model's fault: the caller answers 429
                    breaker.release()
                    raise
                except TimeoutError:
                    breaker.failure()
                    ms = "?" if timeout is None else f"{timeout * 1e3:.0f}"
                    reasons.append(f"reranker {name!r} timed out after {ms} ms ({budget})")
                    self._event("timeout")
                    continue
                except Exception as exc:  # noqa: BLE001 - any model failure moves down the chain
                    breaker.failure()
                    reasons.append(f"reranker {name!r} failed ({type(exc).__name__}: {exc})")
                    log.warning(reasons[-1])
                    self._event("error")
                    continue
                breaker.success()
                raw[miss] = part
                if self.cache is not None:
                    self.cache.put_many([keys[i] for i in miss], part.tolist())
            try:
                norm = check_scores(reranker.normalise(raw), len(flat), name, "normalised scores")
            except Exception as exc:  # noqa: BLE001 - a broken calibration is a reranker failure too
                reasons.append(f"reranker {name!r} failed to normalise ({type(exc).__name__}: {exc})")
                self._event("error")
                continue
            raws, norms, start = [], [], 0
            for n in sizes:
                raws.append(raw[start : start + n])
                norms.append(norm[start : start + n])
                start += n
            why = "; ".join(reasons) + f"; answered by fallback {name!r}" if reasons else None
            return _Outcome(raws, norms, name, why, len(flat) - len(miss), len(miss))
        self._event("all_failed")
        return _Outcome(None, None, None, "; ".join(reasons) or "reranking failed")

    @staticmethod
    def _drive(plan: _Plan, scorers: Sequence[Scorer]) -> _Outcome:
        try:
            call = next(plan)
            while True:
                try:
                    out = scorers[call.index].score(call.pairs, call.timeout_s)
                except Exception as exc:  # noqa: BLE001 - handed to the policy, which decides
                    call = plan.throw(exc)
                else:
                    call = plan.send(out)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    @staticmethod
    async def _adrive(plan: _Plan, scorers: Sequence[AsyncScorer]) -> _Outcome:
        try:
            call = next(plan)
            while True:
                try:
                    out = await scorers[call.index].score(call.pairs, call.timeout_s)
                except Exception as exc:  # noqa: BLE001 - handed to the policy, which decides
                    call = plan.throw(exc)
                else:
                    call = plan.send(out)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- direct scoring (the service's rerank endpoints) -------------------------------------------------
    def _scored(self, outcome: _Outcome) -> Scored:
        if outcome.raw is None or outcome.norm is None:
            if not self.fail_open:
                raise RerankerUnavailableError(f"{outcome.reason}. Reranking is configured to fail closed.")
            return Scored(None, None, None, outcome.reason)
        return Scored(
            outcome.raw[0], outcome.norm[0], outcome.model, outcome.reason, outcome.cached, outcome.pairs_scored
        )

    def _score_plan(self, query: str, docs: Sequence[str]) -> list[tuple[str, Sequence[str]]]:
        if not self.chain:
            raise RerankerUnavailableError(self.reason or "No reranker configured; pass one to rerank documents.")
        return [(check_query(query), list(docs))]

    def score(self, query: str, docs: Sequence[str], *, deadline: float | None = None) -> Scored:
        """Raw and normalised scores of ``docs`` (input order) through cache, chain and deadline."""
        groups = self._score_plan(query, docs)
        return self._scored(self._drive(self._plan(groups, deadline), self.scorers))

    async def ascore(
        self, query: str, docs: Sequence[str], *, scorers: Sequence[AsyncScorer], deadline: float | None = None
    ) -> Scored:
        """:meth:`score` with awaitable scorers (one per chain member)."""
        groups = self._score_plan(query, docs)
        return self._scored(await self._adrive(self._plan(groups, deadline), scorers))

    # -- reranking stage-1 candidates --------------------------------------------------------------------
    def _triage(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], rerank: bool | str
    ) -> tuple[dict[int, str], list[int]]:
        if rerank not in (True, False, "auto"):
            raise InvalidInputError(f'rerank must be true, false or "auto", got {rerank!r}.')
        if len(queries) != len(candidates):
            raise InvalidInputError(f"{len(queries)} queries but {len(candidates)} candidate lists.")
        skipped: dict[int, str] = {}
        todo: list[int] = []
        for i, (q, cands) in enumerate(zip(queries, candidates, strict=True)):
            why: str | None = None
            if rerank is False:
                why = "reranking switched off for this search (rerank=false)"
            elif not self.chain:
                why = self.reason or "no reranker configured: stage-1 results"
            elif not cands:
                why = "stage 1 returned no candidates"
            elif any(h.document is None for h in cands):
                why = "stage-1 hits carry no document text (fetch documents before reranking)"
            elif rerank == "auto":
                why = self.skip(q, cands)
                if why is not None:
                    self._event("auto_skip")
            if why is None:
                todo.append(i)
            else:
                skipped[i] = why
        return skipped, todo

    def _cuts(
        self, candidates: Sequence[Sequence[Hit]], todo: list[int], rerank: bool | str, max_depth: int | None = None
    ) -> dict[int, int]:
        """The queries whose candidates are reranked only down to a depth (index -> depth).

        The adaptive depth policy chooses it (``rerank="auto"``), capped by ``max_depth`` (a priority class).
        """
        cuts = {i: len(candidates[i]) for i in todo}
        if rerank == "auto" and self.depth is not None:
            cuts = {i: int(self.depth.choose(candidates[i])) for i in todo}
        if max_depth is not None:
            cuts = {i: min(d, max_depth) for i, d in cuts.items()}
        return {i: d for i, d in cuts.items() if 0 < d < len(candidates[i])}

    def _groups(self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], todo: list[int]
                ) -> list[tuple[str, Sequence[str]]]:
        return [(queries[i], [h.document.content if h.document else "" for h in candidates[i]]) for i in todo]

    def _results(
        self,
        candidates: Sequence[Sequence[Hit]],
        top_n: int,
        skipped: dict[int, str],
        todo: list[int],
        outcome: _Outcome | None,
        ms: float,
        cuts: dict[int, int] | None = None,
    ) -> list[Stage2Result]:
        if outcome is not None and outcome.raw is None and not self.fail_open:
            raise RerankerUnavailableError(f"{outcome.reason}. Reranking is configured to fail closed.")
        timings = {"rerank_ms": ms if todo else 0.0}
        if outcome is not None:
            timings["cached_pairs"] = float(outcome.cached)
            timings["pairs_scored"] = float(outcome.pairs_scored)
        pairs = outcome.pairs_scored if outcome is not None else 0
        cached = outcome.cached if outcome is not None else 0
        out: list[Stage2Result] = []
        pos = {i: j for j, i in enumerate(todo)}
        for i, cands in enumerate(candidates):
            if i in skipped or outcome is None or outcome.raw is None or outcome.norm is None:
                why = skipped.get(i) or f"{outcome.reason if outcome else 'not reranked'}; showing stage-1 results"
                hits = tuple(stage1_only(cands[:top_n]))
                out.append(Stage2Result(hits, False, why, self.model_name, dict(timings), pairs, cached))
                continue
            raw, norm = outcome.raw[pos[i]], outcome.norm[pos[i]]
            order = np.argsort(-raw, kind="stable")[:top_n]
            head = [
                replace(cands[j], rank=r + 1, score=float(norm[j]), rerank_score=float(raw[j]))
                for r, j in enumerate(order)
            ]
            depth = (cuts or {}).get(i)
            if depth is not None:  # past the adaptive depth: stage-1 order (and score), after the reranked
                tail = cands[depth : depth + max(0, top_n - len(head))]
                head += [replace(h, rank=len(head) + r + 1, score=h.stage1_score, rerank_score=None)
                         for r, h in enumerate(tail)]
            hits = tuple(head)
            out.append(Stage2Result(hits, True, outcome.reason, outcome.model, dict(timings), pairs, cached))
        return out

    def run(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Hit]],
        top_n: int,
        *,
        deadline: float | None = None,
        rerank: bool | str = True,
        max_depth: int | None = None,
    ) -> list[Stage2Result]:
        """Rerank each query's stage-1 ``candidates`` (all queries' pairs in one scorer call); best ``top_n``.

        Args:
            queries: The queries.
            candidates: Stage-1 hits per query (with their documents).
            top_n: Hits kept per query.
            deadline: Absolute ``time.monotonic()`` deadline of the request (see :meth:`deadline`).
            rerank: True, False (stage-1 order) or ``"auto"`` (the skip policy decides per query).
            max_depth: Rerank at most this many candidates per query (the rest follow in stage-1 order).

        Raises:
            RerankerUnavailableError: every reranker failed and ``fail_open`` is False.
            OverloadedError: a scorer's queue is full (service only).
        """
        n, skipped, todo, cuts, groups = self._prepare(queries, candidates, top_n, rerank, max_depth)
        outcome = None
        t0 = time.perf_counter()
        if todo:
            outcome = self._drive(self._plan(groups, deadline), self.scorers)
        return self._results(candidates, n, skipped, todo, outcome, (time.perf_counter() - t0) * 1e3, cuts)

    def _prepare(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Hit]],
        top_n: int,
        rerank: bool | str,
        max_depth: int | None,
    ) -> tuple[int, dict[int, str], list[int], dict[int, int], list[tuple[str, Sequence[str]]]]:
        """What :meth:`run` and :meth:`arun` share before scoring: top-n, skips, depth cuts, pair groups."""
        n = check_count(top_n, field="top_n", maximum=None)
        skipped, todo = self._triage(queries, candidates, rerank)
        cuts = self._cuts(candidates, todo, rerank, max_depth)
        heads = [c[: cuts[i]] if i in cuts else c for i, c in enumerate(candidates)]
        return n, skipped, todo, cuts, self._groups(queries, heads, todo)

    async def arun(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Hit]],
        top_n: int,
        *,
        scorers: Sequence[AsyncScorer],
        deadline: float | None = None,
        rerank: bool | str = True,
        max_depth: int | None = None,
    ) -> list[Stage2Result]:
        """:meth:`run` with awaitable scorers (one per chain member, e.g. the service's batchers)."""
        n, skipped, todo, cuts, groups = self._prepare(queries, candidates, top_n, rerank, max_depth)
        outcome = None
        t0 = time.perf_counter()
        if todo:
            outcome = await self._adrive(self._plan(groups, deadline), scorers)
        return self._results(candidates, n, skipped, todo, outcome, (time.perf_counter() - t0) * 1e3, cuts)
